"""What report.html plots, per split: row and label counts, text lengths in characters and words, the
language mix — read a batch at a time from the split's Parquet file, so a million rows cost a few bytes
each (two integers per text), never the texts as Python objects."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from stages.evaluate.candidate import Candidate


@dataclass
class SplitFigures:
    rows: int
    labels: pd.Series  # label → rows ("(none)" for unlabelled rows)
    chars: np.ndarray | None  # characters per text (None: no text column)
    words: np.ndarray | None  # whitespace-separated words per text
    langs: pd.Series | None  # detected language → rows (None: no `lang` column)
    lang_scores: np.ndarray | None


def split_figures(candidate: Candidate, split: str, text: bool = True) -> SplitFigures:
    """The figures of one split; with `text` False only its row count (a record kind with sections of its
    own plots its fields itself)."""
    columns = candidate.columns(split) if text else []
    wanted = [c for c in ("label", "text", "lang", "lang_score") if c in columns]
    labels: dict[str, int] = {}
    langs: dict[str, int] = {}
    chars, words, scores = [], [], []
    for batch in candidate.batches(split, wanted):
        if "label" in wanted:
            _count(labels, batch.column("label"))
        if "lang" in wanted:
            _count(langs, batch.column("lang"))
        if "text" in wanted:
            text = batch.column("text").drop_null()
            chars.append(pc.utf8_length(text).to_numpy(zero_copy_only=False))
            trimmed = pc.utf8_trim_whitespace(text)
            n = pc.list_value_length(pc.utf8_split_whitespace(trimmed)).to_numpy(zero_copy_only=False)
            words.append(np.where(pc.utf8_length(trimmed).to_numpy(zero_copy_only=False) == 0, 0, n))
        if "lang_score" in wanted:
            scores.append(batch.column("lang_score").drop_null().to_numpy(zero_copy_only=False))

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    return SplitFigures(
        rows=candidate.num_rows(split),
        labels=pd.Series(labels, dtype="int64").sort_values(ascending=False, kind="stable"),
        chars=joined(chars) if "text" in wanted else None,
        words=joined(words) if "text" in wanted else None,
        langs=pd.Series(langs, dtype="int64").sort_values(ascending=False, kind="stable") if "lang" in wanted else None,
        lang_scores=joined(scores).astype(float) if "lang_score" in wanted else None,
    )


def _count(into: dict[str, int], column: pa.Array) -> None:
    counts = pc.value_counts(pc.fill_null(column.cast(pa.string()), "(none)"))
    for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
        into[value] = into.get(value, 0) + n
