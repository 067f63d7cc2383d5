"""Scores of one dedupe result against the exact truth (see truth.py), at the configured threshold.

A result gives per row `kept`, `rep` (the kept row a removed row names: its `duplicate_of`, or for the
union-find peers its cluster's kept row) and `cluster`. Truth is per group of identical normalized texts
(`group`) plus group pairs (u, v, j) with Jaccard ≥ 0.5; row pairs are counted by expanding groups.
"""
from __future__ import annotations

import heapq

import numpy as np
import pandas as pd

BANDS = [(0.5, 0.8), (0.8, 0.9), (0.9, 1.0), (1.0, 1.01)]


def _pairs_within(counts: np.ndarray) -> int:
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def min_removals(group: np.ndarray, u, v, j, threshold: float) -> int:
    """Rows that must go so that no two kept rows have Jaccard ≥ threshold: all but one of each group,
    plus the groups outside a maximal independent set of the group graph (min-degree greedy, exact on
    forests; an upper bound on the true minimum elsewhere)."""
    sizes = np.bincount(group)
    needed = int((sizes - 1).sum())
    edge = j >= threshold
    u, v = u[edge].tolist(), v[edge].tolist()
    neighbours: dict[int, set[int]] = {}
    for a, b in zip(u, v):
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    heap = [(len(nb), node) for node, nb in neighbours.items()]
    heapq.heapify(heap)
    alive = set(neighbours)
    independent = 0
    while heap:
        degree, node = heapq.heappop(heap)
        if node not in alive or degree != len(neighbours[node] & alive):
            if node in alive:
                heapq.heappush(heap, (len(neighbours[node] & alive), node))
            continue
        independent += 1
        gone = (neighbours[node] & alive) | {node}
        alive -= gone
        for g in gone:
            for nb in neighbours[g] & alive:
                heapq.heappush(heap, (len(neighbours[nb] & alive), nb))
    return needed + len(neighbours) - independent


def score(truth: dict, kept: np.ndarray, rep: np.ndarray, cluster: np.ndarray, threshold: float = 0.8) -> dict:
    group, u, v, j = truth["group"], truth["u"], truth["v"], truth["j"]
    n = len(group)
    sizes = np.bincount(group)
    kept_per_group = np.bincount(group, weights=kept.astype(np.int64)).astype(np.int64)
    similar = j >= threshold
    true_pairs = _pairs_within(sizes) + int((sizes[u[similar]] * sizes[v[similar]]).sum())
    residual = _pairs_within(kept_per_group) + int((kept_per_group[u[similar]] * kept_per_group[v[similar]]).sum())

    # Unjustified removals: the named kept row's true Jaccard < threshold (absent from the truth: < 0.5).
    removed = np.flatnonzero(~kept)
    named = rep[removed]
    if (named < 0).any() or not kept[named].all():
        raise ValueError("a removed row names no kept row")
    gu, gv = group[removed], group[named]
    lo, hi = np.minimum(gu, gv), np.maximum(gu, gv)
    truth_j = pd.Series(j, index=pd.MultiIndex.from_arrays([u, v]))
    looked_up = truth_j.reindex(pd.MultiIndex.from_arrays([lo, hi])).to_numpy()
    pair_j = np.where(gu == gv, 1.0, np.nan_to_num(looked_up, nan=0.0))
    unjustified = int((pair_j < threshold).sum())

    # Pair recall by band: share of true row pairs whose two rows end in one cluster.
    counts = pd.DataFrame({"g": group, "c": cluster}).value_counts().rename("k").reset_index()
    same_within = _pairs_within(counts["k"].to_numpy())
    edges = pd.DataFrame({"u": u, "v": v, "j": j})
    joined = edges.merge(counts.rename(columns={"g": "u", "k": "ku"}), on="u").merge(
        counts.rename(columns={"g": "v", "k": "kv"}), on=["v", "c"])
    together = (joined["ku"] * joined["kv"]).groupby(joined["j"].to_numpy()).sum()
    recall = {}
    for lo_j, hi_j in BANDS:
        if lo_j == 1.0:
            total, hit = _pairs_within(sizes), same_within
            in_band = (j >= 1.0)
            total += int((sizes[u[in_band]] * sizes[v[in_band]]).sum())
            hit += int(together[together.index >= 1.0].sum())
        else:
            in_band = (j >= lo_j) & (j < hi_j)
            total = int((sizes[u[in_band]] * sizes[v[in_band]]).sum())
            hit = int(together[(together.index >= lo_j) & (together.index < hi_j)].sum())
        recall[f"{lo_j:.1f}-{min(hi_j, 1.0):.1f}" if lo_j < 1.0 else "1.0"] = hit / total if total else float("nan")
    return {
        "rows": n,
        "removed": int(len(removed)),
        "min_removed": min_removals(group, u, v, j, threshold),
        "true_pairs": true_pairs,
        "residual_pairs": residual,
        "residual_share": residual / true_pairs if true_pairs else 0.0,
        "unjustified": unjustified,
        "unjustified_share": unjustified / len(removed) if len(removed) else 0.0,
        "recall": recall,
    }
