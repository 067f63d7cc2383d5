"""edit: which text becomes the published response when annotators' edits differ.

Each non-cancelled annotation gives one text: the submitted text area (an annotator who leaves the response
as it is submits it unchanged). When all give the same text, that is it. Otherwise the documented rule
(`responses.edit_rule`):

- `medoid` (default): the text closest to the others — the highest mean similarity (difflib's
  `SequenceMatcher.ratio`, 0..1) to the other annotators' texts; a tie goes to the text most annotators
  submitted, then to an edit over the unchanged original, then to the earliest annotation. With two
  annotators who differ, the similarity ties, so an edit beats leaving it unchanged and two different edits
  go to the earlier one.
- `first`: the earliest annotation's text.

Every text stays in `annotations/annotations.parquet`; the row's `meta.review` names the chosen annotation.
"""
from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any

import pandas as pd


def similarity(a: str, b: str) -> float:
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def choose(ann: pd.DataFrame, original: dict[str, str], rule: str = "medoid") -> pd.DataFrame:
    """Per item: text, edited (differs from the original), annotation_id and annotator of the chosen text,
    n, n_edits (annotations whose text differs from the original), texts (distinct texts), similarity
    (mean pairwise similarity of the texts; 1.0 when all agree)."""
    rows = []
    for item, g in ann.sort_values("annotation_id").groupby("item", sort=True):
        orig = original.get(item, "")
        texts = [orig if t is None or (isinstance(t, float) and pd.isna(t)) else str(t) for t in g["edited"]]
        ids, who = g["annotation_id"].tolist(), g["annotator"].tolist()
        n = len(texts)
        pair = [similarity(texts[i], texts[j]) for i in range(n) for j in range(i + 1, n)]
        if len(set(texts)) == 1 or rule == "first":
            pick = 0
        else:
            def key(i: int) -> tuple:
                mean_sim = sum(similarity(texts[i], texts[j]) for j in range(n) if j != i) / (n - 1)
                return (-round(mean_sim, 9), -texts.count(texts[i]), texts[i] == orig, ids[i])
            pick = min(range(n), key=key)
        rows.append({"item": item, "text": texts[pick], "edited": texts[pick] != orig, "annotation_id": int(ids[pick]),
                     "annotator": who[pick], "n": n, "n_edits": sum(t != orig for t in texts),
                     "texts": len(set(texts)), "similarity": round(sum(pair) / len(pair), 6) if pair else 1.0})
    return pd.DataFrame(rows, columns=["item", "text", "edited", "annotation_id", "annotator", "n", "n_edits", "texts",
                                       "similarity"])


def report(chosen: pd.DataFrame, ann: pd.DataFrame) -> dict[str, Any]:
    if ann.empty:
        return {}
    return {
        "level": "edit",
        "items": int(len(chosen)),
        "items_with_2plus": int((chosen["n"] >= 2).sum()),
        "annotations": int(len(ann)),
        "annotators": sorted(ann["annotator"].unique().tolist()),
        "edited_rows": int(chosen["edited"].sum()),
        "rows_with_differing_edits": int((chosen["texts"] > 1).sum()),
        "mean_edit_similarity": round(float(chosen.loc[chosen["n"] >= 2, "similarity"].mean()), 6)
        if (chosen["n"] >= 2).any() else None,
    }
