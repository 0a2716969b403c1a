"""Daily smart-meter readings, as an electricity distributor could share them with a university."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from service.demo.names import scrambled_ids, take
from service.demo.reference import communes, iris_codes

SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("iris", pa.string()),
        ("commune", pa.string()),
        ("tariff", pa.string()),
        ("contracted_power_kva", pa.int16()),
        ("date", pa.date32()),
        ("kwh", pa.float64()),
    ]
)
CHUNK_ROWS = 250_000
FIRST_DAY = np.datetime64("2025-01-01", "D")
TARIFFS = np.array(["base", "hp_hc", "tempo"])
HOME_POWER = {3: 0.06, 6: 0.42, 9: 0.28, 12: 0.12, 15: 0.06, 18: 0.03, 24: 0.015, 30: 0.01}
BUSINESS_POWER = {36: 0.4, 60: 0.3, 120: 0.2, 250: 0.1}
BUSINESSES = 0.01  # share of meters that are large professional consumers (50 to 100 times more)


def _p(weights: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    values = np.array(list(weights.values()))
    return np.array(list(weights)), values / values.sum()


class ConsumptionGenerator:
    """``meters`` × ``days`` daily readings in the given départements, meter by meter.

    Meters are placed in communes by population, then uniformly among the commune's derived IRIS.
    """

    schema = SCHEMA

    def __init__(self, meters: int, days: int, seed: int, departements: Sequence[str]) -> None:
        self.meters, self.days, self.seed = meters, days, seed
        self.rows = meters * days
        rng = np.random.default_rng([seed, 2])
        reference = communes()
        territory = np.flatnonzero(np.isin(reference.departements, list(departements)))
        weights = reference.departement_population()[territory]
        departement = territory[rng.choice(len(territory), meters, p=weights / weights.sum())]
        commune = reference.sample(rng, departement)
        self.commune = reference.code[commune]
        self.iris = iris_codes(self.commune, reference.iris_count()[commune], rng)
        business = rng.random(meters) < BUSINESSES
        home_power, home_p = _p(HOME_POWER)
        business_power, business_p = _p(BUSINESS_POWER)
        self.power = np.where(
            business,
            rng.choice(business_power, meters, p=business_p),
            rng.choice(home_power, meters, p=home_p),
        )
        # Electric heating is likelier in homes with a higher contracted power; Tempo (cheap
        # days, very dear winter peak days) attracts heated homes.
        heated = ~business & (rng.random(meters) < np.clip(0.1 + 0.04 * self.power, 0, 0.8))
        tempo = np.where(heated, 0.12, 0.03)
        draw = rng.random(meters)
        self.tariff = np.where(draw < tempo, 2, np.where(draw < tempo + 0.38, 1, 0))
        self.baseline = np.where(
            business,
            5.0 * np.sqrt(self.power / 36) * rng.uniform(50, 100, meters),
            (1.2 + 0.45 * self.power) * rng.lognormal(0.0, 0.3, meters),
        )
        self.heating = np.where(heated, 1.1 * self.power * rng.lognormal(0.0, 0.3, meters), 0.0)
        self.business = business

    def chunks(self) -> Iterator[pa.Table]:
        """Every chunk of readings, meter after meter, each meter's days in order."""
        per_chunk = max(1, CHUNK_ROWS // self.days)
        for number, first in enumerate(range(0, self.meters, per_chunk)):
            rng = np.random.default_rng([self.seed, 3, number])
            yield self._chunk(rng, np.arange(first, min(first + per_chunk, self.meters)))

    def _chunk(self, rng: np.random.Generator, meters: np.ndarray) -> pa.Table:
        local = np.repeat(np.arange(len(meters)), self.days)
        meter = meters[local]
        day = np.tile(np.arange(self.days), len(meters))
        date = FIRST_DAY + day.astype("timedelta64[D]")
        # Heating follows the cold: highest mid-January, none from May to September.
        cold = np.maximum(np.cos(2 * np.pi * (day - 15) / 365.25), 0.0) ** 1.5
        weekend = ((date.astype(np.int64) + 3) % 7 >= 5).astype(float)  # 1970-01-01: Thursday
        activity = np.where(self.business[meter], 1.0 - 0.6 * weekend, 1.0 + 0.08 * weekend)
        noise = rng.gamma(20.0, 1 / 20.0, len(meter))
        kwh = (self.baseline[meter] * activity + self.heating[meter] * cold) * noise
        columns = [
            take(scrambled_ids(meters, 14), local),
            take(self.iris[meters], local),
            take(self.commune[meters], local),
            take(TARIFFS, self.tariff[meter]),
            pa.array(self.power[meter].astype(np.int16)),
            pa.array(date),
            pa.array(np.round(kwh, 3)),
        ]
        return pa.Table.from_arrays(columns, schema=SCHEMA)
