"""evaluate: the quality gate in front of publication.

`evaluate_candidate` reads a candidate version folder (train / validation / test / rejected Parquet files and
`manifest.json`, as the executor wrote them), checks it and writes the evidence next to the data:

- **Great Expectations** (1.x API, ephemeral context, pandas data source). One suite per split
  (`<dataset>.<split>`: schema columns and types, no null id / text / label in labelled splits, unique ids,
  text length bounds, labels in the label set, languages in the allowed set, a minimum row count, each
  class's share between a floor and a ceiling, plus the user's own expectations from the config) and one
  suite on a one-row table of dataset-level figures (`<dataset>.dataset`: ids in several splits, leaked
  rows, share of rows flagged as label issues, clusters with conflicting labels, annotator agreement).
  Every expectation carries `meta.check` (the built-in check it implements, or `user`) and `meta.blocking`.
  Suites, validation results (JSON) and GE's rendered HTML page of them go to `quality/`.
- **Leakage**: near duplicates (MinHash candidates, verified by exact Jaccard of shingle sets) between
  train and validation / test, and between this train split and the previous version's test split.
  Listed in `quality/leakage.parquet`. Shingling and threshold default to the dataset's `dedupe` section
  (casefolded word or character n-grams, Jaccard >= threshold), so a version the dedupe stage made clean
  is clean here too; this module does not import the stage.
- **Label noise**: out-of-sample class probabilities from TF-IDF + logistic regression (stratified k-fold)
  and confident learning (cleanlab `find_label_issues`). Flagged rows go to `label_issues.parquet` (id,
  split, text, given_label, suggested_label, score = the model's probability of the given label, lower is
  more suspicious; sorted most suspicious first), the file `sftpipe annotate push --review-label-issues`
  reads.
- **Label conflicts** inside duplicate clusters: kept rows sharing a `cluster_id` with different labels,
  and removed duplicates whose label differs from the kept row they name (`details.duplicate_of`).
- **report.html**: self-contained page (inline CSS, matplotlib PNGs as base64) for someone who never read
  the code.

The result says whether every *blocking* expectation passed; the executor refuses to publish otherwise.
Heavy libraries (great_expectations, scikit-learn, cleanlab, matplotlib) are imported inside functions so
that importing this module for its `Config` (the dataset config does) stays cheap.
"""
from __future__ import annotations

import html
import json
import math
import re
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import schemas
from pipeline import minhash

# Built-in checks, each a group of expectations; `non_blocking` in the config names those that only warn.
CHECKS = (
    "schema",  # the split's columns exist with the published types
    "not_null",  # no null id / text (and label in labelled splits)
    "unique_ids",  # ids unique within each split
    "split_overlap",  # no id in two splits
    "text_length",  # len(text) within bounds
    "label_set",  # labels within the dataset's label set
    "language",  # `lang` within the allowed languages
    "min_rows",  # enough rows per split
    "class_share",  # each label's share of a split between floor and ceiling
    "agreement",  # annotators' Krippendorff's alpha / Fleiss' kappa at or above a floor
    "leakage",  # no near duplicate of a train row in validation / test / the previous test split
    "label_noise",  # share of labelled rows flagged as likely label errors at most a ceiling
    "label_conflicts",  # duplicate clusters whose members carry different labels
)

LABEL_ISSUES_FILE = "label_issues.parquet"
REPORT_FILE = "report.html"
QUALITY_DIR = "quality"
SUMMARY_FILE = "summary.json"
# No path inside a version may contain a split keyword (train, validation, val, dev, test, eval,
# evaluation, ...): `load_dataset("parquet", data_dir=version)` would read it as split data. So the GE
# suites and results are stored one file each, keyed by scope, and the pages are numbered.

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


# ---------------------------------------------------------------------------------------------------------
# Config


