"""One row per smart meter, derived from the daily readings: the demo's microdata dataset.

A research lab studies households, not readings: the daily table repeats each meter 365 times,
so k-anonymity over it would count readings. This profile has one record per meter: where it
is, its contract, a heating type read off its consumption, and its annual consumption.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from service.demo.writer import DatasetWriter

# Winter (December to February) days at least this many times the summer (June to August)
# days: the home heats with electricity. A meter without readings in both seasons: unknown.
HEATING_RATIO = 1.5
# Annual kWh class bounds (the sensitive value): lower bound of each class after the first.
CLASSES = (
    (2_500, "lt_2500"),
    (5_000, "2500_5000"),
    (10_000, "5000_10000"),
    (20_000, "10000_20000"),
)
TOP_CLASS = "ge_20000"

QUERY = f"""
WITH meters AS (
    SELECT meter_id,
           any_value(iris) AS iris,
           any_value(commune) AS commune,
           any_value(tariff) AS tariff,
           any_value(contracted_power_kva) AS contracted_power_kva,
           round(sum(kwh) * 365 / count(*)) AS annual_kwh,
           avg(kwh) FILTER (WHERE month(date) IN (12, 1, 2)) AS winter,
           avg(kwh) FILTER (WHERE month(date) IN (6, 7, 8)) AS summer
    FROM read_parquet($path)
    GROUP BY meter_id
)
SELECT meter_id, iris, commune, tariff, contracted_power_kva,
       CASE WHEN winter IS NULL OR summer IS NULL THEN 'unknown'
            WHEN winter >= {HEATING_RATIO} * summer THEN 'electric'
            ELSE 'other' END AS heating,
       CAST(annual_kwh AS BIGINT) AS annual_kwh,
       CASE {" ".join(f"WHEN annual_kwh < {bound} THEN '{label}'" for bound, label in CLASSES)}
            ELSE '{TOP_CLASS}' END AS consumption_class
FROM meters
ORDER BY meter_id
"""


def derive(readings: Path, out: Path) -> None:
    """Write ``out`` (Parquet, atomically): one row per meter of the ``readings`` file, with
    its annual consumption (annualised over the days read), heating type and class."""
    with duckdb.connect() as connection:
        table = connection.sql(QUERY, params={"path": str(readings)}).to_arrow_table()
    with DatasetWriter(out.parent, out.stem, table.schema, csv=False) as writer:
        writer.write(table)
