"""Label evidence: out-of-sample class probabilities of every labelled row from a cheap text model.

One implementation for the two places that judge labels: the `label_noise` stage (before dedupe: its
columns decide which label an exact-duplicate cluster keeps, and it can drop or send to review the rows it
is confident are mislabelled) and the quality gate's `label_noise` check (on the published rows).

The model: TF-IDF over hashed word 1–2-grams (the idf from the texts: unsupervised, no labels) and a
logistic regression fitted on k−1 folds at a time (stratified), so each row's probabilities come from a
model that never saw it — nor, with `group_copies` (`copy_groups`: the text up to case, punctuation and spacing),
any copy of its text: before dedupe a copy in another fold would vouch for the row's label or argue
against it, and either way its probability would not be out-of-sample
(benchmarks/outcome/experiments/grouped_folds.py). Then cleanlab's `find_label_issues` (prune by noise
rate) marks the rows whose given label the probabilities contradict.

How strong the model is decides whether its flags may act (issue #16 item 7: at cross-validated accuracy
0.63 most flags of one data set were correct labels). Accuracy alone does not say it — a two-class set
where 84 % of rows are one class scores 0.79 with 15 % wrong labels and its confident flags are 80 % right
(benchmarks/outcome) — so the measure is Cohen's kappa of the out-of-sample predictions against the given
labels (agreement beyond what the class shares give by chance). `strong_enough(min_kappa)` is the guard.

One fit per run: the stage writes each row's verdict as columns (`COLUMNS`) that travel with the row to the
published version; `verdicts_from_columns` reads them back there, so the gate judges the published rows by
the stage's fit instead of fitting the same model again (`stages/evaluate/label_noise.py` says when).
"""
from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

MODEL_NAME = "TF-IDF word 1-2-grams (hashed) + logistic regression"
METHOD = "cleanlab find_label_issues (prune_by_noise_rate, ranked by self-confidence)"
# Each fold's model is fit on at most this many rows (drawn, seeded, from the other folds); every row is still
# predicted by a model that never saw it. The solver's cost grows faster than the rows (measured on SMS-like
# text, 2 labels: 20k rows 5 CPU-s, 100k rows 73 CPU-s with full folds). And more is not better here: on
# 230k Tatoeba rows with 5 % planted flips (benchmarks/pipeline/label_model_fit_rows.py) 20k-row fits drop
# flips at precision 0.89 / recall 0.81 in 39 s against 50k-row fits' 0.72 / 0.87 in 102 s (the larger fits,
# at C=100, grow confident enough to "correct" 3,800 right labels instead of 1,200). Sets under 25k rows
# never reach the cap.
MAX_FIT_ROWS = 20_000

# Word 1-2-grams hashed into this many columns (no vocabulary: scikit-learn's vocabulary counting held every
# n-gram of every text, 4.7 GB at 1M rows; hashing is also ~3.5x faster). Collisions are rare at this width
# for the texts one label set holds, and a collision merges two n-grams' weights, no more.
HASHED_FEATURES = 2**20
FEATURE_BATCH = 50_000  # rows a fold predicts at a time (above IN_MEMORY_CHARS: hashed for that batch only)
# Up to this many characters of text the features of all texts are computed once and sliced. Above, the idf
# comes from a seeded sample of about this many characters and a fold hashes the rows it fits on or predicts
# when it needs them: the matrix of every text is what does not fit (the 1M-row benchmark corpus: 516
# characters and ~141 non-zeros a text, 1.1 GB, and the tf-idf step's copies on top). Characters, not rows:
# the non-zeros follow the words (~0.28 a character on the mixed corpus and on Tatoeba), so 100k of the
# mixed corpus' texts are at the bound and 230k Tatoeba sentences (97 characters) are hashed once.
IN_MEMORY_CHARS = 50_000_000

# The label_noise stage's columns, beside clean's signals on every row it judged (null on the others).
COLUMNS = (
    pa.field("label_prob", pa.float64()),  # out-of-sample probability of the row's own label (low = suspicious)
    pa.field("suggested_label", pa.string()),  # the most probable label
    pa.field("suggested_prob", pa.float64()),  # and its probability
    pa.field("label_issue", pa.bool_()),  # the stage's action applies to the row (its docstring says when)
    pa.field("label_issue_rank", pa.int64()),  # cleanlab flags the row: its rank, 1 = most suspicious (null: not flagged)
)


