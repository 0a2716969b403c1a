"""What every command of the ``partage`` CLI shares: its error output, progress and file writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from anonymization.errors import InvalidRequest, PartageError
from policies.decisions import Holdings, holding_reasons

if TYPE_CHECKING:
    from anonymization.ledger import SQLiteLedger

stderr = Console(stderr=True, soft_wrap=True)

# The options of the commands that record what a partner receives.
LedgerOption = Annotated[
    Path | None, typer.Option("--ledger", help="SQLite ledger of what each partner already holds")
]
PartnerOption = Annotated[
    str, typer.Option("--partner", help="who receives the release (ledger key)")
]


def file_digest(path: Path) -> str:
    """``sha256:`` and the SHA-256 of a file, read in blocks."""
    import hashlib

    with path.open("rb") as stream:
        return "sha256:" + hashlib.file_digest(stream, "sha256").hexdigest()


def check_partner(partner: str) -> None:
    """Refuse a blank partner name (the ledger's key)."""
    if not partner.strip():
        raise InvalidRequest("the partner's name is blank", field="--partner")


def refuse_if_held_elsewhere(
    ledger: SQLiteLedger, partner: str, digest: str, kind: str, scope: str | None = None
) -> None:
    """Refuse a release of ``kind`` (with microdata, pseudonyms of ``scope``) of the data whose
    SHA-256 is ``digest`` if the partner holds releases of it that it cannot be protected
    jointly with: the other kind, or microdata under another pseudonym key."""
    holdings = Holdings.of(*ledger.releases_of(partner, digest), scope)
    for reason in holding_reasons(kind, holdings, field="--ledger"):
        raise reason.error()


def fail(error: PartageError) -> typer.Exit:
    """Print one clear message naming the field and the reason; exit code 2."""
    where = f" [{error.field}]" if error.field else ""
    stderr.print(
        f"[bold red]error[/] {escape(f'({error.code}){where}: {error.detail}')}", highlight=False
    )
    return typer.Exit(code=2)


@contextmanager
def handled(quiet: bool, title: str) -> Iterator[Any]:
    """Show progress on long runs (unless quiet) and turn typed errors into exit code 2."""
    try:
        if quiet:
            yield lambda _message: None
        else:
            with stderr.status(title) as status:
                yield lambda message: status.update(f"{title}: {message}")
    except PartageError as error:
        raise fail(error) from None


def _refuse(option: str, detail: str) -> InvalidRequest:
    return InvalidRequest(detail, field=option, code="output_file")


def _same_file(first: Path, second: Path) -> bool:
    """The same path once links are resolved, or the same inode (hard links)."""
    try:
        return first.resolve() == second.resolve() or os.path.samefile(first, second)
    except (OSError, RuntimeError):  # one does not exist yet, or a symbolic link loop
        return False


def check_directory(directory: Path, option: str) -> None:
    """Refuse a directory that cannot be made or written in: its nearest existing ancestor
    must be a directory where a file can be created (probed, so /proc or a read-only mount
    are refused too)."""
    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise _refuse(option, f"cannot write under {directory}: {existing} is not a directory")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".partage-probe.")
    except OSError as error:
        raise _refuse(option, f"cannot write in {existing}: {error.strerror}") from None
    os.close(handle)
    Path(probe).unlink()


def check_outputs(outputs: Mapping[str, Path | None], inputs: Mapping[str, Path | None]) -> None:
    """Refuse, before any work, an output that cannot be written or is the same file (path,
    symbolic or hard link) as an input or as another output: it would replace it."""
    given = {option: path for option, path in outputs.items() if path is not None}
    for option, path in given.items():
        if path.is_dir():
            raise _refuse(option, f"{path} is a directory: give a file name")
        if path.exists() and not path.is_file():
            raise _refuse(option, f"{path} is not a regular file (outputs are renamed into place)")
        check_directory(path.parent, option)
        others = {**inputs, **{name: other for name, other in given.items() if name != option}}
        for name, other in others.items():
            if other is not None and _same_file(path, other):
                raise _refuse(option, f"{path} is also {name}: writing it would replace it")


def write_atomically(
    files: Mapping[str, tuple[Path, bytes]], before_rename: Callable[[], None] = lambda: None
) -> None:
    """Write each output (by option) to a temporary file next to it, call ``before_rename``
    (the ledger's record), then rename them all into place. A failure before the renames
    leaves no file and skips ``before_rename``; an OSError is an InvalidRequest naming the
    option."""
    temporaries: dict[str, Path] = {}
    try:
        for option, (path, data) in files.items():
            temporaries[option] = _write_temporary(option, path, data)
        before_rename()
        for option, (path, _data) in files.items():
            try:
                os.replace(temporaries.pop(option), path)
            except OSError as error:
                raise _refuse(option, f"cannot write {path}: {error.strerror}") from None
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)


def _write_temporary(option: str, path: Path, data: bytes) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise _refuse(option, f"cannot write {path}: {error.strerror}") from None
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _refuse(option, f"cannot write {path}: {error.strerror}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary
