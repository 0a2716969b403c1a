"""The audit log's last signed head, kept outside the database, beside the signing keys.

Whoever can write the database can rewrite the whole chain with fresh hashes, or cut its tail,
and delete the head signatures that would show it: the signatures live in the same database.
This file cannot be reached that way. The signer signs a new head only if the chain still holds
the one in the file, then moves the file to it; verification checks the chain holds it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from service.db import utcnow
from service.keys import write_private_json

FILE_NAME = "audit-head.json"
SEQ_MAX = 2**31 - 1  # the sequence column's range (INTEGER on PostgreSQL)
DIGEST = re.compile("[0-9a-f]{64}")


@dataclass(frozen=True)
class SignedHead:
    seq: int
    hash: str


class AnchorError(Exception):
    """The file exists but does not hold a signed head."""


def path_in(keys_dir: Path) -> Path:
    return keys_dir / FILE_NAME


def read(path: Path) -> SignedHead | None:
    """The head last signed (None before the first signature)."""
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        seq, digest = document["seq"], document["hash"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise AnchorError(f"{path} does not hold the last signed head: {error}") from None
    # Read exactly as written: a float, a boolean or a text is no sequence number (int() would
    # make 2.5 entry 2, true entry 1, and fail on 1e999), a digest is 64 hex digits.
    if type(seq) is not int or not 1 <= seq <= SEQ_MAX:
        raise AnchorError(f"{path} does not hold the last signed head: seq {seq!r}")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise AnchorError(f"{path} does not hold the last signed head: hash {digest!r}")
    return SignedHead(seq, digest)


def write(path: Path, head: SignedHead, signature: dict[str, str]) -> None:
    """Keep ``head`` (and its signature, for whoever reads the file) as the last signed."""
    document = {
        "seq": head.seq,
        "hash": head.hash,
        "signature": signature,
        "signed_at": utcnow().isoformat(),
    }
    write_private_json(path, document)
