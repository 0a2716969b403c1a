"""The README walkthrough, run as written (examples/walkthrough.sh) against a live server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTAGE = str(Path(sys.executable).with_name("partage"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    var = tmp_path / "var"
    env = {
        **os.environ,
        "PARTAGE_DATABASE_URL": f"sqlite:///{var / 'partage.db'}",
        "PARTAGE_DATA_DIR": str(var / "data"),
        "PARTAGE_KEYS_DIR": str(var / "keys"),
    }
    subprocess.run([PARTAGE, "db", "upgrade"], env=env, check=True, cwd=tmp_path)
    subprocess.run(
        [PARTAGE, "demo", "load", "--rows", "20000", "--meters", "40"],
        env=env,
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        [PARTAGE, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/.well-known/jwks.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url, env
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_readme_walkthrough_runs_as_written(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = server
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    script = (ROOT / "examples" / "walkthrough.sh").read_text(encoding="utf-8")
    assert script.split("set -euo pipefail\n", 1)[1].strip() in readme
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "walkthrough.sh")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **env,
            "PARTAGE_URL": url,
            "PARTAGE": PARTAGE,
            "PARTAGE_DEMO_CREDENTIALS": str(tmp_path / "var" / "demo-credentials.json"),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "denied: level_too_fine on group_by.paid_at" in done.stdout
    assert ": succeeded" in done.stdout and "verified:" in done.stdout
    assert "suppressed by reason" in done.stdout
    assert "audit passed" in done.stderr, done.stderr
    assert (tmp_path / "release.csv").read_text().startswith("departement,paid_at,card_country")