class TextLength(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int | None = Field(1, ge=0, description="shortest text allowed, in characters")
    max: int | None = Field(20_000, ge=1, description="longest text allowed, in characters")


class Leakage(BaseModel):
    """Near duplicates across splits. Shingling and threshold default to the dataset's `dedupe` section (so
    what the dedupe stage calls distinct is distinct here too), else casefolded word 5-grams at 0.8."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    shingle: Literal["word", "char"] | None = Field(None, description="n-grams of words or of characters")
    ngram: int | None = Field(None, ge=1, le=64, description="shingle length; shorter texts get one shingle of all tokens")
    threshold: float | None = Field(None, gt=0.0, le=1.0, description="Jaccard at or above which a pair is a leak")
    lsh_threshold: float = Field(0.5, gt=0.0, le=1.0, description="LSH tuning point; candidates are verified")
    num_perm: int = Field(128, ge=16, le=1024)
    max_leaked: int = Field(0, ge=0, description="leaked rows allowed per comparison")
    previous_version: bool = Field(True, description="also compare train with the previous version's test split")

    def resolved(self, dedupe: Any = None) -> "Leakage":
        """Fill the unset shingling fields from the dedupe section (any object with those attributes)."""
        fill = {
            "shingle": self.shingle or getattr(dedupe, "shingle", None) or "word",
            "ngram": self.ngram or getattr(dedupe, "ngram", None) or 5,
            "threshold": self.threshold or getattr(dedupe, "threshold", None) or 0.8,
        }
        out = self.model_copy(update=fill)
        out.lsh_threshold = min(out.lsh_threshold, out.threshold)
        return out


class LabelNoise(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    folds: int = Field(5, ge=2, le=20, description="cross-validation folds for out-of-sample probabilities")
    max_share: float | None = Field(
        0.1, ge=0.0, le=1.0, description="gate: share of labelled rows flagged as label issues at most this"
    )
    min_rows: int = Field(50, ge=2, description="skip the check below this many labelled rows")
    C: float = Field(100.0, gt=0, description="inverse regularization of the logistic regression")
    seed: int = 0


class UserExpectation(BaseModel):
    """One Great Expectations expectation in GE's own terms, e.g.
    `{expectation_type: expect_column_values_to_match_regex, kwargs: {column: text, regex: "\\\\S"}}`."""

    model_config = ConfigDict(extra="forbid")
    expectation_type: str
    kwargs: dict[str, Any] = {}
    blocking: bool = True
    on: Literal["rows", "dataset"] = Field(
        "rows", description="rows: each split's rows; dataset: the one-row table of dataset-level figures"
    )
    splits: list[str] | None = Field(None, description="splits to run a rows expectation on (default all)")
    meta: dict[str, Any] = {}

    @model_validator(mode="after")
    def _buildable(self) -> "UserExpectation":
        if not re.fullmatch(r"expect_[a-z0-9_]+", self.expectation_type):
            raise ValueError(f"expectation_type {self.expectation_type!r} is not an expectation name (expect_...)")
        try:
            _build_expectation(self.expectation_type, self.kwargs, {})
        except Exception as exc:  # GE raises many kinds; the message is what the user needs
            raise ValueError(f"{self.expectation_type}: {exc}") from None
        for s in self.splits or []:
            if s not in schemas.SPLITS:
                raise ValueError(f"unknown split {s!r} (splits: {', '.join(schemas.SPLITS)})")
        return self


class Config(BaseModel):
    """The `evaluate:` section of a dataset config."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_rows: dict[str, int] = Field(
        default_factory=lambda: {"train": 10, "validation": 1, "test": 1}, description="minimum rows per split"
    )
    text_length: TextLength = TextLength()
    class_share_min: float | None = Field(0.01, ge=0.0, le=1.0, description="each label's share of a split at least")
    class_share_max: float | None = Field(0.99, ge=0.0, le=1.0, description="each label's share of a split at most")
    labelled_splits: list[str] = Field(
        default_factory=lambda: list(schemas.SPLITS), description="splits where every row must have a label"
    )
    allowed_languages: list[str] | None = Field(
        None, description="languages (`lang` column) allowed; default: the clean stage's lang rule, if any"
    )
    languages_mostly: float = Field(1.0, ge=0.0, le=1.0, description="share of rows that must be in allowed_languages")
    agreement_min: float | None = Field(0.4, ge=-1.0, le=1.0, description="floor for Krippendorff's alpha / Fleiss' kappa")
    max_label_conflict_clusters: int | None = Field(0, ge=0, description="duplicate clusters with conflicting labels")
    leakage: Leakage = Leakage()
    label_noise: LabelNoise = LabelNoise()
    non_blocking: list[str] = Field(
        default_factory=lambda: ["label_conflicts", "label_noise"],
        description="built-in checks that warn instead of blocking",
    )
    expectations: list[UserExpectation] = Field(default_factory=list, description="your own GE expectations")
    report_label_issues: int = Field(50, ge=0, description="label issues listed in report.html")

    @field_validator("non_blocking")
    @classmethod
    def _known_checks(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in CHECKS]
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)} (checks: {', '.join(CHECKS)})")
        return names

    @field_validator("min_rows", "labelled_splits")
    @classmethod
    def _known_splits(cls, value):
        unknown = [s for s in value if s not in schemas.SPLITS]
        if unknown:
            raise ValueError(f"unknown split(s) {', '.join(unknown)} (splits: {', '.join(schemas.SPLITS)})")
        return value

    def blocking(self, check: str) -> bool:
        return check not in self.non_blocking


