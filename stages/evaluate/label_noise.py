"""label_noise: rows whose label looks wrong, by confident learning, re-checked on the published rows.

Out-of-sample class probabilities from TF-IDF + logistic regression (stratified k-fold) and cleanlab's
`find_label_issues` — `pipeline.label_model`, the model the label_noise stage acts with before dedupe. Flagged rows go to `label_issues.parquet` (id, split, text, given_label,
suggested_label, score = the model's probability of the given label, lower is more suspicious; sorted
most suspicious first), the file `sftpipe annotate push --review-label-issues` reads.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd
import pyarrow as pa

from pipeline import label_model
from schemas.summaries import LabelNoiseSummary
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
    stage = candidate.summaries.get(LabelNoiseSummary)
    if stage is not None:  # what the label_noise stage found and did before dedupe
        info["stage"] = stage.model_dump(mode="json")
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
    """Confident learning over out-of-sample probabilities of every labelled row (all splits together): the
    label_noise stage's model (`pipeline.label_model`), on the published rows."""
    frames = [df.assign(split=s)[["id", "split", "text", "label"]] for s, df in splits.items() if len(df)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", "split", "text", "label"])
    texts = [t if isinstance(t, str) else None for t in rows["text"]]
    given = [None if pd.isna(v) else str(v) for v in rows["label"]]
    info: dict[str, Any] = {"ran": False, "labelled_rows": int(len(label_model.usable(texts, given, labels, 2)[0]))}
    if not cfg.enabled:
        info["skipped"] = "disabled in the config"
        return info, []
    ev = label_model.evidence(texts, given, label_set=labels, folds=cfg.folds, C=cfg.C, seed=cfg.seed,
                              min_rows=cfg.min_rows)
    if isinstance(ev, str):
        info["skipped"] = ev.replace("min_rows", "label_noise.min_rows")
        return info, []
    classes, given_p, suggested, sugg_p = ev.classes, ev.given_prob, ev.suggested, ev.suggested_prob
    issues = []
    for rank, i in enumerate(ev.ranked.tolist(), start=1):
        r = int(ev.rows[i])
        issues.append({"id": str(rows["id"].iloc[r]), "split": rows["split"].iloc[r], "text": texts[r],
                       "given_label": classes[ev.y[i]], "suggested_label": classes[suggested[i]],
                       "score": round(float(given_p[i]), 6), "suggested_score": round(float(sugg_p[i]), 6),
                       "rank": rank})
    by_split = Counter(x["split"] for x in issues)
    pair = Counter(f"{x['given_label']} → {x['suggested_label']}" for x in issues)
    info.update(ran=True, **ev.figures(), by_split=dict(by_split), by_label_pair=dict(pair.most_common(20)))
    return info, issues
