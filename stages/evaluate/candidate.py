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
import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from schemas.kinds import DEFAULT_KIND, KINDS
from schemas.record import RecordKind
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
    kind: RecordKind = KINDS[DEFAULT_KIND]
    config_dir: Path | None = None  # where the dataset config's relative paths start

    def default_languages(self, column: str = "lang") -> list[str] | None:
        """The languages clean's rule on a language column allowed, if it had one (the `language` check's
        default)."""
        clean = self.summaries.get(CleanSummary)
        return clean.allowed(column) if clean is not None else None

    def view(self, split: str, view: str, key: bool = False, folder: Path | None = None) -> list[str]:
        """One text per row of a split, in row order: a field view of the record kind (`key`: a dedupe
        key), read from the split's Parquet file (`folder`: another version's)."""
        return [t for _, texts in self.view_batches(split, view, key, folder) for t in texts.to_pylist()]

    def view_batches(self, split: str, view: str, key: bool = False, folder: Path | None = None,
                     batch_size: int = 65_536) -> Iterator[tuple[pa.Array, pa.Array]]:
        """(ids, texts) a batch at a time: `view` of each row (a field view of the record kind, or with `key`
        a dedupe key), read from the split's Parquet file (`folder`: another version's)."""
        path = (folder or self.folder) / f"{split}.parquet"
        if not path.exists():
            return
        names = pq.read_schema(path).names
        default = self.kind.default_view == view or (key and view in (None, "text") and self.kind.default_view)
        if default:
            if "text" not in names:
                return
            columns = ["text"]
        else:
            if any(c not in names for c in self.kind.payload_names):
                return
            columns = list(self.kind.payload_names)
            fn = self.kind.key(view) if key else self.kind.view(view)
        columns = [c for c in ("id", *columns) if c in names]
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=list(dict.fromkeys(columns))):
            ids = batch.column("id") if "id" in batch.schema.names else pa.nulls(batch.num_rows, pa.string())
            texts = pc.fill_null(batch.column("text").cast(pa.string()), "") if default else fn(batch)
            yield ids, texts

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
                   summaries: Summaries | None, schema: pa.Schema | None, kind: RecordKind | str | None = None,
                   config_dir: Path | None = None) -> Candidate:
    manifest = read_json(folder / "manifest.json")
    return Candidate(
        folder=folder,
        dataset=dataset or manifest.get("dataset") or folder.name,
        labels=labels or manifest.get("labels"),
        manifest=manifest,
        parent=parent,
        summaries=summaries if summaries is not None else Summaries(),
        schema=schema if schema is not None else schemas.SPLIT,
        kind=KINDS[kind] if isinstance(kind, str) else kind or KINDS.get(manifest.get("kind") or DEFAULT_KIND,
                                                                          KINDS[DEFAULT_KIND]),
        config_dir=Path(config_dir) if config_dir is not None else None,
    )
