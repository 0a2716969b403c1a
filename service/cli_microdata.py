"""``partage anonymize``: release microdata from a CSV file under a microdata policy."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from anonymization.errors import DataError, InvalidRequest, PartageError
from service.console import (
    LedgerOption,
    PartnerOption,
    check_outputs,
    check_partner,
    fail,
    file_digest,
    refuse_if_held_elsewhere,
    write_atomically,
)
from service.secret_files import read_secret_file

if TYPE_CHECKING:
    import pandas as pd

    from anonymization.ledger import SQLiteLedger
    from anonymization.microdata import MicrodataResult


def _read_policy(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidRequest(
            f"cannot read policy {path}: {error.strerror}", code="policy_file"
        ) from None
    except UnicodeDecodeError:
        raise InvalidRequest(f"policy {path} is not UTF-8 text", code="policy_file") from None
    except yaml.YAMLError as error:
        raise InvalidRequest(
            f"policy {path} is not valid YAML: {error}", code="policy_file"
        ) from None


def _policy(document: Any, base_dir: Path) -> tuple[Any, dict[str, Any], list[str] | None]:
    """The engine's policy, hierarchies by column, and the columns to keep (None: all) from a
    policy in the offline shape, or else in the service's (dataset columns with stored levels
    and roles): the error shown is that of the shape the document uses."""
    from anonymization.microdata import load_hierarchies, parse_policy
    from policies.files import parse
    from policies.microdata import MicrodataPolicyFile, offline_policy

    try:
        parsed = parse_policy(document)
    except PartageError:
        dataset = document.get("dataset") if isinstance(document, dict) else None
        columns = dataset.get("columns") if isinstance(dataset, dict) else None
        service_shape = isinstance(columns, dict) and any(
            isinstance(spec, dict) and ({"level", "type"} & set(spec)) for spec in columns.values()
        )
        if not service_shape:
            raise
        return offline_policy(parse(MicrodataPolicyFile, document), base_dir)
    return parsed, load_hierarchies(parsed, base_dir), None


def _read_data(path: Path, delimiter: str | None) -> pd.DataFrame:
    import pandas as pd

    try:
        if delimiter is None:
            with path.open(encoding="utf-8", newline="") as handle:
                first = handle.readline()
            delimiter = csv.Sniffer().sniff(first, delimiters=",;\t|").delimiter
        return pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False)
    except OSError as error:
        raise DataError(f"cannot read data {path}: {error.strerror}", code="data_file") from None
    except (csv.Error, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"cannot parse data {path} as CSV: {error}", code="data_file") from None


def _key(key_file: Path | None, agreement: str | None) -> bytes | None:
    if key_file is None:
        return None
    secret = read_secret_file(key_file, "pseudonym_key", what="key file ", code="key_file")
    from anonymization.microdata import agreement_key

    return agreement_key(secret, agreement or "")


def _held(
    ledger: SQLiteLedger | None, partner: str, key: bytes | None, digest: str
) -> list[Any] | None:
    """What the partner holds under the same pseudonym key (None without a ledger; without a
    key there is nothing to join, and the engine refuses a ledger without a subject); refused
    if it holds releases of the data (SHA-256 ``digest``) of another kind or key."""
    if ledger is None:
        return None
    from anonymization.microdata.linkage import link_scope

    scope = link_scope(key) if key is not None else None
    refuse_if_held_elsewhere(ledger, partner, digest, "microdata", scope)
    if scope is None:
        return []
    return list(ledger.held_microdata(partner, scope))


def _record(
    ledger: SQLiteLedger | None,
    partner: str,
    key: bytes | None,
    k: int,
    result: MicrodataResult,
    report: dict[str, Any],
    read: int,
) -> None:
    """Remember in the ledger, if there is one, each released pseudonym's class (refused if
    another release was recorded since the ``read`` held ones were read)."""
    if ledger is None or key is None or result.classes is None:
        return
    from anonymization.microdata.linkage import HeldMicrodata, link_scope

    held = HeldMicrodata(report["data_sha256"], link_scope(key), k, result.classes)
    ledger.record_microdata(partner, held, read)


def anonymize(
    data: Annotated[Path, typer.Argument(help="CSV file of the dataset (header row).")],
    policy: Annotated[Path, typer.Option(help="Microdata policy (YAML).")],
    out: Annotated[Path, typer.Option(help="Where to write the released CSV.")],
    manifest: Annotated[
        Path | None, typer.Option(help="Where to write the manifest (JSON).")
    ] = None,
    pseudonym_key_file: Annotated[
        Path | None, typer.Option(help="File holding the pseudonym secret (32 bytes or more).")
    ] = None,
    agreement: Annotated[
        str | None, typer.Option(help="Agreement id the pseudonym key is derived for.")
    ] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="CSV delimiter (sniffed if omitted).")
    ] = None,
    ledger_file: LedgerOption = None,
    partner: PartnerOption = "default",
) -> None:
    """Release DATA as k-anonymous (l-diverse, t-close) microdata under POLICY (in the shape
    shown in the README, or in the service's shape of a microdata agreement)."""
    # The engine (pandas, the lattice search) is loaded for this command only.
    from anonymization.ledger import SQLiteLedger
    from anonymization.microdata import anonymize_microdata

    try:
        started = time.perf_counter()
        check_outputs(
            {"--out": out, "--manifest": manifest},
            {
                "DATA": data,
                "--policy": policy,
                "--pseudonym-key-file": pseudonym_key_file,
                "--ledger": ledger_file,
            },
        )
        check_partner(partner)
        if delimiter is not None and (len(delimiter) != 1 or delimiter in '"\r\n'):
            detail = f"{delimiter!r} is not one character other than a quote or a line break"
            raise InvalidRequest(detail, field="--delimiter")
        parsed, hierarchies, columns = _policy(_read_policy(policy), policy.resolve().parent)
        table = _read_data(data, delimiter)
        if columns is not None:
            missing = [c for c in columns if c not in table.columns]
            if missing:
                raise DataError(f"the data has no column(s) {', '.join(missing)}", field=missing[0])
            table = table[columns]
        key = _key(pseudonym_key_file, agreement)
        ledger = SQLiteLedger(ledger_file) if ledger_file is not None else None
        digest = file_digest(data).removeprefix("sha256:")
        read = ledger.recorded(partner) if ledger is not None else 0
        held = _held(ledger, partner, key, digest)
        result = anonymize_microdata(table, parsed, hierarchies, key, held)
        elapsed = time.perf_counter() - started
        report = {
            **result.manifest,
            "agreement": agreement,
            "data_sha256": digest,
            "seconds": round(elapsed, 3),
        }
        k = parsed.release.protection.k
        files = {"--out": (out, result.table.to_csv(index=False).encode("utf-8"))}
        if manifest is not None:
            text = json.dumps(report, indent=2, ensure_ascii=False)
            files["--manifest"] = (manifest, text.encode("utf-8"))
        # Recorded once both files are written and before they are put in place, as
        # `partage release` does.
        write_atomically(files, lambda: _record(ledger, partner, key, k, result, report, read))
    except PartageError as error:
        raise fail(error) from None
    node = report.get("node_levels", "mondrian")
    typer.echo(
        f"released {report['records_released']} records in {report['classes']} classes, "
        f"suppressed {report['records_suppressed']}, node {node}, {elapsed:.2f} s"
    )
