"""Write a generated dataset chunk by chunk: Parquet always, CSV optionally, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


class DatasetWriter:
    """Append Arrow chunks to ``DIR/NAME.parquet`` (one row group per chunk) and ``NAME.csv``.

    Files are written under temporary names and renamed only when every chunk was written, so a
    failed or interrupted run leaves no partial file behind.
    """

    def __init__(self, directory: Path, name: str, schema: pa.Schema, csv: bool) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / f"{name}.parquet"] + ([directory / f"{name}.csv"] if csv else [])
        self.temporary = [path.with_name(f".{path.name}.partial") for path in self.paths]
        self.parquet = pq.ParquetWriter(self.temporary[0], schema, compression="zstd")
        self.csv = pacsv.CSVWriter(self.temporary[1], schema) if csv else None

    def write(self, table: pa.Table) -> None:
        """Append one chunk."""
        self.parquet.write_table(table, row_group_size=table.num_rows)
        if self.csv is not None:
            self.csv.write_table(table)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.parquet.close()
        if self.csv is not None:
            self.csv.close()
        for temporary, path in zip(self.temporary, self.paths, strict=True):
            if kind is None:
                os.replace(temporary, path)
            else:
                temporary.unlink(missing_ok=True)
