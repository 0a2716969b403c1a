"""The cell key method's numbers: the perturbation table (noise distribution per original
count), the subjects' record keys, and the lookup of each cell's noise from its key."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from anonymization.noise import CellKeyNoise

DERIVATION = b"partage/cell-key/v1"
DECIMALS = 12


@dataclass(frozen=True)
class PerturbationTable:
    """Per original count ``n`` in 0..max (``max`` standing for every larger count), the
    probability of each noise ``-max..max``."""

    max: int
    variance: float
    probabilities: np.ndarray = field(repr=False)

    @property
    def noise(self) -> np.ndarray:
        """The noise values, one per column."""
        return np.arange(-self.max, self.max + 1)

    def row(self, count: int) -> np.ndarray:
        """The noise distribution of an original count."""
        return np.asarray(self.probabilities[min(count, self.max)])

    def lookup(self, counts: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """The noise of each cell: its count's cumulative distribution, read at its key."""
        cumulative = np.cumsum(self.probabilities, axis=1)
        cumulative[:, -1] = 1.0
        rows = np.minimum(np.asarray(counts, dtype=np.int64), self.max)
        index = (cumulative[rows] <= np.asarray(keys, dtype=float)[:, None]).sum(axis=1)
        return np.asarray(np.minimum(index, 2 * self.max) - self.max, dtype=np.int64)

    def digest(self) -> str:
        """SHA-256 of the table's canonical JSON (parameters and rounded probabilities)."""
        document = {
            "method": "cell_key",
            "max": self.max,
            "variance": self.variance,
            "rows": [[f"{p:.{DECIMALS}f}" for p in row] for row in self.probabilities],
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=32)
def perturbation_table(top: int, variance: float) -> PerturbationTable:
    """The table for noise within [-top, top] of the given variance.

    Each row is the maximum-entropy distribution over the noise values that keep the count
    non-negative (``-min(n, top)..top``) with zero mean and ``variance``. Where the variance is
    out of reach (``n * top <= variance``: only for counts below ``top``) the row drops the
    variance constraint and keeps the maximum-entropy zero-mean distribution, whose variance is
    lower. Row 0 is no noise. Probabilities are rounded to 1e-12 so the table is reproducible.
    """
    width = 2 * top + 1
    rows = np.zeros((top + 1, width))
    rows[0, top] = 1.0
    for count in range(1, top + 1):
        values = np.arange(-count, top + 1, dtype=float)
        target = variance if variance < count * top else None
        rows[count, top - count :] = _maximum_entropy(values, target)
    rows = np.round(rows, DECIMALS)
    rows /= rows.sum(axis=1, keepdims=True)
    return PerturbationTable(top, variance, np.round(rows, DECIMALS))


def _maximum_entropy(values: np.ndarray, variance: float | None) -> np.ndarray:
    """The maximum-entropy distribution over ``values`` with mean 0 (and ``variance``): Newton's
    method with backtracking on the convex dual ``log sum exp(features @ lambda)``."""
    features = (
        values[:, None] if variance is None else np.column_stack([values, values**2 - variance])
    )

    def dual(lam: np.ndarray) -> tuple[float, np.ndarray]:
        logits = features @ lam
        peak = logits.max()
        weights = np.exp(logits - peak)
        return float(peak + np.log(weights.sum())), weights / weights.sum()

    lam = np.zeros(features.shape[1])
    value, p = dual(lam)
    for _ in range(200):
        gradient = features.T @ p
        if np.abs(gradient).max() < 1e-14:
            break
        centred = features - gradient
        hessian = (centred * p[:, None]).T @ centred
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-12:
            trial, trial_p = dual(lam - scale * step)
            if trial <= value - 1e-4 * scale * float(gradient @ step):
                break
            scale /= 2
        lam, value, p = lam - scale * step, trial, trial_p
    return p


def record_keys(secret: bytes, subjects: Sequence[str]) -> np.ndarray:
    """Each subject's record key: the first 8 bytes of HMAC-SHA256 under a key derived from the
    dataset's secret, as an unsigned 64-bit integer."""
    key = hmac.digest(secret, DERIVATION, "sha256")
    packed = b"".join(hmac.digest(key, s.encode("utf-8"), "sha256")[:8] for s in subjects)
    return np.frombuffer(packed, dtype=">u8").astype(np.uint64)


def fractions(cell_keys: np.ndarray) -> np.ndarray:
    """Cell keys (integers modulo 2^64) as fractions in [0, 1), exactly representable."""
    return np.asarray((np.asarray(cell_keys, dtype=np.uint64) >> np.uint64(11)), dtype=float) * (
        2.0**-53
    )


def perturbed(counts: np.ndarray, cell_keys: np.ndarray, noise: CellKeyNoise) -> np.ndarray:
    """The published counts: each count plus the noise its cell key selects (never negative)."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.asarray(counts + noise.table().lookup(counts, fractions(cell_keys)))
