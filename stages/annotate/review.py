"""Label reviews: a published version's likely label errors, decided by people in Label Studio.

`sftpipe annotate push CONFIG --review-label-issues --version vN --top K` sends the K most suspicious rows
of vN (its `label_issues.parquet`) as vN published them — their text and label, read from the version, not
rebuilt from the current config — into a Label Studio project of their own ("sftpipe: <dataset> review of
vN"), pre-selecting the label the quality check suggests when one person reviews each row. The CLI records
the review for the dataset and adds it to the annotate section of every later run (`Config.reviews`; a
dataset without an `annotate:` section gets one that selects no rows of its own). The annotate stage then,
for each review (`collect`):

- pulls the review project; the run pauses (like annotate's own rows) until every reviewed row has its
  annotations;
- aggregates each row's review annotations with the section's aggregation (majority by default; a tie
  decides nothing);
- applies a decision to the row with that id when its text is the text the reviewer saw: `label` becomes
  the decision and `label_source` "review". A row whose text changed since (another clean config) or that
  is no longer in the data keeps its label and is counted (`stale`, `absent`).

A decision is about a row as a person saw it, so it is applied to the data the run builds from the current
config wherever that row is unchanged, on every later run, until the review is forgotten (`sftpipe annotate
forget-review`). Files: `review_annotations.parquet` (one row per annotation, with its review) and
`review_decisions.parquet` (per reviewed row: the decision, the votes, the label it had, what happened).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from pipeline.errors import UserError
from stages.annotate import agreement
from stages.annotate.config import Config, Review
from stages.annotate.export import annotations_from_export, write_annotations

INSTRUCTIONS = ("A quality check flagged this row's label as a likely error. Pick the label the text deserves "
                "(the one it had, or another).")
FILES = ("review_annotations.parquet", "review_decisions.parquet")


def review_title(dataset: str, version: str) -> str:
    return f"sftpipe: {dataset} review of {version}"


def review_section(base: Config, review: Review, predictions_file: str | None = None) -> Config:
    """The annotate section that reaches a review's project: the base section's labels, choice, server and
    aggregation; the review's title and people per row; every row it is given, with the suggested label
    pre-selected (when one person reviews each row) from `predictions_file`."""
    return Config(select="all", labels=base.labels, choice=base.choice, aggregation=base.aggregation,
                  url_env=base.url_env, api_key_env=base.api_key_env, instructions=INSTRUCTIONS,
                  project_title=review.project_title, annotators_per_task=review.annotators_per_task,
                  predictions_file=predictions_file, push_batch_size=base.push_batch_size)


def rows_to_review(version_folder: Path, top: int) -> pd.DataFrame:
    """The `top` most suspicious rows of a published version, as it published them: id, text, label (the
    given one), source, suggested_label, suggested_score, rank."""
    issues_file = version_folder / "label_issues.parquet"
    if not issues_file.is_file():
        raise UserError(f"{version_folder} has no label_issues.parquet (its label-noise check did not run)")
    issues = pq.read_table(issues_file).to_pandas().sort_values("rank").head(top)
    if issues.empty:
        raise UserError(f"{version_folder}: the quality check flagged no likely label error")
    sources = pd.concat([pq.read_table(version_folder / f"{s}.parquet", columns=["id", "source"]).to_pandas()
                         for s in schemas.SPLITS if (version_folder / f"{s}.parquet").is_file()])
    rows = issues.merge(sources, on="id", how="left")
    return rows.rename(columns={"given_label": "label"})[
        ["id", "text", "label", "source", "suggested_label", "suggested_score", "rank"]].reset_index(drop=True)


@dataclass
class Outcome:
    """What the reviews decided, for the rows of one run."""

    labels: dict[str, str] = field(default_factory=dict)  # row id → decision, for rows it applies to
    by: dict[str, str] = field(default_factory=dict)  # row id → the version whose review decided it
    waiting: list[str] = field(default_factory=list)  # one phrase per review still being labelled
    summaries: list[dict[str, Any]] = field(default_factory=list)  # per review (schemas.summaries.ReviewSummary)
    warnings: list[str] = field(default_factory=list)


def collect(stage, rows: pd.DataFrame, work: Path) -> Outcome:
    """Pull every review of `stage`'s section and decide which decisions apply to `rows` (id, text, label);
    write the review files into `work`. `stage` is the AnnotateStage (its client, labels and context); each
    review's project is reached through one of the same class, for that project."""
    outcome = Outcome()
    cfg = stage.config
    text_of = dict(zip(rows["id"], rows["text"]))
    label_of = dict(zip(rows["id"], rows["label"]))
    all_annotations, all_decisions = [], []
    for review in cfg.reviews:
        sub = type(stage)(review_section(cfg, review), stage.ctx)
        pid = sub.project(create=False)
        client = sub.client()
        if pid is None:
            raise UserError(f"annotate: the review of {review.version} has no project {review.project_title!r} at "
                            f"{client.url} (deleted?); `sftpipe annotate forget-review CONFIG {review.version}` "
                            f"stops applying it")
        export = client.export_snapshot(pid)
        ann, aside = annotations_from_export(export, client.users(), stage.labels())
        seen_text = {(t.get("data") or {}).get("row_id"): (t.get("data") or {}).get("text") for t in export}
        per_row = pd.concat([ann["row_id"], aside["row_id"]]).value_counts()
        done = int(sum(1 for r in seen_text if per_row.get(r, 0) >= review.annotators_per_task))
        url = sub.project_url(pid)
        summary: dict[str, Any] = {"version": review.version, "url": url, "project_id": pid, "rows": len(seen_text),
                                   "done": done}
        if done < len(seen_text):
            outcome.waiting.append(f"{len(seen_text) - done} of {len(seen_text)} rows of the review of "
                                   f"{review.version} await a decision at {url}")
            outcome.summaries.append(summary)
            continue
        agg, _ = agreement.aggregate(ann, stage.labels(), cfg.aggregation)
        counts = dict.fromkeys(("decided", "unresolved", "applied", "relabelled", "stale", "absent"), 0)
        for r in agg.itertuples(index=False):
            if r.unresolved:
                status = "unresolved"
            else:
                counts["decided"] += 1
                if r.item not in text_of:
                    status = "absent"
                elif text_of[r.item] != seen_text.get(r.item):
                    status = "stale"
                else:
                    status = "applied"
                    outcome.labels[r.item] = r.label  # a later review of the same row wins (reviews in order)
                    outcome.by[r.item] = review.version
                    if label_of.get(r.item) != r.label:
                        counts["relabelled"] += 1
            counts[status] += 1
            all_decisions.append({"row_id": r.item, "review": review.version, "label": r.label,
                                  "votes": json.dumps(r.votes, sort_keys=True), "unresolved": bool(r.unresolved),
                                  "label_before": _str_or_none(label_of.get(r.item)), "status": status})
        summary.update(counts)
        outcome.summaries.append(summary)
        if counts["stale"] or counts["absent"]:
            outcome.warnings.append(
                f"review of {review.version}: {counts['stale']} decision(s) not applied because the row's text changed "
                f"since it was reviewed, {counts['absent']} because the row is no longer in the data")
        all_annotations.append(ann.assign(review=review.version))
    work.mkdir(parents=True, exist_ok=True)
    frame = pd.concat(all_annotations, ignore_index=True) if all_annotations else None
    if frame is not None:
        write_annotations(frame, work / FILES[0], {"review": pa.string()})
    decisions = pa.Table.from_pylist(all_decisions, schema=pa.schema([
        ("row_id", pa.string()), ("review", pa.string()), ("label", pa.string()), ("votes", pa.string()),
        ("unresolved", pa.bool_()), ("label_before", pa.string()), ("status", pa.string())]))
    if all_decisions:
        pq.write_table(decisions, work / FILES[1])
    return outcome


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
