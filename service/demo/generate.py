"""Generate the demo datasets into a directory, chunk by chunk."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from service.demo.writer import DatasetWriter

CSV_MAX_ROWS = 2_000_000  # by default a CSV copy is written up to this many rows


class Generator(Protocol):
    """A dataset generator: a row count known in advance and its rows as Arrow chunks."""

    rows: int
    schema: pa.Schema

    def chunks(self) -> Iterator[pa.Table]: ...


@dataclass(frozen=True)
class Generated:
    """What was written for one dataset."""

    name: str
    rows: int
    paths: list[Path]
    seconds: float


def generate(
    generator: Generator,
    directory: Path,
    name: str,
    csv: bool | None,
    advance: Callable[[int], None],
) -> Generated:
    """Write ``name``.parquet (and ``name``.csv when ``csv``, or when None and the dataset is
    small enough) in ``directory``, calling ``advance`` with the rows of every chunk written."""
    started = time.perf_counter()
    with_csv = generator.rows <= CSV_MAX_ROWS if csv is None else csv
    written = 0
    with DatasetWriter(directory, name, generator.schema, with_csv) as writer:
        for chunk in generator.chunks():
            writer.write(chunk)
            written += chunk.num_rows
            advance(chunk.num_rows)
    return Generated(name, written, writer.paths, time.perf_counter() - started)
