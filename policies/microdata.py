"""Agreements of kind ``microdata``: the release block, the partner's request, and the checks of
the release against its dataset (roles, columns, hierarchies) made when the agreement is written.

The release block is the engine's :class:`MicrodataRelease` plus the formats a partner may ask
for; quasi-identifiers use the dataset's hierarchies (the column's, or another one the dataset
declares). The subject is always replaced by a keyed pseudonym (HMAC-SHA256).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from anonymization.errors import InvalidRequest
from anonymization.fields import Distinct
from anonymization.hierarchies import Hierarchy, TableHierarchy, TimeHierarchy, builtin
from anonymization.microdata.config import DatasetSpec as EngineDataset
from anonymization.microdata.config import MicrodataPolicy, MicrodataRelease, QuasiIdentifierSpec
from policies.models import (
    FORMATS,
    ColumnSpec,
    DatasetSpec,
    Frozen,
    HierarchySpec,
    OutputFormat,
    load_hierarchies,
)

PLAIN_HASHES = {"sha256", "sha-256", "sha1", "md5", "hash", "plain"}


class MicrodataReleaseSpec(MicrodataRelease):
    """The ``release`` block of a microdata agreement (see the README's Microdata section)."""

    pseudonym: Literal["hmac-sha256"] = Field(
        default="hmac-sha256",
        description="the subject's pseudonym: HMAC-SHA256, keyed per agreement",
    )
    formats: Annotated[tuple[OutputFormat, ...], Distinct] = Field(default=FORMATS, min_length=1)

    @field_validator("pseudonym", mode="before")
    @classmethod
    def _keyed_only(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in PLAIN_HASHES:
            raise ValueError(
                "plain hashing is refused: a subject code is brute-forced from its hash; "
                "pseudonyms are HMAC-SHA256 under the agreement's secret key"
            )
        return value


class MicrodataRequest(Frozen):
    """A partner's request for the microdata its agreement allows, in one format."""

    kind: Literal["microdata"]
    format: OutputFormat = "csv"


def hierarchy_name(dataset: DatasetSpec, release: MicrodataReleaseSpec, column: str) -> str | None:
    """The hierarchy a released column is generalized with: the release's, else the column's."""
    spec = release.quasi_identifiers.get(column)
    if spec is not None and spec.hierarchy:
        return spec.hierarchy
    declared = dataset.columns.get(column)
    return declared.hierarchy if declared else None


def check_microdata(
    dataset: DatasetSpec, declared: Iterable[str], release: MicrodataReleaseSpec
) -> None:
    """Raise (naming the field) unless every released column and hierarchy fits the dataset;
    ``declared`` are the names of the dataset's custom hierarchies."""
    private = {dataset.subject, *dataset.identifiers}
    named = set(declared)
    columns = [
        *((c, f"release.quasi_identifiers.{c}") for c in release.quasi_identifiers),
        *((c, f"release.sensitive.{i}") for i, c in enumerate(release.sensitive)),
    ]
    for column, field in columns:
        if column in private:
            raise InvalidRequest(
                f"{column!r} is the subject or an identifier: identifiers are dropped and the "
                "subject is pseudonymized, never released as a quasi-identifier or sensitive value",
                field=field,
                code="identifier_used",
            )
        if column not in dataset.columns:
            raise InvalidRequest(
                f"{column!r} is not a column of the dataset (columns: "
                f"{', '.join(dataset.columns)})",
                field=field,
                code="unknown_column",
            )
    for column in release.quasi_identifiers:
        field = f"release.quasi_identifiers.{column}.hierarchy"
        name = hierarchy_name(dataset, release, column)
        if name is None and release.algorithm == "optimal":
            raise InvalidRequest(
                f"quasi-identifier {column!r} has no hierarchy: name one here or on the "
                "dataset's column (optimal generalization climbs each one's hierarchy)",
                field=field,
                code="missing_hierarchy",
            )
        if name is not None and name not in named and builtin(name) is None:
            raise InvalidRequest(
                f"unknown hierarchy {name!r}: the dataset declares "
                f"{', '.join(sorted(named)) or 'none'} (built in: geo_fr, time)",
                field=field,
                code="unknown_hierarchy",
            )


def check_mondrian(
    dataset: DatasetSpec,
    hierarchies: Mapping[str, HierarchySpec],
    release: MicrodataReleaseSpec,
    column_types: Mapping[str, str] | None = None,
) -> None:
    """Raise (naming the quasi-identifier) unless Mondrian can split every one: numbers (numeric
    bands, or no hierarchy over a column stored as numbers) or codes in a hierarchy table's order
    (an ARX file, ``geo_fr``). Times and plain text cannot be split. ``column_types`` are the
    stored types (text, number, date); without them a column with no hierarchy is left to the
    engine, which reads its values."""
    if release.algorithm != "mondrian":
        return
    for column in release.quasi_identifiers:
        name = hierarchy_name(dataset, release, column)
        field = f"release.quasi_identifiers.{column}"
        if name is not None and name in hierarchies:
            continue  # numeric bands or an ARX table: both split
        if name == "time" or (name is None and dataset.columns[column].role == "time"):
            raise InvalidRequest(
                f"{column!r} holds times, which Mondrian cannot split (it splits numbers, or "
                "codes in a hierarchy table's order): use algorithm optimal with the time "
                "hierarchy, or an ARX hierarchy table of the column's values",
                field=field,
                code="mondrian_unsupported",
            )
        stored = (column_types or {}).get(column)
        if name is None and column_types is not None and stored != "number":
            raise InvalidRequest(
                f"{column!r} has no hierarchy and is stored as {stored or 'text'}, which "
                "Mondrian cannot split (it splits numbers, or codes in a hierarchy table's "
                "order): name an ARX hierarchy table or numeric bands for it",
                field=field,
                code="mondrian_unsupported",
            )


def released_columns(dataset: DatasetSpec, release: MicrodataReleaseSpec) -> DatasetSpec:
    """The dataset block restricted to the released columns, each naming the hierarchy it is
    generalized with (so the dataset's hierarchy loader builds exactly those)."""
    columns: dict[str, ColumnSpec] = {}
    for column in (*release.quasi_identifiers, *release.sensitive):
        declared = dataset.columns[column]
        name = hierarchy_name(dataset, release, column)
        if name is None:
            continue
        same = name == declared.hierarchy
        role = "quasi_identifier" if column in release.quasi_identifiers else "sensitive"
        columns[column] = ColumnSpec(
            role=role, hierarchy=name, level=declared.level if same else None
        )
    return DatasetSpec(subject=dataset.subject, identifiers=dataset.identifiers, columns=columns)


class StoredLevel(Hierarchy):
    """A hierarchy seen from the level a column's values are stored at (a département column on
    the INSEE ladder starts at ``departement``); timestamps are read at their day."""

    def __init__(self, base: Hierarchy, level: str | None) -> None:
        self.base = base
        self.name = base.name
        self.codes = base.codes
        self.levels = base.levels[base.index(level) if level else 0 :]

    def generalize_labels(
        self, labels: Iterable[str], from_level: str, to_level: str
    ) -> dict[str, str]:
        """The base ladder's labels (timestamps cut to their day first)."""
        labels = list(labels)
        if not isinstance(self.base, TimeHierarchy) or from_level != "day":
            return self.base.generalize_labels(labels, from_level, to_level)
        days = self.base.generalize_labels({label[:10] for label in labels}, "day", to_level)
        return {label: days[label[:10]] for label in labels}


def at_stored_levels(
    spec: DatasetSpec, built: dict[str, Hierarchy], release: MicrodataReleaseSpec
) -> dict[str, Hierarchy]:
    """Each released column's hierarchy starting at its stored level; raise if hierarchical
    t-closeness lacks a hierarchy table for a sensitive attribute."""
    hierarchies: dict[str, Hierarchy] = {}
    for column, hierarchy in built.items():
        level = spec.columns[column].level
        rebase = isinstance(hierarchy, TimeHierarchy) or level not in (None, hierarchy.levels[0])
        hierarchies[column] = StoredLevel(hierarchy, level) if rebase else hierarchy
    t = release.protection.t
    if t is not None and t.distance == "hierarchical":
        for column in release.sensitive:
            if not isinstance(hierarchies.get(column), TableHierarchy):
                raise InvalidRequest(
                    f"hierarchical t-closeness needs a hierarchy table (ARX file) for the "
                    f"sensitive attribute {column!r}",
                    field="release.protection.t.distance",
                    code="missing_hierarchy",
                )
    return hierarchies


def engine_policy(dataset: DatasetSpec, release: MicrodataReleaseSpec) -> MicrodataPolicy:
    """The engine's policy: subject pseudonymized; hierarchies are passed built (by column), so
    the release names none. Identifiers are not named: the caller gives the engine only the
    subject and the released columns, so identifiers never reach it."""
    engine_release = MicrodataRelease.model_validate(
        {
            **release.model_dump(exclude={"pseudonym", "formats", "quasi_identifiers"}),
            "quasi_identifiers": {c: QuasiIdentifierSpec() for c in release.quasi_identifiers},
        }
    )
    return MicrodataPolicy(
        dataset=EngineDataset(subject=dataset.subject),
        release=engine_release,
    )


def describe(release: MicrodataReleaseSpec, request: MicrodataRequest) -> dict[str, Any]:
    """The plan of a microdata release, as a decision shows it."""
    return {
        "kind": "microdata",
        "quasi_identifiers": list(release.quasi_identifiers),
        "sensitive": list(release.sensitive),
        "protection": release.protection.model_dump(mode="json", exclude_none=True),
        "algorithm": release.algorithm,
        "metric": release.metric,
        "pseudonym": release.pseudonym,
        "format": request.format,
    }


class MicrodataPolicyFile(Frozen):
    """A microdata policy in the service's shape (a dataset block with stored levels and column
    roles, its hierarchies, the release), as a file read offline."""

    dataset: DatasetSpec
    hierarchies: dict[str, HierarchySpec] = Field(default_factory=dict)
    release: MicrodataReleaseSpec


def offline_policy(
    policy: MicrodataPolicyFile, base_dir: Path
) -> tuple[MicrodataPolicy, dict[str, Hierarchy], list[str]]:
    """What the engine needs to release ``policy`` from a local file: its policy, each released
    column's hierarchy from the column's stored level (files read from ``base_dir``), and the
    columns to give it (the subject and the released ones: identifiers never reach it)."""
    release = policy.release
    check_microdata(policy.dataset, policy.hierarchies, release)
    check_mondrian(policy.dataset, policy.hierarchies, release)
    spec = released_columns(policy.dataset, release)
    named = MicrodataPolicyFile(dataset=spec, hierarchies=policy.hierarchies, release=release)
    hierarchies = at_stored_levels(spec, load_hierarchies(named, base_dir), release)
    columns = [policy.dataset.subject, *release.quasi_identifiers, *release.sensitive]
    return engine_policy(policy.dataset, release), hierarchies, columns