class FitSettings(BaseModel):
    """How the model is fit: fields of both the label_noise stage's config and the quality gate's check, which
    reads the stage's verdicts back only when its own are the same (`key`)."""

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(5, ge=2, le=20, description="cross-validation folds for out-of-sample probabilities")
    group_copies: bool = Field(True, description="hold out copies of a text (up to case, punctuation and spacing) "
                                                 "together, so a copy in another fold cannot vouch for a row's label")
    C: float = Field(100.0, gt=0, description="inverse regularization of the logistic regression")
    seed: int = 0

    def key(self) -> tuple[int, float, int, bool]:
        return self.folds, self.C, self.seed, self.group_copies


_NOT_WORD = re.compile(r"\W+")


def copy_groups(texts: list[str | None]) -> list[int | None]:
    """One fold group per row: (a hash of) its text up to case, punctuation and spacing, so verbatim copies
    and case / punctuation variants of a text are held out together. Hashes, not the keys: 8 bytes a row
    where a million keys would hold another copy of the corpus."""
    return [None if t is None else hash(_NOT_WORD.sub("", t.casefold())) for t in texts]


def _grouped_folds(y: np.ndarray, groups: list, folds: int, seed: int):
    """(fit rows, held-out rows) per fold, every group's rows held out together, stratified by the label of
    each group's first row. Folds are drawn over the groups by StratifiedKFold (linear; sklearn's
    StratifiedGroupKFold balances every label's share exactly but loops over groups in Python: 17 s at 230k
    rows). A group of mixed labels, rare outside planted or disputed copies, costs only exactness of the
    stratification."""
    import pandas as pd
    from sklearn.model_selection import KFold, StratifiedKFold

    group_of_row, _ = pd.factorize(pd.Series(groups, dtype=object), use_na_sentinel=False)
    n_groups = int(group_of_row.max()) + 1 if len(group_of_row) else 0
    first = np.full(n_groups, len(y), dtype=np.int64)
    np.minimum.at(first, group_of_row, np.arange(len(y)))
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    with warnings.catch_warnings():  # a label with fewer distinct texts than folds: some folds lack it
        warnings.simplefilter("ignore", UserWarning)
        # StratifiedKFold needs some label with at least `folds` groups; with fewer, plain folds over the groups
        kfold = StratifiedKFold if np.bincount(y[first]).max() >= folds else KFold
        for k, (_, held) in enumerate(kfold(folds, shuffle=True, random_state=seed)
                                      .split(np.zeros((n_groups, 1)), y[first])):
            fold_of_group[held] = k
    fold = fold_of_group[group_of_row]
    for k in range(folds):
        yield np.flatnonzero(fold != k), np.flatnonzero(fold == k)


class Features:
    """TF-IDF (sublinear tf, l2-normalized, float32) of hashed word 1–2-grams for any rows of `texts`, one
    CSR row per text. Thread-safe once built (folds fit in threads)."""

    def __init__(self, texts: list[str], seed: int = 0):
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        self.texts = texts
        self.hasher = HashingVectorizer(ngram_range=(1, 2), n_features=HASHED_FEATURES, alternate_sign=False,
                                        norm=None, dtype=np.float32)
        self.tfidf = TfidfTransformer(sublinear_tf=True)
        self.matrix = None
        chars = sum(map(len, texts))
        if chars <= IN_MEMORY_CHARS:
            counts = self.hasher.transform(texts)  # streams the texts: no token list outlives its text
            self.matrix = self.tfidf.fit(counts).transform(counts, copy=False)
        else:
            size = max(1, int(len(texts) * IN_MEMORY_CHARS / chars))
            sample = np.sort(np.random.default_rng(seed).choice(len(texts), size, replace=False))
            self.tfidf.fit(self.hasher.transform([texts[i] for i in sample]))

    def rows(self, index: np.ndarray):
        if self.matrix is not None:
            return self.matrix[index]
        return self.tfidf.transform(self.hasher.transform([self.texts[i] for i in index]), copy=False)


def rounded(p: np.ndarray) -> np.ndarray:
    """Probabilities as the label_noise columns and label_issues.parquet carry them: float64, 6 decimals."""
    return np.round(np.asarray(p, dtype=np.float64), 6)


