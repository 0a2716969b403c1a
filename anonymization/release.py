"""A release: cells computed, protected, and shaped into the table a partner receives."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import pandas as pd

from anonymization import __version__
from anonymization.blocks import Audit, Block, audit_alone, engine_block, table_counts
from anonymization.cells import compute_cells
from anonymization.noise import CellKeyNoise
from anonymization.noise import describe as describe_noise
from anonymization.plan import AggregatePlan, Measure
from anonymization.protection import primary_suppression
from anonymization.ptable import perturbed
from anonymization.source import Source

if TYPE_CHECKING:
    from anonymization.ledger import HeldRelease

OutputFormat = Literal["csv", "parquet", "json"]
Progress = Callable[[str], None]
Held: TypeAlias = "tuple[HeldRelease, AggregatePlan]"


@dataclass(frozen=True)
class Release:
    """The protected table and what was done to it."""

    table: pd.DataFrame
    plan: AggregatePlan
    cells: pd.DataFrame = field(repr=False)
    audit: Audit = field(repr=False)
    block: Block = field(repr=False)

    def held(self, dataset: str, request: dict[str, Any]) -> HeldRelease:
        """What the ledger keeps of this release once the partner has received it."""
        from anonymization.differencing import context_of
        from anonymization.ledger import HeldRelease

        levels = {d.column: d.level for d in self.plan.dimensions}
        return HeldRelease(dataset, request, context_of(self.plan), levels, self.block)

    def counts(self) -> dict[str, Any]:
        """Cells released and suppressed, by reason."""
        return {
            **table_counts(self.table),
            **(
                {"complements_method": self.audit.complements}
                if self.audit.complements is not None
                else {}
            ),
        }

    def summary(self) -> dict[str, Any]:
        """What a manifest says of this release (without the output's hash)."""
        noise = self.plan.protection.noise
        return {
            "engine": f"partage-anonymization {__version__}",
            "plan": self.plan.describe(),
            **self.counts(),
            **({"noise": describe_noise(noise)} if noise is not None else {}),
            "audit": self.audit.to_manifest(),
        }


def measure_values(cells: pd.DataFrame, measure: Measure) -> np.ndarray:
    """A measure's value in every cell, before suppression (floats rounded to 1e-6). A mean is
    the sum over the cell's ``_n`` (with noise, the published count), or over 1 where noise
    brought that count to 0, so the sum is always mean × max(count, 1); empty without values."""
    if measure.column is None:
        return cells["subjects"].to_numpy()
    counts = cells[f"{measure.column}_n"].to_numpy(dtype=float)
    if measure.aggregate == "count":
        return counts.astype("int64")
    sums = cells[f"{measure.column}_sum"].to_numpy(dtype=float)
    if measure.aggregate == "sum":
        return np.round(sums, 6)
    # A cell without values has no sum (NaN), hence no mean.
    return np.asarray(np.round(sums / np.maximum(counts, 1.0), 6))


def noisy_cells(cells: pd.DataFrame, plan: AggregatePlan, noise: CellKeyNoise) -> pd.DataFrame:
    """The cells as published with noise: ``subjects`` and every counted measure's ``_n``
    perturbed by the cell's own key. One key and one table for all of them: where a count
    equals the subjects (one row per subject), it gets the very same noise, so it tells nothing
    the published subjects do not; an independent draw would be a second noisy reading of the
    same number. Means are then divided by the published count (``measure_values``)."""
    keys = cells["cell_key"].to_numpy()
    counted = {m.column for m in plan.measures if m.aggregate in ("count", "mean")}
    published = {
        name: perturbed(cells[name].to_numpy(), keys, noise)
        for name in ["subjects", *(f"{column}_n" for column in sorted(counted, key=str))]
    }
    return cells.assign(**published)


def release_table(cells: pd.DataFrame, plan: AggregatePlan, reason: pd.Series) -> pd.DataFrame:
    """The partner's table: dimensions, the requested measures, ``status`` and ``reason``.

    A suppressed cell shows no value in any measure column.
    """
    table = cells[[d.column for d in plan.dimensions]].astype("string")
    suppressed = reason.notna().to_numpy()
    for measure in plan.measures:
        values = measure_values(cells, measure).astype(object)
        values[suppressed] = None
        integral = measure.aggregate in ("subjects", "count")
        # A nullable array (not numpy): counts stay integers next to suppressed (empty) cells.
        table[measure.name] = pd.array(values, dtype="Int64" if integral else "Float64")
    table["status"] = np.where(suppressed, "suppressed", "released")
    table["reason"] = reason.astype("string").to_numpy()
    return table.reset_index(drop=True)


def run_release(
    source: Source,
    plan: AggregatePlan,
    progress: Progress | None = None,
    held: Sequence[Held] = (),
    cells: pd.DataFrame | None = None,
    noise_secret: bytes | None = None,
) -> Release:
    """Compute the cells of ``plan`` over ``source`` (unless given), suppress every sensitive
    cell and every complement its protection needs, jointly with the releases the partner
    already ``held`` (each with its plan, rebuilt from its request); raise AuditFailure if it
    cannot be proved. With noise in the plan, released counts are perturbed by their cell keys
    (``noise_secret`` is the dataset's secret); the rules decide on the true counts."""
    report = progress or (lambda _message: None)
    if cells is None:
        report("aggregating")
        cells = compute_cells(source, plan, noise_secret)
    report("protecting")
    primary = primary_suppression(cells, plan.protection)
    noise = plan.protection.noise
    if noise is not None:
        shown = noisy_cells(cells, plan, noise)
        block = engine_block(cells, plan, primary, shown["subjects"].to_numpy(), noise.max)
    else:
        block, shown = engine_block(cells, plan, primary), cells
    protection = plan.protection
    if not plan.totals and not held:
        # No published relation ties the cells: no complement is needed, nothing to solve.
        final, audit = block, audit_alone(block, protection.k, protection.interval.p)
    else:
        final, audit = _protect_jointly(source, plan, block, held, report)
    reasons = final.reason
    table = release_table(shown, plan, pd.Series(reasons, index=cells.index, dtype=object))
    return Release(table, plan, cells, audit, final)


def _protect_jointly(
    source: Source, plan: AggregatePlan, block: Block, held: Sequence[Held], report: Progress
) -> tuple[Block, Audit]:
    """Complements and the LP audit over the release's margins and what the partner holds."""
    from anonymization.differencing import context_of, joint_system
    from anonymization.suppression import protect

    if any(entry.context != context_of(plan) for entry, _ in held):
        report("checking differences with held releases")
    system, margins = joint_system(source, plan, block, held)
    protection = plan.protection
    reasons, audit = protect(system, protection.k, protection.interval.p, margins, report)
    same = sum(entry.context == context_of(plan) for entry, _ in held)
    return replace(system.blocks[0], reason=reasons), replace(audit, held=same)


def serialize(table: pd.DataFrame, fmt: OutputFormat) -> bytes:
    """The table as bytes in the requested format (codes stay text in every format)."""
    if fmt == "csv":
        return table.to_csv(index=False).encode("utf-8")
    if fmt == "json":
        return table.to_json(orient="records", force_ascii=False).encode("utf-8")
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()
