"""Foreign visitors' card payments in France, as a bank could share them with a tourism office."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from service.demo.names import holder_names, scrambled_ids, take
from service.demo.reference import Communes, communes

SCHEMA = pa.schema(
    [
        ("card_id", pa.string()),
        ("holder_name", pa.string()),
        ("card_country", pa.string()),
        ("merchant_category", pa.string()),
        ("departement", pa.string()),
        ("commune", pa.string()),
        ("paid_at", pa.timestamp("s")),
        ("amount", pa.float64()),
    ]
)
CHUNK_ROWS = 100_000
PAYMENTS_PER_CARD = 8.0  # mean of the geometric number of payments of a card
YEAR_START = np.datetime64("2025-01-01T00:00:00", "s")
DAYS = 365

# Visitors per inhabitant relative to the rest of France (others: 0.3, a few rarer still).
TOURISM = {
    "75": 25, "77": 6, "78": 3, "06": 10, "83": 5, "13": 3, "84": 3, "74": 6, "73": 8,
    "05": 4, "2A": 12, "2B": 12, "971": 5, "972": 5, "974": 2, "33": 3, "64": 3, "17": 3,
    "29": 2, "56": 2, "50": 3, "14": 2, "35": 1.5, "44": 1.5, "67": 3, "68": 2, "69": 1.5,
    "34": 3, "66": 3, "30": 2, "11": 2, "51": 2, "21": 1.5, "37": 2, "41": 2, "24": 2, "46": 2,
    "976": 0.05, "973": 0.1, "975": 0.1,
}  # fmt: skip
OTHER_TOURISM = 0.3
MOUNTAIN = frozenset({"73", "74", "05", "38", "65", "66", "04", "09", "31"})

COUNTRIES = {
    "DE": 14, "GB": 13, "US": 11, "BE": 9, "ES": 9, "IT": 9, "CH": 7, "NL": 6, "CN": 3, "LU": 2,
    "CA": 2, "JP": 2, "PT": 1.5, "AT": 1.2, "IE": 1, "SE": 0.9, "DK": 0.8, "NO": 0.7, "PL": 0.7,
    "BR": 0.6, "AU": 0.6, "KR": 0.5, "IN": 0.5, "IL": 0.4, "MA": 0.4, "DZ": 0.3, "TN": 0.3,
    "AE": 0.3, "CZ": 0.3, "FI": 0.3, "GR": 0.25, "MX": 0.2, "AR": 0.15, "TR": 0.15, "SA": 0.15,
    "SG": 0.12, "HU": 0.1, "RO": 0.1, "ZA": 0.08, "NZ": 0.06, "CL": 0.05, "CO": 0.05,
    "TH": 0.04, "IS": 0.03, "VN": 0.03, "EE": 0.02, "MC": 0.02, "LT": 0.015, "SN": 0.01,
    "PE": 0.01, "UY": 0.008, "MT": 0.005, "LI": 0.003, "BT": 0.001,
}  # fmt: skip

# Category: (share of payments, median amount in euros, log-scale spread).
CATEGORIES = {
    "restaurants": (0.22, 35, 0.6),
    "cafes_bars": (0.10, 12, 0.5),
    "hotels": (0.09, 180, 0.6),
    "groceries": (0.12, 25, 0.7),
    "clothing": (0.07, 80, 0.8),
    "luxury_goods": (0.02, 600, 1.0),
    "museums_attractions": (0.07, 25, 0.5),
    "transport": (0.08, 40, 0.9),
    "fuel": (0.04, 60, 0.4),
    "pharmacies": (0.03, 20, 0.6),
    "souvenirs": (0.05, 18, 0.7),
    "sports_leisure": (0.06, 70, 0.8),
    "car_rental": (0.05, 250, 0.5),
}
HOURS = np.array([1, 0, 0, 0, 0, 0, 1, 3, 6, 8, 10, 12, 16, 14, 10, 9, 9, 10, 12, 14, 12, 8, 5, 2])
BIG_SPENDERS = 0.003  # share of cards spending 20 to 150 times more on every payment


def _p(weights: np.ndarray) -> np.ndarray:
    return np.asarray(weights / weights.sum())


def season(mountain: bool) -> np.ndarray:
    """Probability of a trip starting on each day of 2025: a summer peak, Christmas and Easter
    bumps, and for mountain départements a ski season from December to March."""
    day = np.arange(DAYS)
    summer = 3.0 * np.exp(-(((day - 205) / 32.0) ** 2))
    holidays = 0.6 * np.exp(-(((day - 358) / 6.0) ** 2)) + 0.5 * np.exp(-(((day - 110) / 8.0) ** 2))
    weights = 1.0 + summer + holidays
    if mountain:
        winter = np.minimum(np.abs(day - 40), np.abs(day - 40 - DAYS))
        weights = weights + 4.0 * np.exp(-((winter / 45.0) ** 2))
    return _p(weights)


def departement_weights(reference: Communes) -> np.ndarray:
    """Share of visitors' payments per département: population times a tourism factor."""
    factor = np.array([TOURISM.get(code, OTHER_TOURISM) for code in reference.departements])
    return _p(reference.departement_population() * factor)