@dataclass
class Verdicts:
    """The model's verdict on each row it judged (`rows`: indices into the caller's rows, in order) — what the
    label_noise stage's columns carry, so the gate can read them back instead of fitting the model again."""

    classes: list[str]
    rows: np.ndarray  # int64: which of the caller's rows have evidence (a usable label and a text)
    y: np.ndarray  # int: the given label of each of those rows, as an index into `classes`
    given_prob: np.ndarray  # out-of-sample probability of the given label
    suggested: np.ndarray  # int: the most probable label, as an index into `classes`
    suggested_prob: np.ndarray  # its probability
    issue: np.ndarray  # bool: cleanlab finds the given label contradicted
    ranked: np.ndarray  # positions (into rows) of the issues, most suspicious first
    folds: int
    C: float
    set_aside: dict[str, int] = field(default_factory=dict)  # labels with < 2 rows: no out-of-sample probability

    @property
    def cv_accuracy(self) -> float:
        return float((self.suggested == self.y).mean()) if len(self.y) else 0.0

    @property
    def majority_rate(self) -> float:
        """Accuracy of always answering the most common given label."""
        return float(np.bincount(self.y).max() / len(self.y)) if len(self.y) else 0.0

    @property
    def kappa(self) -> float:
        """Cohen's kappa of the out-of-sample predictions against the given labels."""
        n, k = len(self.y), len(self.classes)
        if not n:
            return 0.0
        p_given = np.bincount(self.y, minlength=k) / n
        p_pred = np.bincount(self.suggested, minlength=k) / n
        chance = float((p_given * p_pred).sum())
        return 0.0 if chance >= 1 else (self.cv_accuracy - chance) / (1 - chance)

    def strong_enough(self, min_kappa: float) -> bool:
        return self.kappa >= min_kappa

    def model(self) -> str:
        return f"{MODEL_NAME} (C={self.C:g}), {self.folds}-fold out-of-sample"

    def figures(self) -> dict[str, Any]:
        """What every place that shows the flagged share shows beside it."""
        return {"model": self.model(), "method": METHOD, "folds": self.folds, "labelled_rows": int(len(self.y)),
                "cv_accuracy": round(self.cv_accuracy, 4), "majority_rate": round(self.majority_rate, 4),
                "kappa": round(self.kappa, 4), "flagged": int(self.issue.sum()),
                "share": round(float(self.issue.mean()), 6) if len(self.y) else 0.0,
                "set_aside_labels": self.set_aside}


@dataclass
class LabelEvidence(Verdicts):
    """Verdicts from a fit, with the out-of-sample probabilities of every class they come from."""

    probs: np.ndarray | None = None  # (len(rows), len(classes))


def usable(texts: list[str | None], labels: list[str | None], label_set: list[str] | None,
           min_rows: int) -> tuple[np.ndarray, list[str], dict[str, int], str | None]:
    """Rows that can get evidence, the classes, the labels set aside, and why nothing can run (or None)."""
    ok = np.array([t is not None and lab is not None and (not label_set or lab in label_set)
                   for t, lab in zip(texts, labels)], dtype=bool)
    values, counts = np.unique(np.array([labels[i] for i in np.flatnonzero(ok)], dtype=object).astype(str),
                               return_counts=True) if ok.any() else (np.array([]), np.array([]))
    classes = sorted(values[counts >= 2].tolist())
    set_aside = {str(v): int(c) for v, c in zip(values, counts) if c < 2}
    keep = set(classes)
    rows = np.array([i for i in np.flatnonzero(ok) if labels[i] in keep], dtype=np.int64)
    if len(classes) < 2:
        return rows, classes, set_aside, "fewer than two labels with two or more rows"
    if len(rows) < min_rows:
        return rows, classes, set_aside, f"{len(rows)} labelled rows, fewer than min_rows={min_rows}"
    return rows, classes, set_aside, None


