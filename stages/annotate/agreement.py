"""Aggregating several people's labels into one, and how much they agree.

Input everywhere: a DataFrame of annotations with columns `item` (row id), `annotator` and `label` (one
nominal value per annotation; a multi-choice answer is its sorted choices joined by "|"). Pure functions,
no Label Studio: tested on hand-computed numbers.

- `majority`: the most frequent label; a tie is left unresolved (label None) and listed.
- `dawid_skene`: EM over per-annotator confusion matrices (Dawid & Skene 1979), initialised from the vote
  shares; the label with the highest posterior, its posterior as support. Annotators who are often wrong
  count less. (crowd-kit implements the same; this compact version avoids the dependency.)
- `cohen_pairs` (scikit-learn's `cohen_kappa_score` per annotator pair on the items both labelled;
  quadratic weights for ratings),
  `fleiss_kappa` (items with at least two labels; with a constant number of raters this is exactly Fleiss'
  kappa, with a varying number it is the usual generalisation with per-item agreement over n_i(n_i-1)
  pairs), `krippendorff_alpha` (nominal, the `krippendorff` package; missing values allowed),
  `annotator_consensus`, `confusion` (label pairs between annotators on the same item, symmetric: a
  disagreement is in both of its cells, so the cells add up to more than the pairs) and `pair_confusion`
  (each pair once, oriented by annotator name: the cells add up to the number of pairs).
"""
from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd


