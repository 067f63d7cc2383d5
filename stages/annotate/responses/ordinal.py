"""Ratings: one figure per row (median or mean, with its support and the flags), and how much the
annotators agree on an ordinal scale.

Input: a DataFrame with columns `item`, `annotator`, `rating` (1..max) and, for flags, `flags` (a list).
Pure functions, no Label Studio: tested on hand-computed numbers.

- Krippendorff's alpha, ordinal and interval (the `krippendorff` package; missing values allowed; the
  value domain is the whole scale, so an unused rating still counts in the ordinal metric's ranks).
- Quadratic-weighted Cohen's kappa per annotator pair on the items both rated (scikit-learn).
- Why a median (or mean) with its support, and no Dawid–Skene: ratings are ordinal. Dawid–Skene treats the
  values as unordered classes — a 4 against a 5 would weigh as much as a 1 against a 5 — and estimates a
  max_rating × max_rating confusion matrix per annotator (25 figures for a 1–5 scale), far more than a review
  of tens of rows with two or three people can support. The median is robust to one outlying rating, keeps
  the scale, and its support says how firmly the annotators back the decision; who rates off the consensus
  shows in the per-annotator bias below. `annotate.aggregation: dawid_skene` with `mode: rate` is refused
  with a one-line config error (`stages.annotate.config`).
- Per-annotator bias: the mean of (their rating − the row's aggregated rating) over rows with two or more
  ratings — positive: rates higher than the consensus (the consensus includes them: with two annotators the
  two biases are equal and opposite).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.annotate import agreement
from stages.annotate.agreement import _clean


def aggregate(ann: pd.DataFrame, *, min_rating: float, flags: list[str], flag_share: float,
              method: str = "median") -> pd.DataFrame:
    """Per item: rating (the aggregate), median, mean, n, ratings, support, flag counts and the decision —
    `keep`, `low_rating` (aggregate below min_rating) or `flagged_<flag>` (at least `flag_share` of the
    annotators ticked it; the most ticked flag names the reason, ties by the configured order).

    support: the share of the row's ratings on the decision's side of `min_rating` (all of them at or above
    it for a kept row, below it for a low rating) — how firmly the annotators back what happens to the row."""
    rows = []
    for item, g in ann.groupby("item", sort=True):
        ratings = sorted(float(r) for r in g["rating"])
        median, mean = float(np.median(ratings)), float(np.mean(ratings))
        value = median if method == "median" else mean
        n = len(ratings)
        counts = {f: int(sum(f in (fl if fl is not None else []) for fl in g["flags"])) for f in flags} if "flags" in g else {}
        counts = {f: c for f, c in counts.items() if c}
        flagged = [f for f in flags if counts.get(f, 0) and counts[f] / n >= flag_share]
        flagged.sort(key=lambda f: -counts[f])  # stable: ties keep the configured order
        if value < min_rating:
            decision, support = "low_rating", sum(r < min_rating for r in ratings) / n
        elif flagged:
            decision, support = f"flagged_{flagged[0]}", counts[flagged[0]] / n
        else:
            decision, support = "keep", sum(r >= min_rating for r in ratings) / n
        rows.append({"item": item, "rating": _clean(value), "median": _clean(median), "mean": _clean(mean), "n": n,
                     "ratings": ratings, "annotators": g["annotator"].tolist(), "support": _clean(support),
                     "flags": counts, "decision": decision})
    return pd.DataFrame(rows, columns=["item", "rating", "median", "mean", "n", "ratings", "annotators", "support",
                                       "flags", "decision"])


def _wide(ann: pd.DataFrame) -> np.ndarray:
    """annotators × items, NaN where an annotator did not rate an item."""
    return ann.pivot_table(index="annotator", columns="item", values="rating", aggfunc="first").to_numpy(dtype=float)


def krippendorff_alpha(ann: pd.DataFrame, level: str, max_rating: int) -> float | None:
    import krippendorff

    if ann.empty:
        return None
    data = _wide(ann)
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if pairable.sum() == 0 or len(np.unique(data[:, pairable][~np.isnan(data[:, pairable])])) < 2:
        return None  # no item rated twice, or one value only: alpha is undefined
    with np.errstate(all="ignore"):
        try:
            a = krippendorff.alpha(reliability_data=data, level_of_measurement=level,
                                   value_domain=list(range(1, max_rating + 1)))
        except (ValueError, ZeroDivisionError):
            return None
    return _clean(a)


def weighted_kappa_pairs(ann: pd.DataFrame, max_rating: int) -> list[dict[str, Any]]:
    """Per annotator pair: items both rated, exact agreement, quadratic-weighted Cohen's kappa."""
    ratings = ann[["item", "annotator"]].assign(label=ann["rating"].astype(int))
    return agreement.cohen_pairs(ratings, list(range(1, max_rating + 1)), weights="quadratic")


def annotator_bias(ann: pd.DataFrame, consensus: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per annotator: ratings given, their mean, and the mean offset from the rows' aggregated rating (rows
    rated by two or more)."""
    shared = consensus[consensus["n"] >= 2].set_index("item")["rating"]
    out = {}
    for a, g in ann.groupby("annotator", sort=True):
        on = g[g["item"].isin(shared.index)]
        offsets = on["rating"].to_numpy(dtype=float) - shared.loc[on["item"]].to_numpy(dtype=float)
        out[a] = {"ratings": int(len(g)), "mean_rating": _clean(g["rating"].mean()),
                  "compared": int(len(on)), "bias": _clean(offsets.mean()) if len(on) else None}
    return out


def report(ann: pd.DataFrame, consensus: pd.DataFrame, max_rating: int) -> dict[str, Any]:
    """Every agreement figure of a rating review, JSON-ready. `krippendorff_alpha` is the ordinal one (the
    figure the gate's `agreement_min` reads); the interval one is beside it."""
    if ann.empty:
        return {}
    return {
        "level": "ordinal",
        **agreement.counts(ann),
        "krippendorff_alpha": krippendorff_alpha(ann, "ordinal", max_rating),
        "krippendorff_alpha_interval": krippendorff_alpha(ann, "interval", max_rating),
        "weighted_kappa": weighted_kappa_pairs(ann, max_rating),
        "annotator_bias": annotator_bias(ann, consensus),
        "rating_counts": {str(v): int((ann["rating"] == v).sum()) for v in range(1, max_rating + 1)},
    }
