"""The candidate version as the gate sees it: its rows per split, its rejected rows, and what the run handed
on (typed summaries, the published schema, the parent version's folder)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

import schemas
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

    def default_languages(self) -> list[str] | None:
        """The languages clean's `lang` rule allowed, if it had one (the `language` check's default)."""
        clean = self.summaries.get(CleanSummary)
        return clean.allowed("lang") if clean is not None else None


def read_candidate(folder: Path, dataset: str | None, labels: list[str] | None, parent: Path | None,
                   summaries: Summaries | None, schema: pa.Schema | None) -> Candidate:
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
    )
