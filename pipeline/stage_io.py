"""How rows travel between stages: Parquet files written batch by batch, every batch checked against the
boundary's schema (`BoundaryWriter`), and read back as the next stage's input (`ParquetInput`, re-iterable
for whole-stream stages). No stage needs the corpus in Python objects.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

import schemas


class ParquetInput:
    """A stage's input: the Parquet files another stage wrote; re-iterable for whole-stream stages."""

    def __init__(self, files: list[Path], batch_size: int):
        self.files = files
        self.batch_size = batch_size
        self.num_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        for f in self.files:
            yield from pq.ParquetFile(f).iter_batches(batch_size=self.batch_size, columns=columns)


class BoundaryWriter:
    """Lazily opened Parquet writer that checks every batch against the boundary's schema and puts the
    declared columns first, in the schema's order (extra columns, such as signals, after them)."""

    def __init__(self, path: Path, schema: pa.Schema, where: str):
        self.path, self.schema, self.where = path, schema, where
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, batch: pa.RecordBatch | None) -> None:
        if batch is None or batch.num_rows == 0:
            return
        schemas.check(batch, self.schema, self.where)
        batch = schemas.conform(batch, self.schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, batch.schema, compression="zstd")
        elif batch.schema != self.writer.schema:
            try:
                batch = batch.cast(self.writer.schema)
            except (ValueError, pa.ArrowInvalid) as exc:
                raise schemas.SchemaError(f"{self.where}: batch schema changed mid-stream: {exc}") from None
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        if self.writer is None:  # no rows: still leave a readable file with the declared columns
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self.writer.close()
