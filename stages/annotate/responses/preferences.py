"""compare: which response people prefer, aggregated over annotators, ties left unresolved and listed, and
agreement.

Votes are `chosen` / `rejected` (the source's responses, whatever side they were shown on) or `tie`: a
categorical answer, so both of the label path's aggregations apply (`annotate.aggregation`, one code path in
`stages.annotate.agreement`):
- `majority` (default): the most voted value; a tie between the top counts is unresolved; support is the
  share of votes for the winner.
- `dawid_skene`: EM over each annotator's confusion matrix (chosen / rejected / tie); the value with the
  highest posterior, support = that posterior; an annotator who keeps contradicting the others counts less
  (a split vote between a reliable and an unreliable annotator is resolved for the reliable one). Each
  annotator's estimated accuracy is reported (`annotator_accuracy`).
Either way, a row whose winner is `tie` is unresolved too: people saw no better response.

Agreement over the three values (nominal): Fleiss' kappa, Krippendorff's alpha, Cohen's kappa and observed
agreement per annotator pair (`stages.annotate.agreement`); ties count as a value of their own.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from stages.annotate import agreement

VALUES = ["chosen", "rejected", "tie"]


def _votes(ann: pd.DataFrame) -> pd.DataFrame:
    return ann[["item", "annotator", "preference"]].rename(columns={"preference": "label"})


def aggregate(ann: pd.DataFrame, method: str = "majority") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per item: preference (chosen, rejected, or None when unresolved), support, n, votes, unresolved; and
    the method's details (dawid_skene: annotator_accuracy)."""
    result, details = agreement.aggregate(_votes(ann), VALUES, method)
    tie_won = result["label"] == "tie"
    result["unresolved"] = result["unresolved"].astype(bool) | tie_won
    result["label"] = [None if t or not isinstance(l, str) else l for l, t in zip(result["label"], tie_won)]
    return result.rename(columns={"label": "preference"}), details


def report(ann: pd.DataFrame, consensus: pd.DataFrame) -> dict[str, Any]:
    if ann.empty:
        return {}
    frame = _votes(ann)
    return {
        "level": "nominal",
        **agreement.counts(frame),
        "fleiss_kappa": agreement.fleiss_kappa(frame, VALUES),
        "krippendorff_alpha": agreement.krippendorff_alpha(frame, VALUES),
        "cohen_kappa": agreement.cohen_pairs(frame, VALUES),
        **dict(zip(("pair_confusion", "pairs", "pair_axes"), agreement.pair_confusion(frame, VALUES))),
        "votes": {v: int((frame["label"] == v).sum()) for v in VALUES},
        "ties": int(consensus["unresolved"].sum()) if len(consensus) else 0,
    }
