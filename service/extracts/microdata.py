"""A microdata release job's computation: the dataset's records, generalized and suppressed by
the engine under the agreement's release block, the subject pseudonymized with the agreement's key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from anonymization.microdata import MicrodataResult, anonymize_microdata
from anonymization.microdata.linkage import HeldMicrodata
from policies.microdata import MicrodataReleaseSpec, engine_policy
from policies.models import DatasetSpec
from service.agreements import service as agreements
from service.datasets.models import Dataset
from service.datasets.reading import read_table


def _records(content: bytes, dataset: Dataset, columns: list[str]) -> pd.DataFrame:
    """The columns the release reads, as text; a missing value stays missing (the engine refuses
    it, as it refuses a subject that repeats)."""
    frame = read_table(content, dataset.file_format)[columns]
    return frame.astype(str).where(frame.notna())


def release(
    content: bytes,
    dataset: Dataset,
    spec: DatasetSpec,
    release: MicrodataReleaseSpec,
    pseudonym_key: bytes,
    held: Sequence[HeldMicrodata],
) -> MicrodataResult:
    """The released records and the engine's manifest (node, suppression, utility, risk),
    protected jointly with the microdata releases ``held`` under the same pseudonym key."""
    policy = engine_policy(spec, release)
    hierarchies = agreements.microdata_hierarchies(dataset, release)
    columns = [spec.subject, *release.quasi_identifiers, *release.sensitive]
    frame = _records(content, dataset, columns)
    return anonymize_microdata(frame, policy, hierarchies, pseudonym_key, held)


def summary(result: MicrodataResult, release_spec: MicrodataReleaseSpec) -> dict[str, Any]:
    """The manifest's account of the protection: the engine's report and the pseudonyms."""
    return {
        "kind": "microdata",
        "protection": release_spec.protection.model_dump(mode="json", exclude_none=True),
        "pseudonym": f"{release_spec.pseudonym}, keyed per agreement",
        **result.manifest,
    }
