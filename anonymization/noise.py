"""Consistent noise: the cell key method (ABS, Eurostat; as in the R packages cellKey and ptable).

Each subject gets a record key: HMAC-SHA256 of the subject under a key derived from a secret kept
per dataset, read as a 64-bit integer. A cell's key is the sum of its distinct subjects' record
keys modulo 2^64, computed exactly (integers) by the engine, read as a fraction of 2^64 in [0, 1).
The perturbation table gives, per original count, a distribution of integer noise in
[-max, max] with zero mean and the policy's variance that never makes a count negative; the cell
key picks the noise from its cumulative distribution. The same cell (the same subjects) thus gets
the same noise in every release: averaging repeated requests gains nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

if TYPE_CHECKING:
    # The table needs numpy: imported where used, so policies load without it.
    from anonymization.ptable import PerturbationTable


class CellKeyNoise(BaseModel):
    """``protection.noise``: integer noise in [-max, max] of the given variance, looked up from
    each cell's key, added to the released counts (``subjects`` and each ``<measure>_count``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    method: Literal["cell_key"] = "cell_key"
    max: int = Field(ge=1, le=50, strict=True)
    variance: float = Field(gt=0, strict=True)

    @field_validator("variance")
    @classmethod
    def _feasible(cls, value: float, info: ValidationInfo) -> float:
        top = info.data.get("max")
        if isinstance(top, int) and value >= top * top:
            raise ValueError(
                f"must be below max² = {top * top}: noise within [-{top}, {top}] cannot vary more"
            )
        return value

    def table(self) -> PerturbationTable:
        """The perturbation table of these parameters (built once per parameters)."""
        from anonymization.ptable import perturbation_table

        return perturbation_table(self.max, self.variance)


def describe(noise: CellKeyNoise) -> dict[str, object]:
    """What a manifest says of the noise (never the secret)."""
    return {
        "method": noise.method,
        "max": noise.max,
        "variance": noise.variance,
        "ptable_sha256": noise.table().digest(),
        "perturbed": ["subjects", "<measure>_count"],
        "means": "<measure>_sum over the published <measure>_count (over 1 where that is 0)",
        "totals": "perturbed as cells of their own (their own cell key)",
    }
