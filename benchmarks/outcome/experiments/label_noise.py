"""Can the label-noise check act (`drop`) instead of only warning? Precision / recall of its flags against
the planted truth, at several confidence cut-offs, with today's model and with a stronger cheap one.

    python benchmarks/outcome/experiments/label_noise.py [--datasets trec sms] [--flip-rate 0.1]

Rows: the pipeline arm's published rows (all splits, as the quality gate sees them). A row is *bad* when
its given label is wrong (a planted flip or a mislabelled copy) or it is planted junk (it has no right
label). For each model:

- `tfidf`: what stages/evaluate.py runs today — TF-IDF word 1–2-grams + logistic regression (C=100,
  saga), 5-fold stratified out-of-sample probabilities, cleanlab `find_label_issues(prune_by_noise_rate)`.
  (Re-implemented here with the same settings; the flagged count is checked against the version's
  manifest.)
- `minilm`: the same, on sentence embeddings of the bundled all-MiniLM-L6-v2 (mean pooling, normalized;
  no fine-tuning, offline) instead of TF-IDF, logistic regression C=10.

Reported: cross-validated accuracy (on the noisy labels), flagged rows and their precision (bad / flagged)
and recall (flagged bad / bad); then "drop" rules — flagged by cleanlab *and* the model's probability of
its suggested label ≥ c — for c in 0.5 … 0.95. The same rules on the clean arm (no planted noise) give the
cost: real rows that a `drop` default would remove from an uncorrupted data set.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from common import published, save

CUTOFFS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def tfidf_features(texts: list[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32).fit_transform(texts)


_EMB_CACHE: dict[str, np.ndarray] = {}


def minilm_features(texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    from train.config import default_model_path  # noqa: PLC0415

    missing = [t for t in dict.fromkeys(texts) if t not in _EMB_CACHE]
    if missing:
        model = SentenceTransformer(str(default_model_path()), device="cpu")
        vecs = model.encode(missing, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        _EMB_CACHE.update(zip(missing, vecs))
    return np.stack([_EMB_CACHE[t] for t in texts])


def out_of_sample(X, y: np.ndarray, C: float, folds: int = 5, seed: int = 0) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.model_selection import StratifiedKFold, cross_val_predict  # noqa: PLC0415

    clf = LogisticRegression(C=C, solver="saga", max_iter=200, tol=1e-3, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probs = cross_val_predict(clf, X, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                  method="predict_proba")
    probs = np.clip(probs, 1e-9, 1.0)
    return probs / probs.sum(axis=1, keepdims=True)


def evaluate(rows: pd.DataFrame, model: str) -> dict:
    from cleanlab.filter import find_label_issues  # noqa: PLC0415

    classes = sorted(rows["label"].unique())
    y = rows["label"].map({c: k for k, c in enumerate(classes)}).to_numpy()
    texts = rows["text"].tolist()
    t0 = time.process_time()
    if model == "tfidf":
        probs = out_of_sample(tfidf_features(texts), y, C=100.0)
    else:
        probs = out_of_sample(minilm_features(texts), y, C=10.0)
    cpu = time.process_time() - t0
    flagged = np.zeros(len(y), bool)
    flagged[find_label_issues(y, probs, filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence")] = True
    suggested = probs.argmax(1)
    suggested_p = probs[np.arange(len(y)), suggested]
    bad = (rows["wrong_label"].fillna(False).astype(bool) | rows["kind"].fillna("").str.startswith("junk_")).to_numpy()
    wrong = rows["wrong_label"].fillna(False).astype(bool).to_numpy()
    out = {"model": model, "rows": int(len(y)), "cv_accuracy": round(float((suggested == y).mean()), 4),
           "bad_rows": int(bad.sum()), "wrong_label_rows": int(wrong.sum()), "cpu_s": round(cpu, 1), "cutoffs": []}
    for c in CUTOFFS:
        drop = flagged & (suggested_p >= c)
        n = int(drop.sum())
        out["cutoffs"].append({
            "min_suggested_prob": c, "dropped": n, "dropped_share": round(n / len(y), 4),
            "precision": round(float(bad[drop].mean()), 4) if n else None,
            "recall_bad": round(float(drop[bad].mean()), 4) if bad.any() else None,
            "recall_wrong_label": round(float(drop[wrong].mean()), 4) if wrong.any() else None,
            "suggested_is_true_label": round(float((np.array(classes)[suggested[drop & wrong]]
                                                    == rows["true_label"].to_numpy()[drop & wrong]).mean()), 4)
            if (drop & wrong).any() else None,
        })
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["trec", "sms"])
    p.add_argument("--flip-rate", type=float, default=0.1)
    p.add_argument("--models", nargs="+", default=["tfidf", "minilm"])
    a = p.parse_args()
    payload = {}
    for ds in a.datasets:
        for arm in ("pipeline", "clean"):
            rows = published(ds, arm, a.flip_rate)
            for model in a.models:
                r = evaluate(rows, model)
                payload[f"{ds}/{arm}/{model}"] = r
                print(f"\n{ds} {arm} {model}: {r['rows']} rows, {r['bad_rows']} bad ({r['wrong_label_rows']} wrong "
                      f"label), cv accuracy {r['cv_accuracy']}, {r['cpu_s']} CPU s")
                print(f"  {'min p(suggested)':>16} {'dropped':>8} {'share':>7} {'precision':>9} {'recall bad':>10} "
                      f"{'recall wrong':>12} {'suggested=true':>14}")
                for c in r["cutoffs"]:
                    f = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
                    print(f"  {c['min_suggested_prob']:>16} {c['dropped']:>8} {c['dropped_share']:>7.3f} "
                          f"{f(c['precision']):>9} {f(c['recall_bad']):>10} {f(c['recall_wrong_label']):>12} "
                          f"{f(c['suggested_is_true_label']):>14}")
    path = save(f"label_noise-f{a.flip_rate:g}", payload)
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
