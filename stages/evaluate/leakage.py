"""leakage: near duplicates of train rows in validation, test, and the previous version's test split.

What is compared is what dedupe compared: the record kind's dedupe key (classification's text, a
generation record's prompt, a conversation), with the same shingling.

MinHash candidates (LSH bands tuned at `leakage.lsh_threshold`), each verified by the exact Jaccard of
shingle sets — the dedupe stage's own primitives (`pipeline.minhash`). Shingling and threshold default to
what dedupe called similar (its `Similarity`, handed on in `DedupeSummary`), so a version the dedupe stage
made clean is clean here too. The pairs go to `quality/leakage.parquet`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline import minhash
from schemas.summaries import DedupeSummary
from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config, Leakage
from stages.evaluate.evidence import QUALITY_DIR, read_parquet, write_table
from stages.evaluate.result import Bound, CheckResult

LEAKAGE_SCHEMA = pa.schema(
    [
        pa.field("against", pa.string()),  # validation / test / previous_test
        pa.field("id", pa.string()),  # the row in `against`
        pa.field("text", pa.string()),
        pa.field("train_id", pa.string()),  # the most similar train row
        pa.field("train_text", pa.string()),
        pa.field("jaccard", pa.float64()),
    ]
)


def check(candidate: Candidate, config: Config) -> CheckResult:
    dedupe = candidate.summaries.get(DedupeSummary)
    cfg = config.leakage.resolved(dedupe.similarity if dedupe is not None else None)
    out = leakage(candidate, cfg)
    write_table(out.pop("pairs"), candidate.folder / QUALITY_DIR / "leakage.parquet", LEAKAGE_SCHEMA)
    metrics = {f"leaked_{against}_rows": n for against, n in out["leaked"].items()}
    bounds = [Bound("leakage", column, max_value=config.leakage.max_leaked) for column in metrics]
    return CheckResult("leakage", out, metrics=metrics, bounds=bounds)


def near_duplicate_pairs(left: list[str], right: list[str], cfg: Leakage) -> list[tuple[int, int, float]]:
    """Every verified pair (right index, left index, Jaccard >= cfg.threshold) between two lists of texts.

    The dedupe stage's own primitives (pipeline.minhash): MinHash LSH with bands tuned at
    `cfg.lsh_threshold` gives candidate pairs, each verified by the exact Jaccard of the shingle sets.
    Passing the same list twice finds the pairs within it (each pair once, right index > left index).
    """
    if not left or not right:
        return []
    same = right is left
    texts = pa.array([t or "" for t in (left if same else [*left, *right])], pa.string())
    bands, rows = minhash.bands_rows(cfg.lsh_threshold, cfg.num_perm)
    _, keys, sets, counts = minhash.sketch(texts, cfg.shingle, cfg.ngram, cfg.num_perm, 1, bands, rows,
                                           cfg.char_ngram, cfg.punctuation)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    lo, hi, _ = minhash.candidate_pairs(keys, np.arange(len(texts)))
    shift = 0 if same else len(left)
    if not same:  # only pairs across the two lists
        across = (lo < shift) & (hi >= shift)
        lo, hi = lo[across], hi[across]
    jac = minhash.jaccard(sets, offsets, lo, hi, cfg.threshold)
    ok = np.nan_to_num(jac, nan=-1.0) >= cfg.threshold
    return sorted((int(j) - shift, int(i), float(x)) for i, j, x in zip(lo[ok], hi[ok], jac[ok]))


def near_duplicates(left: list[str], right: list[str], cfg: Leakage, left_labels: list | None = None,
                    right_labels: list | None = None) -> list[tuple[int, int, float]]:
    """For each text of `right` with a near duplicate in `left`: (right index, most similar left index, Jaccard).
    With labels on both sides, a pair whose labels differ is no leak (dedupe kept it as another example)."""
    best: dict[int, tuple[int, float]] = {}
    for j, i, jac in near_duplicate_pairs(left, right, cfg):
        if left_labels is not None and right_labels is not None and left_labels[i] != right_labels[j]:
            continue
        if j not in best or jac > best[j][1]:
            best[j] = (i, jac)
    return [(j, i, jac) for j, (i, jac) in sorted(best.items())]


def leakage(candidate: Candidate, cfg: Leakage) -> dict[str, Any]:
    leaked: dict[str, int] = {}
    pairs: list[dict[str, Any]] = []
    key = cfg.key or candidate.kind.default_key
    out: dict[str, Any] = {"ran": cfg.enabled, "threshold": cfg.threshold, "key": key,
                           "shingle": f"{cfg.shingle} {cfg.ngram}-grams" if cfg.shingle != "auto" else
                           f"auto: word {cfg.ngram}-grams, character {cfg.char_ngram}-grams for CJK / Thai"}
    if not cfg.enabled:
        out.update(leaked=leaked, pairs=pairs)
        return out
    splits, previous_dir = candidate.splits, candidate.parent
    train = splits["train"]
    train_texts = candidate.view("train", key, key=True)
    others: list[tuple[str, pd.DataFrame, list[str]]] = [
        ("validation", splits["validation"], candidate.view("validation", key, key=True)),
        ("test", splits["test"], candidate.view("test", key, key=True))]
    if cfg.previous_version and previous_dir is not None:
        prev = read_parquet(Path(previous_dir) / "test.parquet")
        if prev is not None:
            others.append(("previous_test", prev, candidate.view("test", key, key=True, folder=Path(previous_dir))))
            out["previous_version"] = str(previous_dir)
    by_label = cfg.labels_distinguish and candidate.kind.label_field is not None
    out["labelled_pairs_apart"] = by_label
    for against, df, texts in others:
        labels = (list(train[candidate.kind.label_field]), list(df[candidate.kind.label_field])) \
            if by_label and candidate.kind.label_field in df.columns else (None, None)
        found = near_duplicates(train_texts, texts, cfg, *labels)
        if against == "previous_test":
            # A row that is in this version's test split and was in the previous one is no leak by itself;
            # what matters is a train row resembling a test row of before: count distinct train rows.
            leaked[against] = len({i for _, i, _ in found})
        else:
            leaked[against] = len(found)
        for j, i, jac in found:
            pairs.append(
                {
                    "against": against,
                    "id": str(df["id"].iloc[j]),
                    "text": texts[j],
                    "train_id": str(train["id"].iloc[i]),
                    "train_text": train_texts[i],
                    "jaccard": round(float(jac), 6),
                }
            )
    out.update(leaked=leaked, pairs=pairs, examples=pairs[:10])
    return out