# ---------------------------------------------------------------------------------------------------------
# Result


@dataclass
class Failure:
    """One failed expectation."""

    check: str  # one of CHECKS, or "user"
    expectation: str  # GE expectation type
    split: str  # train / validation / test, or "dataset" for the dataset-level suite
    column: str | None
    observed: Any  # the observed value (share, count, figure) or the error message
    expected: str  # the bound, in words
    blocking: bool
    details: str = ""

    def __str__(self) -> str:
        where = f"{self.split}" + (f".{self.column}" if self.column else "")
        kind = "BLOCKING" if self.blocking else "warning"
        extra = f" ({self.details})" if self.details else ""
        # No square brackets: rich would read "[check]" as markup and swallow it.
        return f"{kind} {self.check}: {self.expectation} on {where}: observed {_fmt(self.observed)}, expected {self.expected}{extra}"


@dataclass
class EvaluationResult:
    passed: bool  # no blocking expectation failed
    failures: list[Failure]  # every failed expectation, blocking or not
    summary: dict[str, Any]  # JSON-ready; the executor stores it in the manifest under `evaluation`
    report_path: Path | None = None

    @property
    def blocking_failures(self) -> list[Failure]:
        return [f for f in self.failures if f.blocking]

    @property
    def warnings(self) -> list[Failure]:
        return [f for f in self.failures if not f.blocking]


# ---------------------------------------------------------------------------------------------------------
# Entry point


