"""Identifiers and names for synthetic subjects, built without per-row Python loops."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from faker import Faker

NAME_POOL = 4_000
# A multiplier prime to 10 is invertible modulo any power of ten: numbering subjects through an
# affine map with it gives distinct identifiers that do not look sequential (and no overflow below
# a billion subjects).
SCRAMBLE = 3**19


def scrambled_ids(index: np.ndarray, digits: int, prefix: str = "") -> np.ndarray:
    """Distinct, non-sequential identifiers of ``digits`` digits for distinct ``index`` values."""
    modulus = 10**digits
    shifted = index.astype(np.uint64) + np.uint64(7_919)
    number = (shifted * np.uint64(SCRAMBLE % modulus)) % np.uint64(modulus)
    text = np.char.zfill(number.astype(f"U{digits}"), digits)
    return np.char.add(prefix, text) if prefix else text


def holder_names(seed: int) -> pa.Array:
    """A pool of French card-holder names as embossed on a card (``CAMILLE DUBOIS``)."""
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    names = {f"{fake.first_name()} {fake.last_name()}".upper() for _ in range(NAME_POOL)}
    return pa.array(sorted(names))


def take(labels: pa.Array | np.ndarray, index: np.ndarray) -> pa.Array:
    """``labels[index]`` as an Arrow string array."""
    source = labels if isinstance(labels, pa.Array) else pa.array(labels)
    return source.take(pa.array(index))
