"""compare: which response people prefer, majority with ties left unresolved and listed, and agreement.

Votes are `chosen` / `rejected` (the source's responses, whatever side they were shown on) or `tie`. The
row's preference is the most voted; a tie between the top counts, or `tie` on top, is unresolved. Agreement
over the three values (nominal): Fleiss' kappa, Krippendorff's alpha, Cohen's kappa and observed agreement
per annotator pair (`stages.annotate.agreement`); ties count as a value of their own.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from stages.annotate import agreement

VALUES = ["chosen", "rejected", "tie"]


def aggregate(ann: pd.DataFrame) -> pd.DataFrame:
    """Per item: preference (chosen, rejected, or None when unresolved), support, n, votes, unresolved."""
    frame = ann[["item", "annotator", "preference"]].rename(columns={"preference": "label"})
    result = agreement.majority(frame)
    tie_won = result["label"] == "tie"
    result["unresolved"] = result["unresolved"].astype(bool) | tie_won
    result["label"] = [None if t or not isinstance(l, str) else l for l, t in zip(result["label"], tie_won)]
    return result.rename(columns={"label": "preference"})


def report(ann: pd.DataFrame, consensus: pd.DataFrame) -> dict[str, Any]:
    if ann.empty:
        return {}
    frame = ann[["item", "annotator", "preference"]].rename(columns={"preference": "label"})
    per_item = frame.groupby("item").size()
    return {
        "level": "nominal",
        "items": int(frame["item"].nunique()),
        "items_with_2plus": int((per_item >= 2).sum()),
        "annotations": int(len(frame)),
        "annotators": sorted(frame["annotator"].unique().tolist()),
        "fleiss_kappa": agreement.fleiss_kappa(frame, VALUES),
        "krippendorff_alpha": agreement.krippendorff_alpha(frame, VALUES),
        "cohen_kappa": agreement.cohen_pairs(frame, VALUES),
        "votes": {v: int((frame["label"] == v).sum()) for v in VALUES},
        "ties": int(consensus["unresolved"].sum()) if len(consensus) else 0,
    }
