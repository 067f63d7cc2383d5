"""The candidate version as the gate sees it: its rows per split, its rejected rows, and what the run handed
on (typed summaries, the published schema, the parent version's folder).

At a million rows a split is too big to hold as pandas objects beside everything else the gate does, so
the rows stay in their Parquet files: a check reads the columns it needs (`table`, `batches`) and lets
them go. `splits` (every column of every split as pandas) and `rejected` are loaded on first use only, for
the checks that want whole frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from schemas.summaries import CleanSummary, Summaries
from stages.evaluate.evidence import read_json, read_parquet


@dataclass
class Candidate:
    folder: Path
    dataset: str
    labels: list[str] | None
    manifest: dict[str, Any]
    parent: Path | None  # the parent version's folder (leakage against its test split)
    summaries: Summaries = field(default_factory=Summaries)
    schema: pa.Schema = schemas.SPLIT  # the published rows' schema (the plan's last boundary)

    def default_languages(self) -> list[str] | None:
        """The languages clean's `lang` rule allowed, if it had one (the `language` check's default)."""
        clean = self.summaries.get(CleanSummary)
        return clean.allowed("lang") if clean is not None else None

    # -- rows, read as needed -------------------------------------------------------------------------------

    def split_file(self, split: str) -> Path | None:
        path = self.folder / f"{split}.parquet"
        return path if path.exists() else None

    def columns(self, split: str) -> list[str]:
        """The columns a split has (the published schema's where the run produced no file for it)."""
        path = self.split_file(split)
        return pq.read_schema(path).names if path is not None else list(self.schema.names)

    def num_rows(self, split: str) -> int:
        path = self.split_file(split)
        return pq.read_metadata(path).num_rows if path is not None else 0

    def table(self, split: str, columns: list[str] | None = None) -> pa.Table:
        """`columns` (those the split has; all when None) of one split; an empty table if it has no file."""
        path = self.split_file(split)
        if path is None:
            empty = self.schema.empty_table()
            return empty.select([c for c in columns if c in empty.column_names]) if columns else empty
        return pq.read_table(path, columns=[c for c in columns if c in self.columns(split)] if columns else None)

    def batches(self, split: str, columns: list[str], batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        path = self.split_file(split)
        if path is not None:
            yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size,
                                                         columns=[c for c in columns if c in self.columns(split)])

    def frame(self, split: str, columns: list[str] | None = None) -> pd.DataFrame:
        """One split as pandas (`columns`, or all of them); from `splits` when a check already loaded them."""
        if "splits" in self.__dict__:
            df = self.__dict__["splits"][split]
            return df[[c for c in columns if c in df.columns]] if columns else df
        return self.table(split, columns).to_pandas().reset_index(drop=True)

    @cached_property
    def splits(self) -> dict[str, pd.DataFrame]:
        """Every split, every column, as pandas — loaded on first use (a check that needs whole frames)."""
        return {s: self.frame(s) for s in schemas.SPLITS}

    def release(self) -> None:
        """Drop the frames loaded on demand (`splits`, `rejected`); later reads go back to the files."""
        self.__dict__.pop("splits", None)
        self.__dict__.pop("rejected", None)

    @cached_property
    def rejected(self) -> pd.DataFrame | None:
        return read_parquet(self.folder / "rejected.parquet")


def read_candidate(folder: Path, dataset: str | None, labels: list[str] | None, parent: Path | None,
                   summaries: Summaries | None, schema: pa.Schema | None) -> Candidate:
    manifest = read_json(folder / "manifest.json")
    return Candidate(
        folder=folder,
        dataset=dataset or manifest.get("dataset") or folder.name,
        labels=labels or manifest.get("labels"),
        manifest=manifest,
        parent=parent,
        summaries=summaries if summaries is not None else Summaries(),
        schema=schema if schema is not None else schemas.SPLIT,
    )