def _clean(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def majority(ann: pd.DataFrame) -> pd.DataFrame:
    """One row per item: label (None when tied), support (share of votes for it), n, votes, unresolved."""
    rows = []
    for item, group in ann.groupby("item", sort=True):
        votes = Counter(group["label"])
        ranked = votes.most_common()
        top = ranked[0][1]
        winners = sorted(l for l, c in ranked if c == top)
        tied = len(winners) > 1
        n = int(sum(votes.values()))
        rows.append(
            {
                "item": item,
                "label": None if tied else winners[0],
                "support": _clean(top / n),
                "n": n,
                "votes": dict(sorted(votes.items())),
                "unresolved": tied,
            }
        )
    return pd.DataFrame(rows, columns=["item", "label", "support", "n", "votes", "unresolved"])


def dawid_skene(
    ann: pd.DataFrame, labels: list[str], max_iter: int = 100, tol: float = 1e-6, smoothing: float = 0.01
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Dawid–Skene EM. Returns (per item: label, support = posterior, n, votes, unresolved) and the
    estimated accuracy of each annotator."""
    values = sorted(set(labels) | set(ann["label"]))
    k_of = {l: i for i, l in enumerate(values)}
    items = sorted(ann["item"].unique())
    annotators = sorted(ann["annotator"].unique())
    i_of = {x: i for i, x in enumerate(items)}
    j_of = {x: j for j, x in enumerate(annotators)}
    I, J, K = len(items), len(annotators), len(values)
    ii = ann["item"].map(i_of).to_numpy()
    jj = ann["annotator"].map(j_of).to_numpy()
    kk = ann["label"].map(k_of).to_numpy()

    counts = np.zeros((I, K))
    np.add.at(counts, (ii, kk), 1.0)
    T = counts / counts.sum(axis=1, keepdims=True)  # initial posteriors: vote shares
    prev = None
    for _ in range(max_iter):
        # M-step: class priors and each annotator's confusion matrix (true k → answered l)
        prior = (T.sum(axis=0) + smoothing) / (I + K * smoothing)
        conf = np.full((J, K, K), smoothing)
        np.add.at(conf, (jj, slice(None), kk), T[ii])
        conf /= conf.sum(axis=2, keepdims=True)
        # E-step
        logT = np.tile(np.log(prior), (I, 1))
        np.add.at(logT, ii, np.log(conf[jj, :, kk]))
        logT -= logT.max(axis=1, keepdims=True)
        T = np.exp(logT)
        T /= T.sum(axis=1, keepdims=True)
        if prev is not None and np.abs(T - prev).max() < tol:
            break
        prev = T
    accuracy = {a: _clean(float((prior * np.diag(conf[j])).sum())) for a, j in j_of.items()}
    rows = []
    for item, i in i_of.items():
        best = T[i].max()
        winners = [values[k] for k in np.flatnonzero(np.isclose(T[i], best, rtol=0, atol=1e-9))]
        tied = len(winners) > 1
        votes = Counter(values[k] for k in kk[ii == i])
        rows.append(
            {
                "item": item,
                "label": None if tied else winners[0],
                "support": _clean(best),
                "n": int(counts[i].sum()),
                "votes": dict(sorted(votes.items())),
                "unresolved": tied,
            }
        )
    return pd.DataFrame(rows, columns=["item", "label", "support", "n", "votes", "unresolved"]), accuracy


def cohen_pairs(ann: pd.DataFrame, labels: list, weights: str | None = None) -> list[dict[str, Any]]:
    """Per annotator pair with items in common: n, observed (exact) agreement and Cohen's kappa over the
    label set; `weights="quadratic"` for ordinal values (ratings: `labels` the scale, in order)."""
    from sklearn.metrics import cohen_kappa_score

    by = {a: g.set_index("item")["label"] for a, g in ann.groupby("annotator", sort=True)}
    out = []
    for a, b in itertools.combinations(sorted(by), 2):
        common = by[a].index.intersection(by[b].index)
        if len(common) == 0:
            continue
        ya, yb = by[a].loc[common].tolist(), by[b].loc[common].tolist()
        observed = sum(x == y for x, y in zip(ya, yb)) / len(common)
        values = sorted(set(labels) | set(ya) | set(yb))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined kappa (one label only) → None below
            try:
                kappa = cohen_kappa_score(ya, yb, labels=values, weights=weights)
            except ValueError:
                kappa = float("nan")
        out.append({"a": a, "b": b, "n": int(len(common)), "observed_agreement": _clean(observed), "kappa": _clean(kappa)})
    return out


def _item_counts(ann: pd.DataFrame, labels: list[str]) -> tuple[np.ndarray, list[str]]:
    values = sorted(set(labels) | set(ann["label"]))
    table = pd.crosstab(ann["item"], ann["label"]).reindex(columns=values, fill_value=0)
    return table.to_numpy(dtype=float), values


def fleiss_kappa(ann: pd.DataFrame, labels: list[str]) -> float | None:
    if ann.empty:
        return None
    n_ij, _ = _item_counts(ann, labels)
    n_i = n_ij.sum(axis=1)
    n_ij, n_i = n_ij[n_i >= 2], n_i[n_i >= 2]
    if len(n_i) == 0:
        return None
    P_i = (np.square(n_ij).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_j = n_ij.sum(axis=0) / n_i.sum()
    P_e = float(np.square(p_j).sum())
    if math.isclose(P_e, 1.0):
        return None
    return _clean((P_i.mean() - P_e) / (1 - P_e))


def krippendorff_alpha(ann: pd.DataFrame, labels: list[str]) -> float | None:
    import krippendorff

    if ann.empty:
        return None
    values = sorted(set(labels) | set(ann["label"]))
    code = {l: float(i) for i, l in enumerate(values)}
    wide = ann.assign(code=ann["label"].map(code)).pivot_table(index="annotator", columns="item", values="code", aggfunc="first")
    data = wide.to_numpy(dtype=float)
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if pairable.sum() == 0 or len(set(data[:, pairable][~np.isnan(data[:, pairable])])) < 2:
        return None
    with np.errstate(all="ignore"):
        try:
            a = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal", value_domain=list(code.values()))
        except (ValueError, ZeroDivisionError):
            return None
    return _clean(a)


def annotator_consensus(ann: pd.DataFrame, consensus: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per annotator: annotations, and the share of them equal to the consensus label (resolved items)."""
    resolved = consensus.dropna(subset=["label"]).set_index("item")["label"]
    out = {}
    for a, g in ann.groupby("annotator", sort=True):
        g = g[g["item"].isin(resolved.index)]
        agree = int((g["label"].to_numpy() == resolved.loc[g["item"]].to_numpy()).sum()) if len(g) else 0
        out[a] = {
            "annotations": int((ann["annotator"] == a).sum()),
            "compared": int(len(g)),
            "agreement_with_consensus": _clean(agree / len(g)) if len(g) else None,
        }
    return out


def confusion(ann: pd.DataFrame, labels: list[str]) -> dict[str, dict[str, int]]:
    """How often label x from one annotator meets label y from another on the same item (symmetric,
    counted over every pair of annotations of an item)."""
    values = sorted(set(labels) | set(ann["label"]))
    m: dict[str, dict[str, int]] = {x: {y: 0 for y in values} for x in values}
    for _, g in ann.groupby("item"):
        for x, y in itertools.combinations(g["label"].tolist(), 2):
            m[x][y] += 1
            if x != y:
                m[y][x] += 1
    return m


def pair_confusion(ann: pd.DataFrame, labels: list[str]) -> tuple[dict[str, dict[str, int]], int, list[str]]:
    """Every pair of annotations of the same item counted once, as (label of the annotator whose name sorts
    first) → (label of the other): a contingency table whose cells add up to the number of pairs. With two
    annotators its rows are one person's labels and its columns the other's. Returns (matrix, pairs, the
    rows' and columns' annotators in words)."""
    values = sorted(set(labels) | set(ann["label"]))
    m: dict[str, dict[str, int]] = {x: {y: 0 for y in values} for x in values}
    pairs = 0
    for _, g in ann.groupby("item"):
        marks = sorted(zip(g["annotator"], g["label"]))
        for (_, x), (_, y) in itertools.combinations(marks, 2):
            m[x][y] += 1
            pairs += 1
    names = sorted(ann["annotator"].unique())
    axes = [str(names[0]), str(names[1])] if len(names) == 2 else ["the annotator first by name", "the other annotator"]
    return m, pairs, axes


def per_label_agreement(conf: dict[str, dict[str, int]]) -> dict[str, float | None]:
    """For each label: of the pairs where someone chose it, the share where the other agreed."""
    out = {}
    for x, row in conf.items():
        total = sum(row.values())
        out[x] = _clean(row[x] / total) if total else None
    return out


def counts(ann: pd.DataFrame) -> dict[str, Any]:
    """What the agreement figures are computed over: items, items with two or more annotations, annotations,
    annotators."""
    per_item = ann.groupby("item").size()
    return {"items": int(ann["item"].nunique()), "items_with_2plus": int((per_item >= 2).sum()),
            "annotations": int(len(ann)), "annotators": sorted(ann["annotator"].unique().tolist())}


def report(ann: pd.DataFrame, labels: list[str], consensus: pd.DataFrame) -> dict[str, Any]:
    """Every agreement figure, JSON-ready."""
    conf = confusion(ann, labels)
    pair_conf, pairs, axes = pair_confusion(ann, labels)
    return {
        **counts(ann),
        "cohen_kappa": cohen_pairs(ann, labels),
        "fleiss_kappa": fleiss_kappa(ann, labels),
        "krippendorff_alpha": krippendorff_alpha(ann, labels),
        "annotator_consensus": annotator_consensus(ann, consensus),
        "confusion": conf,
        "pairs": pairs,
        "pair_confusion": pair_conf,
        "pair_axes": axes,
        "per_label_agreement": per_label_agreement(conf),
    }


def aggregate(ann: pd.DataFrame, labels: list[str], method: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per row: the aggregated label (None when unresolved), support, votes. Plus method details."""
    frame = ann.rename(columns={"row_id": "item"})[["item", "annotator", "label"]]
    if frame.empty:
        return pd.DataFrame(columns=["item", "label", "support", "n", "votes", "unresolved"]), {}
    if method == "dawid_skene":
        result, accuracy = dawid_skene(frame, labels)
        return result, {"annotator_accuracy": accuracy}
    return majority(frame), {}
