"""label_noise: rows whose label looks wrong, by confident learning, on the published rows.

Out-of-sample class probabilities from TF-IDF + logistic regression (stratified k-fold) and cleanlab's
`find_label_issues` — `pipeline.label_model`, the model the label_noise stage acts with before dedupe.
Flagged rows go to `label_issues.parquet` (id, split, text, given_label, suggested_label, score = the
model's probability of the given label, lower is more suspicious; sorted most suspicious first), the file
`sftpipe annotate push --review-label-issues` reads.

One fit per run: when the label_noise stage ran with this check's settings (folds, C, seed) and no label
changed after it (annotate relabelled nothing), the published rows carry its verdicts (its columns) and
the check reads them back (`label_model.verdicts_from_columns`) — the rows and figures a fit over the
stage's rows gives for the published ones, without fitting again (at 230k rows that fit is most of the
gate's time). Otherwise (the stage off, other settings, relabelled rows, columns missing) it fits on the
published rows, and the summary's `evidence` says which and why.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd
import pyarrow as pa

import schemas

from pipeline import label_model
from schemas.summaries import AnnotationSummary, LabelNoiseSummary
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
    stage = candidate.summaries.get(LabelNoiseSummary)
    why_fit = _why_not_reuse(candidate, config.label_noise, stage)
    if why_fit is None:
        info, issues = from_stage(candidate, config.label_noise, stage)
    else:
        info, issues = label_noise(candidate.splits, candidate.labels, config.label_noise)
        if info.get("ran"):
            info["evidence"] = f"fitted on the published rows ({why_fit})"
    if stage is not None:  # what the label_noise stage found and did before dedupe
        info["stage"] = stage.model_dump(mode="json")
    write_table(issues, candidate.folder / LABEL_ISSUES_FILE, LABEL_ISSUES_SCHEMA)
    metrics, bounds = {}, []
    if info.get("ran"):
        metrics["label_issue_share"] = info["share"]
        if config.label_noise.max_share is not None:
            bounds.append(Bound("label_noise", "label_issue_share", max_value=config.label_noise.max_share))
    return CheckResult("label_noise", info, metrics=metrics, bounds=bounds, evidence=issues)


def _why_not_reuse(candidate: Candidate, cfg: LabelNoise, stage: LabelNoiseSummary | None) -> str | None:
    """Why the stage's verdicts cannot stand for a fit on the published rows, or None when they can."""
    if not cfg.enabled:
        return "the check is disabled"
    if cfg.refit:
        return "evaluate.label_noise.refit is on"
    if stage is None or not stage.ran:
        return "the label_noise stage did not run" + (f": {stage.skipped}" if stage is not None and stage.skipped else "")
    ours = cfg.key()
    theirs = label_model.FitSettings(folds=stage.folds_configured, C=stage.C, seed=stage.seed,
                                     group_copies=stage.group_copies).key()
    if ours != theirs:
        return f"the label_noise stage fit with folds, C, seed, group_copies = {theirs}, this check's are {ours}"
    annotation = candidate.summaries.get(AnnotationSummary)
    if annotation is not None and annotation.relabelled:
        return f"annotate changed {annotation.relabelled:,} labels after the label_noise stage"
    names = {f.name for f in label_model.COLUMNS}
    for split in schemas.SPLITS:
        if candidate.split_file(split) is not None and not names <= set(candidate.columns(split)):
            return f"the {split} rows lack the label_noise stage's columns"
    return None


def from_stage(candidate: Candidate, cfg: LabelNoise, stage: LabelNoiseSummary) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The check over the published rows from the label_noise stage's verdicts (read from their columns)."""
    names = [f.name for f in label_model.COLUMNS]
    parts = [candidate.table(s, ["id", "text", "label", *names]).append_column(
        "split", pa.array([s] * candidate.num_rows(s), pa.string())) for s in schemas.SPLITS if candidate.num_rows(s)]
    rows = pa.concat_tables(parts, promote_options="default") if parts else None
    if rows is None:
        return {"ran": False, "labelled_rows": 0, "skipped": "no rows"}, []
    labels = [None if v is None else str(v) for v in rows.column("label").to_pylist()]
    columns = {n: rows.column(n).to_pylist() for n in ("label_prob", "suggested_label", "suggested_prob",
                                                        "label_issue_rank")}
    ev = label_model.verdicts_from_columns(labels, columns, folds=stage.folds or cfg.folds, C=cfg.C,
                                           label_set=candidate.labels, min_rows=cfg.min_rows)
    if isinstance(ev, str):
        return {"ran": False, "labelled_rows": sum(v is not None for v in labels),
                "skipped": ev.replace("min_rows", "label_noise.min_rows")}, []
    info: dict[str, Any] = {"ran": False, "labelled_rows": int(len(ev.rows))}
    issues = _issues(ev, rows.column("id").to_pylist(), rows.column("split").to_pylist(),
                     rows.column("text").to_pylist())
    return _ran(info, ev, issues, "the label_noise stage's (fit before dedupe over its "
                                  f"{stage.labelled_rows:,} labelled rows), read from the published rows"), issues


def _issues(ev: label_model.Verdicts, ids: list[Any], splits: list[str], texts: list[str | None]) -> list[dict[str, Any]]:
    """label_issues.parquet's rows: the flagged rows, most suspicious first."""
    given_p, sugg_p = label_model.rounded(ev.given_prob), label_model.rounded(ev.suggested_prob)
    issues = []
    for rank, i in enumerate(ev.ranked.tolist(), start=1):
        r = int(ev.rows[i])
        issues.append({"id": str(ids[r]), "split": splits[r], "text": texts[r],
                       "given_label": ev.classes[ev.y[i]], "suggested_label": ev.classes[ev.suggested[i]],
                       "score": float(given_p[i]), "suggested_score": float(sugg_p[i]), "rank": rank})
    return issues


def _ran(info: dict[str, Any], ev: label_model.Verdicts, issues: list[dict[str, Any]], evidence: str) -> dict[str, Any]:
    by_split = Counter(x["split"] for x in issues)
    pair = Counter(f"{x['given_label']} → {x['suggested_label']}" for x in issues)
    info.update(ran=True, **ev.figures(), by_split=dict(by_split), by_label_pair=dict(pair.most_common(20)),
                evidence=evidence)
    return info


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
    ev = label_model.evidence(texts, given, cfg, label_set=labels, min_rows=cfg.min_rows)
    if isinstance(ev, str):
        info["skipped"] = ev.replace("min_rows", "label_noise.min_rows")
        return info, []
    issues = _issues(ev, rows["id"].tolist(), rows["split"].tolist(), texts)
    return _ran(info, ev, issues, "fitted on the published rows"), issues
