"""Real INSEE communes (shipped with the engine) and the plausible IRIS codes derived from them."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

# Paris, Marseille and Lyon are split into municipal arrondissements, which carry their own codes
# (and IRIS); the demo places people in the arrondissements and never in the parent commune.
SPLIT_COMMUNES = frozenset({"75056", "13055", "69123"})
# INSEE does not divide communes under about 5,000 inhabitants: their only IRIS ends in 0000.
UNDIVIDED_BELOW = 5_000
INHABITANTS_PER_IRIS = 2_500


@dataclass(frozen=True)
class Communes:
    """Inhabited communes grouped by département, for population-weighted sampling."""

    code: np.ndarray  # commune codes, grouped by département
    departement: np.ndarray  # département code of each commune
    population: np.ndarray  # float64
    departements: np.ndarray  # each département once, in the order of the groups
    start: np.ndarray  # first commune of each département
    stop: np.ndarray  # one past the last commune of each département

    def departement_population(self) -> np.ndarray:
        """Inhabitants of each département (in the order of ``departements``)."""
        cumulative = np.concatenate([[0.0], np.cumsum(self.population)])
        return np.asarray(cumulative[self.stop] - cumulative[self.start])

    def sample(self, rng: np.random.Generator, departement: np.ndarray) -> np.ndarray:
        """One commune index per entry of ``departement`` (indices into ``departements``),
        drawn within that département with probability proportional to population."""
        cumulative = np.cumsum(self.population)
        before = np.concatenate([[0.0], cumulative])[self.start]
        total = cumulative[self.stop - 1] - before
        target = before[departement] + rng.random(len(departement)) * total[departement]
        chosen = np.searchsorted(cumulative, target, side="right")
        return np.asarray(np.minimum(chosen, self.stop[departement] - 1))

    def iris_count(self) -> np.ndarray:
        """How many IRIS each commune is divided into (0: undivided, single IRIS ``0000``)."""
        divided = self.population >= UNDIVIDED_BELOW
        return np.where(divided, np.maximum(2, self.population // INHABITANTS_PER_IRIS), 0)


@cache
def communes() -> Communes:
    """The inhabited communes and arrondissements of ``anonymization/reference/communes.csv``."""
    text = (
        resources.files("anonymization")
        .joinpath("reference", "communes.csv")
        .read_text(encoding="utf-8")
    )
    rows = [
        row
        for row in csv.DictReader(text.splitlines())
        if row["code"] not in SPLIT_COMMUNES and int(row["population"] or 0) > 0
    ]
    rows.sort(key=lambda row: (row["departement"], row["code"]))
    code = np.array([row["code"] for row in rows])
    departement = np.array([row["departement"] for row in rows])
    departements, start = np.unique(departement, return_index=True)
    stop = np.append(start[1:], len(rows))
    return Communes(
        code=code,
        departement=departement,
        population=np.array([float(row["population"]) for row in rows]),
        departements=departements,
        start=start,
        stop=stop,
    )


def iris_codes(codes: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A derived IRIS code for each entry: commune code + ``0000`` when the commune is undivided,
    else + a number drawn uniformly in 0001..count. Real IRIS codes are not available offline."""
    number = np.where(counts > 0, rng.integers(0, np.maximum(counts, 1)) + 1, 0)
    return np.char.add(codes.astype("U5"), np.char.zfill(number.astype("U4"), 4))