def evidence(texts: list[str | None], labels: list[str | None], settings: FitSettings | None = None, *,
             label_set: list[str] | None = None, min_rows: int = 50, max_fit_rows: int = MAX_FIT_ROWS,
             workers: int = 1) -> LabelEvidence | str:
    """Out-of-sample evidence for every usable row of (texts, labels), or why there is none (a sentence).

    `workers` folds are fit at a time, in threads (the saga solver runs without the GIL; each fold's model
    is its own, fit on the rows it would get one at a time): the same probabilities, sooner on idle cores.
    With `settings.group_copies` the rows of one `copy_groups` key are held out together, so a row's
    probability never comes from a model that saw a copy of its text with the copy's label."""
    settings = settings or FitSettings()
    folds, C, seed = settings.folds, settings.C, settings.seed
    rows, classes, set_aside, why_not = usable(texts, labels, label_set, min_rows)
    if why_not:
        return why_not

    from cleanlab.filter import find_label_issues
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[labels[i]] for i in rows], dtype=np.int64)
    folds = int(min(folds, np.bincount(y).min()))
    groups = None
    if settings.group_copies:
        groups = copy_groups([texts[i] for i in rows])
        distinct = len(set(groups))
        if distinct < 2:
            return "fewer than two distinct texts"
        folds = min(folds, distinct)
    X = Features([texts[i] for i in rows], seed)
    probs = np.zeros((len(y), len(classes)), dtype=np.float32)  # as predict_proba returns them
    draw = np.random.default_rng(seed)
    splits = []  # (fit rows, held-out rows) per fold, the draws made in fold order
    if groups is None:
        split = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros((len(y), 1)), y)
    else:
        split = _grouped_folds(y, groups, folds, seed)
    for fit_rows, held_out in split:
        if len(fit_rows) > max_fit_rows:
            fit_rows = np.sort(draw.choice(fit_rows, max_fit_rows, replace=False))
        splits.append((fit_rows, held_out))

    def fold(split: tuple[np.ndarray, np.ndarray]) -> None:
        fit_rows, held_out = split
        if len(np.unique(y[fit_rows])) < 2:  # grouped folds: one group held every other label's rows
            probs[held_out] = 1.0 / len(classes)  # no evidence: uniform, so nothing is confidently flagged
            return
        fit_matrix = X.rows(fit_rows)
        # Fit on the columns the fit rows use, predict through the same: the model is the same (a column with no
        # non-zero keeps weight 0, the probabilities are equal to the last bit), but saga brings every column's
        # weights up to date each epoch: 2^20 columns where 20k Tatoeba sentences use 204k take 6.8 s a fit, not 4.7.
        used = np.unique(fit_matrix.indices)
        clf = LogisticRegression(C=C, solver="saga", max_iter=200, tol=1e-3, random_state=seed)
        clf.fit(fit_matrix[:, used], y[fit_rows])
        for start in range(0, len(held_out), FEATURE_BATCH):  # disjoint rows per fold
            part = held_out[start:start + FEATURE_BATCH]
            probs[np.ix_(part, clf.classes_)] = clf.predict_proba(X.rows(part)[:, used])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(workers, folds)) as pool:
                list(pool.map(fold, splits))
        else:
            for split in splits:
                fold(split)
    probs = np.clip(probs, 1e-9, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    # n_jobs=1: cleanlab's default forks a pool of the (large) calling process per physical core for a few
    # seconds of work; its results do not depend on n_jobs.
    ranked = np.asarray(find_label_issues(y, probs, filter_by="prune_by_noise_rate", n_jobs=1,
                                          return_indices_ranked_by="self_confidence"), dtype=np.int64)
    issue = np.zeros(len(y), dtype=bool)
    issue[ranked] = True
    return LabelEvidence(classes, rows, y, probs[np.arange(len(y)), y], probs.argmax(axis=1), probs.max(axis=1),
                         issue, ranked, folds, C, set_aside, probs=probs)


def verdicts_from_columns(labels: list[str | None], columns: dict[str, list[Any]], *, folds: int, C: float,
                          label_set: list[str] | None = None, min_rows: int = 2) -> Verdicts | str:
    """The stage's verdicts on some of the rows it judged, read back from their `COLUMNS` (`columns`: name →
    one value per row, `labels`: the rows' labels, unchanged since): what `evidence` over the stage's rows
    says about these, in the same order of suspicion — or why there is none (a sentence, as `evidence`)."""
    prob, sugg = columns["label_prob"], columns["suggested_label"]
    judged = [i for i, (lab, p) in enumerate(zip(labels, prob)) if lab is not None and p is not None]
    set_aside = Counter(lab for lab, p in zip(labels, prob)  # labelled rows the stage had too few of to judge
                        if lab is not None and p is None and (not label_set or lab in label_set))
    classes = sorted({labels[i] for i in judged} | {sugg[i] for i in judged})
    counts = Counter(labels[i] for i in judged)
    if sum(c >= 2 for c in counts.values()) < 2:
        return "fewer than two labels with two or more rows"
    if len(judged) < min_rows:
        return f"{len(judged)} labelled rows, fewer than min_rows={min_rows}"
    index = {c: k for k, c in enumerate(classes)}
    rows = np.array(judged, dtype=np.int64)
    rank = np.array([columns["label_issue_rank"][i] for i in judged], dtype=object)
    flagged = np.flatnonzero(rank != None)  # noqa: E711 (elementwise on an object array)
    ranked = flagged[np.argsort(rank[flagged].astype(np.int64), kind="stable")]
    issue = np.zeros(len(rows), dtype=bool)
    issue[ranked] = True
    return Verdicts(classes, rows, np.array([index[labels[i]] for i in judged], dtype=np.int64),
                    np.array([prob[i] for i in judged], dtype=np.float64),
                    np.array([index[sugg[i]] for i in judged], dtype=np.int64),
                    np.array([columns["suggested_prob"][i] for i in judged], dtype=np.float64),
                    issue, ranked.astype(np.int64), folds, C, dict(sorted(set_aside.items())))
