"""Constraints shared by the policy models of the engine and of ``policies``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TypeVar

from pydantic import AfterValidator

Items = TypeVar("Items", bound=Sequence[object])


def _distinct(values: Items) -> Items:
    repeated = [str(value) for value, count in Counter(values).items() if count > 1]
    if repeated:
        raise ValueError(f"{', '.join(repeated)} repeated: list each once")
    return values


# A list or tuple whose entries are distinct: ``Annotated[list[str], Distinct]``.
Distinct = AfterValidator(_distinct)
