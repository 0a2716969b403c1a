"""API benchmark: throughput and p50/p99 latency of `GET /agreements` and of the decision
endpoint with 50 concurrent clients, and one extract end to end through the API versus the CLI.

The service runs under uvicorn on 127.0.0.1 only, on a temporary SQLite database; every loop
is bounded and the script stops by itself. `--rows` runs a smaller extract (default 10M).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meters import meters_file

PARTAGE = Path(sys.executable).parent / "partage"
POLICY: dict[str, Any] = {
    "dataset": {
        "subject": "meter_id",
        "columns": {
            "iris": {"hierarchy": "geo_fr", "level": "iris"},
            "date": {"hierarchy": "time"},
            "tariff": {},
            "kwh": {"type": "measure"},
        },
    }
}
RELEASE = {
    "dimensions": {"iris": "iris", "date": "day", "tariff": "value"},
    "measures": {"kwh": ["sum", "mean"]},
    "protection": {"k": 10, "dominance": {"n": 1, "percent": 85}},
    "formats": ["csv", "parquet"],
}
REQUEST = {
    "group_by": {"iris": "commune", "date": "month", "tariff": "value"},
    "measures": ["kwh.sum", "kwh.mean", "subjects"],
    "format": "parquet",
}
CLI_POLICY = {**POLICY, "release": RELEASE}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment(folder: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PARTAGE_DATABASE_URL": f"sqlite:///{folder / 'partage.db'}",
        "PARTAGE_DATA_DIR": str(folder / "data"),
        "PARTAGE_KEYS_DIR": str(folder / "keys"),
        "PARTAGE_PORT": str(port),
        "PARTAGE_MAX_UPLOAD_BYTES": str(2 * 1024**3),
        "PARTAGE_RATE_LIMIT_PER_SECOND": "1000000",
        "PARTAGE_RATE_LIMIT_BURST": "1000000",
        "PARTAGE_WORKER_POLL_SECONDS": "0.1",
    }


def admin_credentials(env: dict[str, str], folder: Path) -> dict[str, str]:
    subprocess.run([str(PARTAGE), "db", "upgrade"], env=env, check=True, capture_output=True)
    save = folder / "admin.json"
    subprocess.run(
        [str(PARTAGE), "admin", "create-client", "bench", "--save", str(save)],
        env=env,
        check=True,
        capture_output=True,
    )
    credentials: dict[str, str] = json.loads(save.read_text())
    return credentials


def token(base: str, credentials: dict[str, str]) -> dict[str, str]:
    form = {"grant_type": "client_credentials", **credentials}
    response = httpx.post(f"{base}/oauth/token", data=form, timeout=30)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def wait_until_up(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the service did not start")
        try:
            httpx.get(f"{base}/.well-known/jwks.json", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    sys.exit("the service did not answer within 60 s")


def register(base: str, admin: dict[str, str], data: Path) -> tuple[dict[str, str], str]:
    """A partner, the meters dataset and an agreement; the partner's headers and agreement id."""
    partner = httpx.post(f"{base}/partners", json={"name": "Bench"}, headers=admin, timeout=30)
    partner.raise_for_status()
    credentials = {k: partner.json()[k] for k in ("client_id", "client_secret")}
    started = time.perf_counter()
    with data.open("rb") as stream:
        dataset = httpx.post(
            f"{base}/datasets",
            data={"name": "meters", "policy": json.dumps(POLICY)},
            files={"file": (data.name, stream, "application/octet-stream")},
            headers=admin,
            timeout=1800,
        )
    dataset.raise_for_status()
    print(f"dataset upload (check, encrypt, count labels): {time.perf_counter() - started:.1f} s")
    agreement = httpx.post(
        f"{base}/agreements",
        json={
            "partner_id": partner.json()["partner"]["id"],
            "dataset_id": dataset.json()["id"],
            "purpose": "Benchmark",
            "legal_basis": "public_task",
            "valid_from": "2025-01-01",
            "valid_until": "2035-12-31",
            "release": RELEASE,
            "limits": {"extracts_per_month": 1000},
        },
        headers=admin,
        timeout=30,
    )
    agreement.raise_for_status()
    return token(base, credentials), agreement.json()["id"]


async def load(
    base: str, method: str, path: str, headers: dict[str, str], body: Any, total: int, clients: int
) -> tuple[float, list[float], int]:
    """``total`` requests from ``clients`` concurrent clients: wall time, latencies, errors."""
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def client() -> None:
        nonlocal remaining, errors
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await http.request(method, path, json=body)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code >= 400

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started, latencies, errors


def report(name: str, wall: float, latencies: list[float], errors: int) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    print(
        f"{name:<28} {len(ordered) / wall:8.0f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms"
        f"   errors {errors}"
    )


def extract_through_api(base: str, headers: dict[str, str], agreement_id: str) -> float:
    started = time.perf_counter()
    accepted = httpx.post(
        f"{base}/agreements/{agreement_id}/extracts", json=REQUEST, headers=headers, timeout=60
    )
    accepted.raise_for_status()
    extract_id = accepted.json()["id"]
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        state = httpx.get(f"{base}/extracts/{extract_id}", headers=headers, timeout=60).json()
        if state["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    if state["status"] != "succeeded":
        sys.exit(f"the extract did not succeed: {state}")
    download = httpx.get(f"{base}/extracts/{extract_id}/download", headers=headers, timeout=600)
    download.raise_for_status()
    return time.perf_counter() - started


def extract_through_cli(data: Path, folder: Path) -> float:
    (folder / "policy.json").write_text(json.dumps(CLI_POLICY))
    (folder / "request.json").write_text(json.dumps(REQUEST))
    started = time.perf_counter()
    subprocess.run(
        [
            str(PARTAGE),
            "release",
            str(data),
            "--policy",
            str(folder / "policy.json"),
            "--request",
            str(folder / "request.json"),
            "--out",
            str(folder / "cli.parquet"),
            "--quiet",
        ],
        check=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=2000, help="per load test")
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    data = meters_file(args.rows)
    with tempfile.TemporaryDirectory(prefix="partage-api-bench-") as name:
        folder = Path(name)
        port = free_port()
        env = environment(folder, port)
        credentials = admin_credentials(env, folder)
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env,
        )  # fmt: skip
        try:
            wait_until_up(base, server)
            partner, agreement_id = register(base, token(base, credentials), data)
            print(f"{args.clients} concurrent clients, {args.requests} requests each test:")
            decisions = f"/agreements/{agreement_id}/decisions"
            for label, method, path, body in (
                ("GET /agreements", "GET", "/agreements", None),
                ("POST .../decisions", "POST", decisions, REQUEST),
            ):
                report(
                    label,
                    *asyncio.run(
                        load(base, method, path, partner, body, args.requests, args.clients)
                    ),
                )
            api = extract_through_api(base, partner, agreement_id)
        finally:
            server.terminate()
            server.wait(timeout=60)
        cli = extract_through_cli(data, folder)
    print(f"one extract of {args.rows:,} rows, end to end:")
    print(f"  API (request, job, 2 formats encrypted, signed manifest, download): {api:.1f} s")
    print(f"  CLI (partage release, one format):                                  {cli:.1f} s")


if __name__ == "__main__":
    main()
