"""The candidate version as the gate sees it: its rows per split, its rejected rows, and what the run handed
on (typed summaries, the published schema, the parent version's folder)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
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
    splits: dict[str, pd.DataFrame]  # every split, an empty table of the published schema when missing
    rejected: pd.DataFrame | None
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
        if self.kind.default_view == view or (key and view in (None, "text") and self.kind.default_view):
            df = self.splits[split] if folder is None else _read(folder / f"{split}.parquet")
            return [] if df is None or "text" not in df else df["text"].fillna("").tolist()
        path = (folder or self.folder) / f"{split}.parquet"
        if not path.exists():
            return []
        table = pq.read_table(path)
        if any(c not in table.column_names for c in self.kind.payload_names):
            return []
        fn = self.kind.key(view) if key else self.kind.view(view)
        return [t for b in table.to_batches() for t in fn(b).to_pylist()]


def _read(path: Path) -> pd.DataFrame | None:
    return pq.read_table(path).to_pandas() if path.exists() else None


def read_candidate(folder: Path, dataset: str | None, labels: list[str] | None, parent: Path | None,
                   summaries: Summaries | None, schema: pa.Schema | None, kind: RecordKind | str | None = None,
                   config_dir: Path | None = None) -> Candidate:
    manifest = read_json(folder / "manifest.json")
    schema = schema if schema is not None else schemas.SPLIT
    splits = {}
    for s in schemas.SPLITS:
        df = read_parquet(folder / f"{s}.parquet")
        if df is None:  # a split the run did not produce: an empty table of the published schema
            df = schema.empty_table().to_pandas()
        splits[s] = df.reset_index(drop=True)
    return Candidate(
        folder=folder,
        dataset=dataset or manifest.get("dataset") or folder.name,
        labels=labels or manifest.get("labels"),
        manifest=manifest,
        splits=splits,
        rejected=read_parquet(folder / "rejected.parquet"),
        parent=parent,
        summaries=summaries if summaries is not None else Summaries(),
        schema=schema,
        kind=KINDS[kind] if isinstance(kind, str) else kind or KINDS.get(manifest.get("kind") or DEFAULT_KIND,
                                                                          KINDS[DEFAULT_KIND]),
        config_dir=Path(config_dir) if config_dir is not None else None,
    )