class PaymentsGenerator:
    """Chunks of ``rows`` card payments; the same seed and size always give the same rows."""

    schema = SCHEMA

    def __init__(self, rows: int, seed: int) -> None:
        self.rows, self.seed = rows, seed
        self.reference = communes()
        self.names = holder_names(seed)
        self.departement_p = departement_weights(self.reference)
        self.mountain = np.isin(self.reference.departements, list(MOUNTAIN))
        self.countries = np.array(list(COUNTRIES))
        self.country_p = _p(np.array(list(COUNTRIES.values()), dtype=float))
        self.categories = np.array(list(CATEGORIES))
        shares, medians, spreads = np.array(list(CATEGORIES.values()), dtype=float).T
        self.category_p, self.log_median, self.spread = _p(shares), np.log(medians), spreads

    def chunks(self) -> Iterator[pa.Table]:
        """Every chunk of payments, in order (``CHUNK_ROWS`` rows each, the last one shorter)."""
        first_card = 0
        for number, start in enumerate(range(0, self.rows, CHUNK_ROWS)):
            rng = np.random.default_rng([self.seed, 1, number])
            size = min(CHUNK_ROWS, self.rows - start)
            table, cards = self._chunk(rng, size, first_card)
            first_card += cards
            yield table

    def _payments_per_card(self, rng: np.random.Generator, size: int) -> np.ndarray:
        counts = rng.geometric(1 / PAYMENTS_PER_CARD, int(size / PAYMENTS_PER_CARD * 1.3) + 16)
        while counts.sum() < size:
            counts = np.concatenate([counts, rng.geometric(1 / PAYMENTS_PER_CARD, 64)])
        total = np.cumsum(counts)
        last = int(np.searchsorted(total, size))
        counts = counts[: last + 1].copy()
        counts[last] -= total[last] - size
        return counts

    def _chunk(self, rng: np.random.Generator, size: int, first_card: int) -> tuple[pa.Table, int]:
        counts = self._payments_per_card(rng, size)
        cards = len(counts)
        card = np.repeat(np.arange(cards), counts)
        # Each card visits one to three départements, drawn by tourism weight.
        visited = rng.choice(len(self.departement_p), (cards, 3), p=self.departement_p)
        n_visited = rng.choice([1, 2, 3], cards, p=[0.7, 0.22, 0.08])
        departement = visited[card, rng.integers(0, n_visited[card])]
        commune = self.reference.sample(rng, departement)
        # A trip starts on a seasonal day (ski season in the mountains) and lasts 1 to 21 days.
        trip_start = np.where(
            self.mountain[visited[:, 0]],
            rng.choice(DAYS, cards, p=season(True)),
            rng.choice(DAYS, cards, p=season(False)),
        )
        trip_days = np.minimum(rng.geometric(0.18, cards), 21)
        day = (trip_start[card] + rng.integers(0, trip_days[card])) % DAYS
        hour = rng.choice(24, size, p=_p(HOURS.astype(float)))
        seconds = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, size)
        category = rng.choice(len(self.categories), size, p=self.category_p)
        spender = np.where(rng.random(cards) < BIG_SPENDERS, rng.uniform(20, 150, cards), 1.0)
        amount = np.exp(self.log_median[category] + self.spread[category] * rng.normal(size=size))
        amount = np.round(np.clip(amount * spender[card], 0.5, 60_000), 2)
        order = np.lexsort((seconds, card))
        card_ids = scrambled_ids(np.arange(first_card, first_card + cards), 9, prefix="C")
        holder = rng.integers(0, len(self.names), cards)
        country = rng.choice(len(self.countries), cards, p=self.country_p)
        card, departement, commune = card[order], departement[order], commune[order]
        columns = [
            take(card_ids, card),
            take(self.names, holder[card]),
            take(self.countries, country[card]),
            take(self.categories, category[order]),
            take(self.reference.departements, departement),
            take(self.reference.code, commune),
            pa.array(YEAR_START + seconds[order].astype("timedelta64[s]")),
            pa.array(amount[order]),
        ]
        return pa.Table.from_arrays(columns, schema=SCHEMA), cards
