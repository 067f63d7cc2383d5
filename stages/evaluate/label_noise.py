"""label_noise: rows whose label looks wrong, by confident learning.

Out-of-sample class probabilities from TF-IDF + logistic regression (stratified k-fold) and cleanlab's
`find_label_issues`. Flagged rows go to `label_issues.parquet` (id, split, text, given_label,
suggested_label, score = the model's probability of the given label, lower is more suspicious; sorted
most suspicious first), the file `sftpipe annotate push --review-label-issues` reads.
"""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config, LabelNoise
from stages.evaluate.evidence import LABEL_ISSUES_FILE, write_table
from stages.evaluate.result import Bound, CheckResult

LABEL_ISSUES_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("text", pa.string()),
        pa.field("given_label", pa.string()),
        pa.field("suggested_label", pa.string()),
        pa.field("score", pa.float64()),  # out-of-sample probability of the given label (low = suspicious)
        pa.field("suggested_score", pa.float64()),  # probability of the suggested label
        pa.field("rank", pa.int64()),  # 1 = most suspicious
    ]
)


def check(candidate: Candidate, config: Config) -> CheckResult:
    if candidate.kind.label_field is None:
        info = {"ran": False, "skipped": f"{candidate.kind.name} records have no labels"}
        write_table([], candidate.folder / LABEL_ISSUES_FILE, LABEL_ISSUES_SCHEMA)
        return CheckResult("label_noise", info, evidence=[])
    info, issues = label_noise(candidate.splits, candidate.labels, config.label_noise)
    write_table(issues, candidate.folder / LABEL_ISSUES_FILE, LABEL_ISSUES_SCHEMA)
    metrics, bounds = {}, []
    if info.get("ran"):
        metrics["label_issue_share"] = info["share"]
        if config.label_noise.max_share is not None:
            bounds.append(Bound("label_noise", "label_issue_share", max_value=config.label_noise.max_share))
    return CheckResult("label_noise", info, metrics=metrics, bounds=bounds, evidence=issues)


def label_noise(
    splits: dict[str, pd.DataFrame], labels: list[str] | None, cfg: LabelNoise
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Confident learning over out-of-sample probabilities of every labelled row (all splits together)."""
    frames = [df.assign(split=s)[["id", "split", "text", "label"]] for s, df in splits.items() if len(df)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", "split", "text", "label"])
    rows = rows[rows["label"].notna() & rows["text"].notna()]
    if labels:
        rows = rows[rows["label"].isin(labels)]
    counts = rows["label"].value_counts()
    # Classes too small to appear in every fold cannot get out-of-sample probabilities: set aside.
    usable = counts[counts >= 2].index
    rows = rows[rows["label"].isin(usable)].reset_index(drop=True)
    info: dict[str, Any] = {"ran": False, "labelled_rows": int(len(rows))}
    if not cfg.enabled:
        info["skipped"] = "disabled in the config"
        return info, []
    if len(usable) < 2:
        info["skipped"] = "fewer than two labels with two or more rows"
        return info, []
    if len(rows) < cfg.min_rows:
        info["skipped"] = f"{len(rows)} labelled rows, fewer than label_noise.min_rows={cfg.min_rows}"
        return info, []

    from cleanlab.filter import find_label_issues
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    classes = sorted(usable)
    y = rows["label"].map({c: k for k, c in enumerate(classes)}).to_numpy()
    folds = int(min(cfg.folds, counts[usable].min()))
    # The vectorizer sees every text (unsupervised, no labels), the classifier only its training folds.
    X = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32).fit_transform(rows["text"])
    clf = LogisticRegression(C=cfg.C, solver="saga", max_iter=200, tol=1e-3, random_state=cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probs = cross_val_predict(
            clf, X, y, cv=StratifiedKFold(folds, shuffle=True, random_state=cfg.seed), method="predict_proba"
        )
    probs = np.clip(probs, 1e-9, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    ranked = find_label_issues(y, probs, filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence")
    given_p = probs[np.arange(len(y)), y]
    suggested = probs.argmax(axis=1)
    issues = [
        {
            "id": str(rows["id"].iloc[i]),
            "split": rows["split"].iloc[i],
            "text": rows["text"].iloc[i],
            "given_label": classes[y[i]],
            "suggested_label": classes[suggested[i]],
            "score": round(float(given_p[i]), 6),
            "suggested_score": round(float(probs[i, suggested[i]]), 6),
            "rank": rank,
        }
        for rank, i in enumerate(ranked, start=1)
    ]
    by_split = Counter(x["split"] for x in issues)
    pair = Counter(f"{x['given_label']} → {x['suggested_label']}" for x in issues)
    info.update(
        ran=True,
        model=f"TF-IDF word 1-2-grams + logistic regression (C={cfg.C}), {folds}-fold out-of-sample",
        method="cleanlab find_label_issues (prune_by_noise_rate, ranked by self-confidence)",
        folds=folds,
        cv_accuracy=round(float((suggested == y).mean()), 4),
        flagged=len(issues),
        share=round(len(issues) / len(rows), 6),
        by_split=dict(by_split),
        by_label_pair=dict(pair.most_common(20)),
        set_aside_labels={str(k): int(v) for k, v in counts[counts < 2].items()},
    )
    return info, issues