def evaluate_candidate(
    candidate_dir: Path,
    config: Config,
    dataset_config: Any,
    previous_version_dir: Path | None = None,
) -> EvaluationResult:
    """Check the candidate version in `candidate_dir`; write `quality/`, `label_issues.parquet`,
    `report.html` into it and return whether every blocking expectation passed.

    `dataset_config` is the DatasetConfig (only `.dataset`, `.labels` and, if present, the clean stage's
    `lang` rule are read). `previous_version_dir` is the parent version's folder, for the leakage check
    against its test split.
    """
    t0 = time.perf_counter()
    candidate_dir = Path(candidate_dir)
    if not config.enabled:
        return EvaluationResult(passed=True, failures=[], summary={
            "passed": True, "status": "not evaluated", "skipped": "evaluate.enabled is false in the config"})
    quality = candidate_dir / QUALITY_DIR
    quality.mkdir(parents=True, exist_ok=True)
    manifest = _read_json(candidate_dir / "manifest.json")
    dataset = getattr(dataset_config, "dataset", None) or manifest.get("dataset") or candidate_dir.name
    labels = getattr(dataset_config, "labels", None) or manifest.get("labels")
    splits = {s: _read_split(candidate_dir / f"{s}.parquet") for s in schemas.SPLITS}
    rejected = _read_parquet(candidate_dir / "rejected.parquet")
    allowed_languages = config.allowed_languages or _clean_lang_rule(dataset_config)

    timings: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        t = time.perf_counter()
        out = fn(*a, **kw)
        timings[name] = round(time.perf_counter() - t, 3)
        return out

    # Dataset-level analyses.
    overlap = _split_overlap(splits)
    leak_cfg = config.leakage.resolved(getattr(dataset_config, "dedupe", None))
    leakage = timed("leakage", _leakage, splits, previous_version_dir, leak_cfg)
    _write_table(leakage.pop("pairs"), quality / "leakage.parquet", LEAKAGE_SCHEMA)
    noise, issues = timed("label_noise", _label_noise, splits, labels, config.label_noise)
    _write_table(issues, candidate_dir / LABEL_ISSUES_FILE, LABEL_ISSUES_SCHEMA)
    conflicts = _label_conflicts(splits, rejected, manifest)
    agreement = _agreement(manifest, candidate_dir)

    metrics: dict[str, Any] = {"ids_in_several_splits": overlap["ids"]}
    for against, n in leakage["leaked"].items():
        metrics[f"leaked_{against}_rows"] = n
    if noise.get("ran"):
        metrics["label_issue_share"] = noise["share"]
    metrics["label_conflict_clusters"] = conflicts["clusters"]
    for key in ("krippendorff_alpha", "fleiss_kappa"):
        if isinstance(agreement.get(key), (int, float)):
            metrics[key] = float(agreement[key])

    # Great Expectations.
    ge = timed(
        "expectations", _run_expectations, dataset, splits, metrics, labels, allowed_languages, config, quality
    )
    failures = ge["failures"]

    passed = not any(f.blocking for f in failures)
    summary: dict[str, Any] = {
        "passed": passed,
        "status": "passed" if passed else "failed-gates",
        "blocking_failures": sum(f.blocking for f in failures),
        "warnings": sum(not f.blocking for f in failures),
        "failures": [_jsonable(asdict(f)) for f in failures],
        "expectations": ge["counts"],
        "metrics": _jsonable(metrics),
        "split_overlap": overlap,
        "leakage": leakage,
        "label_noise": noise,
        "label_conflicts": conflicts,
        "agreement": {k: v for k, v in agreement.items() if k in ("krippendorff_alpha", "fleiss_kappa", "source")},
        "files": {
            "report": REPORT_FILE,
            "label_issues": LABEL_ISSUES_FILE,
            "leakage": f"{QUALITY_DIR}/leakage.parquet",
            "suites": ge["suite_files"],  # one JSON file, suite per scope
            "results": ge["result_files"],  # one JSON file, validation result per scope
            "pages": ge["page_files"],  # scope → GE's rendered page
        },
        "seconds": timings,
    }
    report_path = candidate_dir / REPORT_FILE
    timings["report"] = 0.0
    t = time.perf_counter()
    _write_report(report_path, dataset, manifest, splits, rejected, summary, issues, ge["results_table"], config,
                  agreement)
    timings["report"] = round(time.perf_counter() - t, 3)
    timings["total"] = round(time.perf_counter() - t0, 3)
    summary = _jsonable(summary)
    (quality / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return EvaluationResult(passed=passed, failures=failures, summary=summary, report_path=report_path)


# ---------------------------------------------------------------------------------------------------------
# Reading


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _read_parquet(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pq.read_table(path).to_pandas()


def _read_split(path: Path) -> pd.DataFrame:
    df = _read_parquet(path)
    if df is None:  # a split the run did not produce: an empty table of the published schema
        df = schemas.SPLIT.empty_table().to_pandas()
    return df.reset_index(drop=True)


def _clean_lang_rule(dataset_config: Any) -> list[str] | None:
    try:
        rules = dataset_config.clean.rules
        rule = (rules() if callable(rules) else rules).get("lang")
        return list(rule.allowed) if rule is not None and rule.allowed else None
    except (AttributeError, TypeError):
        return None


def _labelled(df: pd.DataFrame) -> pd.Series:
    return df["label"].notna() if "label" in df else pd.Series(False, index=df.index)


# ---------------------------------------------------------------------------------------------------------
# Split overlap, leakage


def _split_overlap(splits: dict[str, pd.DataFrame]) -> dict[str, Any]:
    where: dict[str, list[str]] = defaultdict(list)
    for s, df in splits.items():
        if "id" in df:
            for i in df["id"].dropna().unique():
                where[i].append(s)
    several = {i: ss for i, ss in where.items() if len(ss) > 1}
    return {"ids": len(several), "examples": [{"id": i, "splits": ss} for i, ss in list(several.items())[:20]]}


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
    _, keys, sets, counts = minhash.sketch(texts, cfg.shingle, cfg.ngram, cfg.num_perm, 1, bands, rows)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    lo, hi, _ = minhash.candidate_pairs(keys, np.arange(len(texts)))
    shift = 0 if same else len(left)
    if not same:  # only pairs across the two lists
        across = (lo < shift) & (hi >= shift)
        lo, hi = lo[across], hi[across]
    jac = minhash.jaccard(sets, offsets, lo, hi, cfg.threshold)
    ok = np.nan_to_num(jac, nan=-1.0) >= cfg.threshold
    return sorted((int(j) - shift, int(i), float(x)) for i, j, x in zip(lo[ok], hi[ok], jac[ok]))


def near_duplicates(left: list[str], right: list[str], cfg: Leakage) -> list[tuple[int, int, float]]:
    """For each text of `right` with a near duplicate in `left`: (right index, most similar left index, Jaccard)."""
    best: dict[int, tuple[int, float]] = {}
    for j, i, jac in near_duplicate_pairs(left, right, cfg):
        if j not in best or jac > best[j][1]:
            best[j] = (i, jac)
    return [(j, i, jac) for j, (i, jac) in sorted(best.items())]


def _leakage(splits: dict[str, pd.DataFrame], previous_dir: Path | None, cfg: Leakage) -> dict[str, Any]:
    leaked: dict[str, int] = {}
    pairs: list[dict[str, Any]] = []
    out: dict[str, Any] = {"ran": cfg.enabled, "threshold": cfg.threshold, "shingle": f"{cfg.shingle} {cfg.ngram}-grams"}
    if not cfg.enabled:
        out.update(leaked=leaked, pairs=pairs)
        return out
    train = splits["train"]
    train_texts = train["text"].fillna("").tolist()
    others: list[tuple[str, pd.DataFrame]] = [("validation", splits["validation"]), ("test", splits["test"])]
    if cfg.previous_version and previous_dir is not None:
        prev = _read_parquet(Path(previous_dir) / "test.parquet")
        if prev is not None:
            others.append(("previous_test", prev))
            out["previous_version"] = str(previous_dir)
    for against, df in others:
        texts = df["text"].fillna("").tolist() if "text" in df else []
        found = near_duplicates(train_texts, texts, cfg)
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


# ---------------------------------------------------------------------------------------------------------
# Label noise


def _label_noise(
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


# ---------------------------------------------------------------------------------------------------------
# Label conflicts, cluster sizes, agreement


def _details(s: Any) -> dict[str, Any]:
    if not isinstance(s, str):
        return {}
    try:
        d = json.loads(s)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _dedupe_rejections(rejected: pd.DataFrame | None) -> pd.DataFrame:
    """Removed duplicates: id, label, duplicate_of, cluster_id (from `details`)."""
    cols = ["id", "label", "duplicate_of", "cluster_id"]
    if rejected is None or not len(rejected):
        return pd.DataFrame(columns=cols)
    rej = rejected[rejected["stage"].astype(str).str.contains("dedup") | rejected["details"].astype(str).str.contains("duplicate_of")]
    rows = []
    for rid, label, det in zip(rej["id"], rej["label"], rej["details"]):
        d = _details(det)
        if "duplicate_of" in d:
            rows.append((rid, label, d.get("duplicate_of"), d.get("cluster_id")))
    return pd.DataFrame(rows, columns=cols)


def _all_kept(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    frames = [df.assign(split=s) for s, df in splits.items() if len(df)]
    return pd.concat(frames, ignore_index=True) if frames else schemas.SPLIT.empty_table().to_pandas()


def _label_conflicts(splits: dict[str, pd.DataFrame], rejected: pd.DataFrame | None, manifest: dict) -> dict[str, Any]:
    kept = _all_kept(splits)
    dup = _dedupe_rejections(rejected)
    member_labels: dict[Any, set] = defaultdict(set)
    cluster_of_id: dict[str, Any] = {}
    if "cluster_id" in kept:
        for i, c, lab in zip(kept["id"], kept["cluster_id"], kept["label"]):
            cluster_of_id[i] = c
            if isinstance(lab, str):
                member_labels[c].add(lab)
    for rid, lab, of, c in zip(dup["id"], dup["label"], dup["duplicate_of"], dup["cluster_id"]):
        c = cluster_of_id.get(of, c)
        if c is not None and isinstance(lab, str):
            member_labels[c].add(lab)
    conflicting = {c: sorted(ls) for c, ls in member_labels.items() if len(ls) > 1}
    examples = []
    for c, ls in list(conflicting.items())[:10]:
        texts = kept.loc[kept["cluster_id"] == c, "text"].head(1).tolist() if "cluster_id" in kept else []
        examples.append({"cluster_id": _jsonable(c), "labels": ls, "text": texts[0] if texts else None})
    out = {"clusters": len(conflicting), "examples": examples}
    stats = _stage_stats(manifest, "dedupe")
    reported = {k: v for k, v in stats.items() if "conflict" in k and isinstance(v, (int, float))}
    if reported:
        out["reported_by_dedupe"] = reported
    return out


def _cluster_sizes(splits: dict[str, pd.DataFrame], rejected: pd.DataFrame | None) -> Counter:
    kept = _all_kept(splits)
    if "cluster_id" not in kept or not len(kept):
        return Counter()
    size = Counter(kept["cluster_id"].tolist())
    cluster_of_id = dict(zip(kept["id"], kept["cluster_id"]))
    dup = _dedupe_rejections(rejected)
    for of, c in zip(dup["duplicate_of"], dup["cluster_id"]):
        c = cluster_of_id.get(of, c)
        if c is not None:
            size[c] += 1
    return Counter(size.values())


def _stage_stats(manifest: dict, name: str) -> dict[str, Any]:
    for st in manifest.get("stages") or []:
        if isinstance(st, dict) and st.get("name") == name:
            return st.get("stats") or {}
    return {}


def _find_key(obj: Any, key: str, depth: int = 0) -> Any:
    """The first value under `key` in nested dicts (annotate stats may group figures)."""
    if depth > 4 or not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    for v in obj.values():
        found = _find_key(v, key, depth + 1)
        if found is not None:
            return found
    return None


def _agreement_file(manifest: dict, candidate_dir: Path) -> dict[str, Any]:
    """The annotate stage's agreement.json (it holds the confusion matrix the stats leave out): in the
    candidate folder if the executor copied it there, else in the run's annotate stage folder."""
    places = [candidate_dir / "agreement.json", candidate_dir / "annotations" / "agreement.json"]
    for st in manifest.get("stages") or []:
        if isinstance(st, dict) and st.get("name") == "annotate" and st.get("fingerprint"):
            if candidate_dir.parent.name == "candidates":
                stages_dir = candidate_dir.parent.parent / "stages"
                places += sorted(stages_dir.glob(f"*-annotate-{st['fingerprint'][:16]}/agreement.json"))
    for p in places:
        doc = _read_json(p)
        if doc:
            return doc
    return {}


def _agreement(manifest: dict, candidate_dir: Path) -> dict[str, Any]:
    """Agreement figures and the annotator confusion matrix from the annotate stage, if it ran."""
    stats = _stage_stats(manifest, "annotate")
    if not stats:
        stats = manifest.get("annotation") or {}
    doc = _agreement_file(manifest, candidate_dir) if stats else {}
    out: dict[str, Any] = {}
    for key in ("krippendorff_alpha", "fleiss_kappa", "cohen_kappa", "items", "annotations", "annotators",
                "per_label_agreement", "annotator_consensus"):
        v = _find_key(stats, key)
        if v is None:
            v = _find_key(doc, key)
        if v is not None:
            out[key] = v
    conf = _find_key(stats, "confusion")
    if conf is None:
        conf = _find_key(doc, "confusion")
    if isinstance(conf, dict):
        if "matrix" in conf and "labels" in conf:
            conf = {a: dict(zip(conf["labels"], row)) for a, row in zip(conf["labels"], conf["matrix"])}
        if conf and all(isinstance(v, dict) for v in conf.values()):
            out["confusion"] = conf
    if out:
        out["source"] = "annotate stage"
    return out


# ---------------------------------------------------------------------------------------------------------
# Great Expectations


def _build_expectation(expectation_type: str, kwargs: dict[str, Any], meta: dict[str, Any]):
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return ExpectationConfiguration(type=expectation_type, kwargs=dict(kwargs), meta=dict(meta)).to_domain_obj()


def _pandas_dtype(t: pa.DataType) -> str:
    """The dtype name pandas gives an Arrow column of type `t` in this environment ("str" or "object")."""
    return str(pa.array([], t).to_pandas().dtype)


def _split_expectations(split: str, df: pd.DataFrame, labels, allowed_languages, config: Config) -> list:
    import great_expectations.expectations as E

    out = []

    def add(check: str, exp_cls, **kwargs):
        out.append(exp_cls(**kwargs, meta={"check": check, "blocking": config.blocking(check)}))

    add("schema", E.ExpectTableColumnsToMatchSet, column_set=list(schemas.SPLIT.names), exact_match=False)
    for f in schemas.SPLIT:
        if f.name in df.columns and not (f.nullable and df[f.name].isna().all()):
            add("schema", E.ExpectColumnValuesToBeOfType, column=f.name, type_=_pandas_dtype(f.type))
    for column in ("id", "text"):
        add("not_null", E.ExpectColumnValuesToNotBeNull, column=column)
    has_labels = bool(labels)
    if has_labels and split in config.labelled_splits:
        add("not_null", E.ExpectColumnValuesToNotBeNull, column="label")
    add("unique_ids", E.ExpectColumnValuesToBeUnique, column="id")
    tl = config.text_length
    if tl.min is not None or tl.max is not None:
        add("text_length", E.ExpectColumnValueLengthsToBeBetween, column="text", min_value=tl.min, max_value=tl.max)
    if has_labels:
        add("label_set", E.ExpectColumnValuesToBeInSet, column="label", value_set=list(labels))
    if allowed_languages and "lang" in df.columns:
        add("language", E.ExpectColumnValuesToBeInSet, column="lang", value_set=list(allowed_languages),
            mostly=config.languages_mostly)
    add("min_rows", E.ExpectTableRowCountToBeBetween, min_value=config.min_rows.get(split, 0))
    # Class shares in GE's terms: "values in {label}" for `mostly` = floor; "not in {label}" for
    # `mostly` = 1 - ceiling. Shares are over labelled rows (GE leaves nulls out of `mostly`).
    share_labels = list(labels) if has_labels else sorted(df["label"].dropna().unique()) if "label" in df else []
    if len(share_labels) > 1:
        for lab in share_labels:
            if config.class_share_min:
                add("class_share", E.ExpectColumnValuesToBeInSet, column="label", value_set=[lab],
                    mostly=config.class_share_min)
            if config.class_share_max is not None and config.class_share_max < 1:
                add("class_share", E.ExpectColumnValuesToNotBeInSet, column="label", value_set=[lab],
                    mostly=round(1 - config.class_share_max, 12))
    for ue in config.expectations:
        if ue.on == "rows" and (ue.splits is None or split in ue.splits):
            out.append(_build_expectation(ue.expectation_type, ue.kwargs,
                                          {**ue.meta, "check": "user", "blocking": ue.blocking}))
    return out


def _dataset_expectations(metrics: dict[str, Any], config: Config) -> list:
    import great_expectations.expectations as E

    out = []

    def add(check: str, exp_cls, **kwargs):
        out.append(exp_cls(**kwargs, meta={"check": check, "blocking": config.blocking(check)}))

    add("split_overlap", E.ExpectColumnMaxToBeBetween, column="ids_in_several_splits", max_value=0)
    for col in metrics:
        if col.startswith("leaked_"):
            add("leakage", E.ExpectColumnMaxToBeBetween, column=col, max_value=config.leakage.max_leaked)
    if "label_issue_share" in metrics and config.label_noise.max_share is not None:
        add("label_noise", E.ExpectColumnMaxToBeBetween, column="label_issue_share",
            max_value=config.label_noise.max_share)
    if config.max_label_conflict_clusters is not None:
        add("label_conflicts", E.ExpectColumnMaxToBeBetween, column="label_conflict_clusters",
            max_value=config.max_label_conflict_clusters)
    if config.agreement_min is not None:
        for col in ("krippendorff_alpha", "fleiss_kappa"):
            if col in metrics:
                add("agreement", E.ExpectColumnMinToBeBetween, column=col, min_value=config.agreement_min)
    for ue in config.expectations:
        if ue.on == "dataset":
            out.append(_build_expectation(ue.expectation_type, ue.kwargs,
                                          {**ue.meta, "check": "user", "blocking": ue.blocking}))
    return out


def _run_expectations(dataset, splits, metrics, labels, allowed_languages, config: Config, quality: Path) -> dict:
    import logging

    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(f"{dataset}-candidate")

    batches: list[tuple[str, pd.DataFrame, list]] = []
    for s, df in splits.items():
        batches.append((s, df, _split_expectations(s, df, labels, allowed_languages, config)))
    metrics_df = pd.DataFrame([{k: _py(v) for k, v in metrics.items()}])
    batches.append(("dataset", metrics_df, _dataset_expectations(metrics, config)))

    failures: list[Failure] = []
    table: list[dict[str, Any]] = []
    suites_by_scope: dict[str, Any] = {}
    results_by_scope: dict[str, Any] = {}
    page_files: dict[str, str] = {}
    counts = {"evaluated": 0, "successful": 0, "failed": 0}
    for scope, df, expectations in batches:
        name = f"{dataset}.{scope}"
        asset = source.add_dataframe_asset(name=scope)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{scope}-whole")
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for e in expectations:
            suite.add_expectation(e)
        vd = context.validation_definitions.add(gx.ValidationDefinition(data=batch_def, suite=suite, name=name))
        result = vd.run(
            batch_parameters={"dataframe": df},
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
        _sanitize(result)
        suite_json = suite.to_json_dict()
        for e in suite_json.get("expectations", []):
            e.pop("id", None)
        suites_by_scope[scope] = suite_json
        results_by_scope[scope] = result.to_json_dict()
        page = _render_ge_page(result)
        if page is not None:
            page_name = f"page-{len(page_files) + 1}.html"
            (quality / page_name).write_text(page)
            page_files[scope] = f"{QUALITY_DIR}/{page_name}"
        for r in result.results:
            cfg = r.expectation_config
            meta = dict(cfg.meta or {})
            check = meta.get("check", "user")
            blocking = bool(meta.get("blocking", True))
            observed, details = _observed(r, check)
            row = {
                "scope": scope,
                "check": check,
                "expectation": cfg.type,
                "column": cfg.kwargs.get("column"),
                "expected": _expected(cfg.type, dict(cfg.kwargs), check),
                "observed": observed,
                "success": bool(r.success),
                "blocking": blocking,
                "details": details,
            }
            table.append(row)
            counts["evaluated"] += 1
            if r.success:
                counts["successful"] += 1
            else:
                counts["failed"] += 1
                failures.append(Failure(check=check, expectation=cfg.type, split=scope, column=row["column"],
                                        observed=observed, expected=row["expected"], blocking=blocking,
                                        details=details))
    order = {c: i for i, c in enumerate(CHECKS)}
    failures.sort(key=lambda f: (not f.blocking, order.get(f.check, len(order)), f.split))
    (quality / "suites.json").write_text(json.dumps(suites_by_scope, indent=2, default=str))
    (quality / "results.json").write_text(json.dumps(results_by_scope, indent=2, default=str))
    return {"failures": failures, "results_table": table, "counts": counts,
            "suite_files": f"{QUALITY_DIR}/suites.json", "result_files": f"{QUALITY_DIR}/results.json",
            "page_files": page_files}


def _render_ge_page(result) -> str | None:
    """GE's own HTML rendering of a validation result (Data Docs page; it loads its CSS from CDNs)."""
    try:
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    except Exception as exc:  # rendering is evidence, not the gate: keep going and say so
        return f"<html><body><p>Great Expectations could not render this result: {html.escape(str(exc))}</p></body></html>"


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, NaN/inf to None, tuples/sets to lists."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    obj = _py(obj)
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _sanitize(result) -> None:
    """GE keeps numpy scalars / NaN in results; its renderer and JSON want plain values."""
    for r in result.results:
        if isinstance(r.result, dict):
            r.result = _jsonable(r.result)


def _observed(r, check: str) -> tuple[Any, str]:
    """The observed value to show for one expectation result, and a few words of detail."""
    res = r.result or {}
    exc = r.exception_info or {}
    if exc.get("raised_exception") or (not res and not r.success):
        msg = exc.get("exception_message")
        if not msg:  # GE nests per-metric exception infos
            msg = next((v.get("exception_message") for v in exc.values() if isinstance(v, dict)), None)
        return f"error: {msg or 'expectation could not be evaluated'}", ""
    kwargs = r.expectation_config.kwargs
    if check == "class_share" and res.get("unexpected_percent_nonmissing") is not None:
        p = res["unexpected_percent_nonmissing"] / 100
        share = 1 - p if r.expectation_config.type == "expect_column_values_to_be_in_set" else p
        labelled = (res.get("element_count") or 0) - (res.get("missing_count") or 0)
        return round(share, 6), f"share of {kwargs['value_set'][0]!r} among {labelled} labelled rows"
    if "observed_value" in res:
        obs = res["observed_value"]
        details = ""
        if isinstance(res.get("details"), dict) and res["details"].get("mismatched"):
            missing = res["details"]["mismatched"].get("missing")
            if missing:
                return f"missing columns: {', '.join(map(str, missing))}", ""
        return obs, details
    if "unexpected_count" in res:
        n = res.get("unexpected_count") or 0
        examples = res.get("partial_unexpected_list") or []
        shown = ", ".join(_short(repr(x), 60) for x in examples[:3])
        pct = res.get("unexpected_percent")
        details = f"{n} unexpected" + (f" ({pct:.2f}%)" if isinstance(pct, (int, float)) else "")
        if shown:
            details += f", e.g. {shown}"
        return n, details
    return None, ""


def _expected(etype: str, kw: dict[str, Any], check: str) -> str:
    kw = {k: (int(v) if isinstance(v, float) and v.is_integer() and k in ("min_value", "max_value") else v)
          for k, v in kw.items() if k not in ("batch_id", "column")}
    if check == "class_share":
        lab = kw.get("value_set", ["?"])[0]
        if etype == "expect_column_values_to_be_in_set":
            return f"share of {lab!r} >= {kw.get('mostly')}"
        return f"share of {lab!r} <= {round(1 - kw.get('mostly', 0), 6)}"
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if lo is not None or hi is not None:
        if lo is not None and hi is not None:
            return f"between {lo} and {hi}"
        return f">= {lo}" if lo is not None else f"<= {hi}"
    if etype in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_unique"):
        return "0 unexpected" + (f" (mostly {kw['mostly']})" if kw.get("mostly") else "")
    if "value_set" in kw:
        vs = kw["value_set"]
        s = ", ".join(map(str, vs[:10])) + (" …" if len(vs) > 10 else "")
        return f"in {{{s}}}" + (f" for at least {kw['mostly']:.0%}" if kw.get("mostly", 1) < 1 else "")
    if "column_set" in kw:
        return "columns include " + ", ".join(kw["column_set"])
    if "type_" in kw:
        return f"type {kw['type_']}"
    return ", ".join(f"{k}={_short(json.dumps(v, default=str), 60)}" for k, v in kw.items()) or "pass"


def _short(s: str, n: int) -> str:
    s = str(s).replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _write_table(rows: list[dict[str, Any]], path: Path, schema: pa.Schema) -> None:
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    pq.write_table(pa.table(cols, schema=schema), path)


# ---------------------------------------------------------------------------------------------------------
# The report (report.html) and the terminal summary

from stages._evaluate_report import summarize_report, write_report as _write_report  # noqa: E402

__all__ = ["Config", "EvaluationResult", "Failure", "evaluate_candidate", "summarize_report", "near_duplicates", "near_duplicate_pairs"]
