"""The annotate stage's run in a review mode (rate, edit, compare): select, push, pause, pull, decide.

Called by `AnnotateStage.run` with the stage itself (its project, client and stats); the loop is the
classification path's: tasks carry the row id and are imported only when missing (`import_missing`), the
run pauses with "N tasks awaiting review at URL" until `min_coverage` of the selected rows have
`annotators_per_task` usable annotations, and every run reads the project's state from the server.

What comes out, per mode (rows nobody reviewed pass unchanged, `label_source` null):
- rate: rows rejected (`low_rating`, `flagged_<flag>`) with their figures in `details`; kept rows carry
  their ratings in `meta.review`.
- edit: the chosen text replaces the response (generation: `completion`; chat: the last assistant turn);
  `meta.review.original` keeps what it replaced; the funnel counts `edited`.
- compare: `chosen` / `rejected` swapped where people preferred the source's `rejected`; a tie or a split
  vote goes to rejected.parquet (`preference_tie`, the votes in `details`) unless `responses.reject_ties` is off.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa

from pipeline.errors import PipelinePaused, UserError
from pipeline.stage import StageOutput, rejected_rows
from stages.annotate.responses import edits, export, interface, ordinal, preferences
from stages.annotate.selection import select_rows

KINDS_OF_MODE = {"rate": ("generation", "chat"), "edit": ("generation", "chat"), "compare": ("preference",)}


def check_kind(mode: str, kind: str) -> None:
    if kind not in KINDS_OF_MODE[mode]:
        wanted = " or ".join(KINDS_OF_MODE[mode])
        hint = ("; to rate or edit use `task: generation` or `task: chat`" if mode == "compare"
                else "; to compare two responses use `task: preference`")
        raise UserError(f"annotate.mode {mode} reviews {wanted} records, not {kind}{hint}")


def check_mode(mode: str, kind) -> None:
    """The annotate section's mode fits the dataset's kind (a one-line UserError otherwise)."""
    if mode == "label" and kind.label_field is None:
        raise UserError(f"annotate: {kind.name} records have no class label to pick — set annotate.mode to "
                        + ("compare" if kind.name == "preference" else "rate or edit")
                        + " (review of responses), or run with --no-annotate")
    if mode != "label":
        check_kind(mode, kind.name)


def refuse_label_aggregation(mode: str) -> None:
    if mode != "label":
        raise UserError(f"annotate pull aggregates class labels; a review (annotate.mode {mode}) is pulled and "
                        "aggregated by `sftpipe run` (`sftpipe annotate status` shows its progress)")


def labelling_config(stage) -> tuple[str, str]:
    """(the labelling config, what the project's rows need — for its description)."""
    cfg = stage.config
    return (interface.label_config(cfg.mode, flags=cfg.responses.flags, max_rating=cfg.responses.max_rating,
                                   instructions=cfg.instructions), f"review ({cfg.mode})")


def low_scores(table: pa.Table, signals: list[str]) -> list[str]:
    """The ids of rows where any of the signal columns (those the table has) is non-zero / true."""
    import pyarrow.compute as pc

    flagged = pa.array([False] * table.num_rows)
    for name in signals:
        if name not in table.column_names:
            continue
        col = table.column(name)
        if pa.types.is_boolean(col.type):
            hit = pc.fill_null(col, False)
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            hit = pc.fill_null(pc.not_equal(col, 0), False)
        else:
            continue
        flagged = pc.or_(flagged, hit)
    return sorted(table.filter(flagged).column("id").to_pylist())


def _selected(stage, table: pa.Table) -> list[str]:
    cfg = stage.config
    if cfg.select == "low_scores":
        return low_scores(table, cfg.responses.low_scores)
    ids = table.column("id").to_pylist()
    frame = pd.DataFrame({"id": ids, "text": [""] * len(ids), "label": ["-"] * len(ids)})
    sel = cfg if cfg.select != "unlabelled" else cfg.model_copy(update={"select": "all"})  # unreviewed = all
    return select_rows(frame, sel, stage.flagged_ids()).loc[:, "id"].tolist()


def _tasks(stage, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mode, kind = stage.config.mode, stage.ctx.kind.name
    out = []
    for row in rows:
        task: dict[str, Any] = {"data": interface.task_data(kind, mode, row),
                                "meta": {"dataset": stage.ctx.dataset, "source": row.get("source")}}
        if mode == "edit":
            task["predictions"] = [interface.prefill(task["data"][interface.RESPONSE])]
        out.append(task)
    return out


def pull(stage, pid: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(annotations, aside) of the project, from an export snapshot."""
    cfg, client = stage.config, stage.client()
    return export.reviews_from_export(
        client.export_snapshot(pid), client.users(), cfg.mode, flags=cfg.responses.flags, max_rating=cfg.responses.max_rating,
        a_is_chosen=interface.a_is_chosen if cfg.mode == "compare" else None)


def review(stage, inputs) -> Iterator[StageOutput]:
    cfg, kind = stage.config, stage.ctx.kind
    mode, rcfg = cfg.mode, cfg.responses
    check_kind(mode, kind.name)
    batches = list(inputs.batches()) if inputs is not None else []
    table = pa.Table.from_batches(batches) if batches else kind.schema().empty_table()
    selected = set(_selected(stage, table))
    payload = table.select(["id", "source", *kind.payload_names])
    rows = [r for r in payload.to_pylist() if r["id"] in selected]
    rows.sort(key=lambda r: r["id"])

    client = stage.client()
    pid = stage.project()
    url = stage.project_url(pid)
    pushed = client.import_missing(pid, _tasks(stage, rows), batch_size=cfg.push_batch_size)
    if mode == "edit" and rows:  # the prefilled response is the pre-annotation Label Studio pre-selects
        client.use_predictions(pid, interface.PREFILL_VERSION)
    tasks = client.tasks(pid)
    ann, aside = pull(stage, pid)
    in_input = set(table.column("id").to_pylist())
    ann = ann[ann["row_id"].isin(in_input)].reset_index(drop=True)
    aside = aside[aside["row_id"].isin(in_input) | aside["row_id"].isna()].reset_index(drop=True)

    per_row = pd.concat([ann["row_id"], aside["row_id"]]).value_counts()
    done = sum(1 for r in selected if per_row.get(r, 0) >= cfg.annotators_per_task)
    total = len(selected)
    coverage = done / total if total else 1.0
    in_tasks = [t["data"].get("row_id") for t in tasks]
    stage.stats.update({
        "url": client.url, "project_id": pid, "project_title": stage.title, "mode": mode, "select": cfg.select,
        "annotators_per_task": cfg.annotators_per_task, "push": pushed, "tasks_in_project": len(tasks),
        "duplicate_tasks": len(in_tasks) - len(set(in_tasks)), "selected": total, "done": done,
        "coverage": round(coverage, 6), "min_coverage": cfg.min_coverage, "annotations": int(len(ann)),
        "annotations_aside": int(len(aside)),
    })
    if stage.mode == "push" or coverage < cfg.min_coverage:
        remaining = total - done
        note = f" ({pushed['imported']} imported now)" if pushed["imported"] else ""
        raise PipelinePaused(
            f"{remaining} tasks awaiting review at {url}{note} — run again after reviewing" if remaining
            else f"all {total} tasks are reviewed at {url}{note} — run again to pull them",
            stage=stage.name, waiting=remaining, url=url)

    frame = ann.rename(columns={"row_id": "item"})
    work = Path(stage.ctx.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    export.write(ann, work / "annotations.parquet")
    export.write(aside, work / "annotations_aside.parquet", aside=True)
    aside_list = [{"row_id": r.row_id, "annotator": r.annotator, "reason": r.reason} for r in aside.itertuples(index=False)]

    if mode == "rate":
        decided = ordinal.aggregate(frame, min_rating=rcfg.min_rating, flags=rcfg.flags, flag_share=rcfg.flag_share,
                                    method=rcfg.rating_aggregation)
        report = ordinal.report(frame, decided, rcfg.max_rating)
        aggregation, unresolved, changed = rcfg.rating_aggregation, 0, 0
        outcome = decided["decision"].value_counts().to_dict() if len(decided) else {}
        figures = {"rejected": {k: int(v) for k, v in outcome.items() if k != "keep"}, "kept": int(outcome.get("keep", 0)),
                   "min_rating": rcfg.min_rating, "flag_share": rcfg.flag_share,
                   "mean_rating": round(float(decided["rating"].mean()), 6) if len(decided) else None}
    elif mode == "edit":
        original = {r["id"]: interface.task_data(kind.name, mode, r)[interface.RESPONSE] for r in rows}
        decided = edits.choose(frame, original, rcfg.edit_rule)
        report = edits.report(decided, frame)
        aggregation, unresolved = f"edit:{rcfg.edit_rule}", 0
        changed = int(decided["edited"].sum()) if len(decided) else 0
        figures = {"edited": changed, "edit_rule": rcfg.edit_rule,
                   "rows_with_differing_edits": int((decided["texts"] > 1).sum()) if len(decided) else 0}
    else:
        decided, details = preferences.aggregate(frame, cfg.aggregation)
        report = preferences.report(frame, decided)
        aggregation = cfg.aggregation
        unresolved = int(decided["unresolved"].sum()) if len(decided) else 0
        changed = int((decided["preference"] == "rejected").sum()) if len(decided) else 0
        tied = decided[decided["unresolved"].astype(bool)].sort_values("item") if len(decided) else decided
        figures = {"swapped": changed, "ties": unresolved, "reject_ties": rcfg.reject_ties,
                   "tie_rows": tied["item"].tolist()[:100]}
        # The ties with their votes, as the label path lists them: the summary, the manifest and report.html.
        stage._ties = [{"id": i, "votes": v} for i, v in zip(tied["item"][:100], tied["votes"][:100])]
        if "annotator_accuracy" in details:
            stage.stats["annotator_accuracy"] = details["annotator_accuracy"]
    stage._agreement = report
    stage.stats.update({"aggregation": aggregation, "annotators": sorted(ann["annotator"].unique().tolist()),
                        "labelled_rows": int(len(decided)), "unresolved": unresolved, "changed_from_source": changed,
                        "relabelled": changed, "response_review": figures, "agreement": {k: v for k, v in report.items() if k not in ("annotators",)}})
    _write_decisions(decided, work / "labels.parquet")
    doc = {"mode": mode, "method": aggregation, **figures,
           **({"annotator_accuracy": stage.stats["annotator_accuracy"]} if "annotator_accuracy" in stage.stats else {}),
           "coverage": {k: stage.stats.get(k) for k in ("selected", "done", "coverage", "min_coverage")},
           "annotations_aside": aside_list, **report}
    (work / "agreement.json").write_text(json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")

    by_item = {r["item"]: r for r in decided.to_dict("records")}
    for batch in batches:
        yield from _apply(stage, batch, by_item)


def _write_decisions(decided: pd.DataFrame, path: Path) -> None:
    """labels.parquet: one row per reviewed row, every figure of its decision (nested values as JSON)."""
    frame = decided.rename(columns={"item": "row_id"}).copy()
    for c in frame.columns:
        if frame[c].map(lambda v: isinstance(v, (dict, list))).any():
            frame[c] = frame[c].map(lambda v: json.dumps(v, sort_keys=True, default=str, ensure_ascii=False))
    table = pa.Table.from_pandas(frame, preserve_index=False) if len(frame) else pa.table({"row_id": pa.array([], pa.string())})
    import pyarrow.parquet as pq

    pq.write_table(table, path)


def _meta(old: str | None, review: dict[str, Any]) -> str:
    try:
        meta = json.loads(old) if old else {}
    except ValueError:
        meta = {"meta": old}
    if not isinstance(meta, dict):
        meta = {"meta": meta}
    meta["review"] = review
    return json.dumps(meta, ensure_ascii=False, default=str)


def _apply(stage, batch: pa.RecordBatch, by_item: dict[str, dict[str, Any]]) -> Iterator[StageOutput]:
    cfg, kind = stage.config, stage.ctx.kind
    mode = cfg.mode
    ids = batch.column("id").to_pylist()
    metas = batch.column("meta").to_pylist()
    keep = [True] * len(ids)
    reasons, details = {}, {}
    new_meta, source = list(metas), [None] * len(ids)
    replace: dict[int, str] = {}  # edit: row position → new response
    swap: set[int] = set()  # compare: row positions whose chosen / rejected trade places
    for i, rid in enumerate(ids):
        d = by_item.get(rid)
        if d is None:
            continue
        source[i] = "annotation"
        if mode == "rate":
            info = {"mode": "rate", "rating": d["rating"], "ratings": d["ratings"], "n": d["n"], "support": d["support"],
                    "flags": d["flags"], "aggregation": cfg.responses.rating_aggregation}
            if d["decision"] != "keep":
                keep[i] = False
                reasons[i] = d["decision"]
                details[i] = {**info, "annotators": d["annotators"], "min_rating": cfg.responses.min_rating,
                              "flag_share": cfg.responses.flag_share}
        elif mode == "edit":
            info = {"mode": "edit", "edited": bool(d["edited"]), "annotator": d["annotator"],
                    "annotation_id": d["annotation_id"], "n": d["n"], "n_edits": d["n_edits"], "rule": cfg.responses.edit_rule}
            if d["edited"]:
                replace[i] = d["text"]
        else:
            info = {"mode": "compare", "votes": d["votes"], "n": d["n"], "support": d["support"],
                    "swapped": d["preference"] == "rejected"}
            if d["unresolved"] and cfg.responses.reject_ties:
                keep[i] = False
                reasons[i] = "preference_tie"
                details[i] = info
            elif d["preference"] == "rejected":
                swap.add(i)
        new_meta[i] = info  # filled in below, once originals are known
    out = batch
    if replace:
        out, originals = _replace_responses(out, kind.name, replace)
        for i, text in originals.items():
            new_meta[i] = {**new_meta[i], "original": text}
    if swap:
        chosen, rejected = out.column("chosen").to_pylist(), out.column("rejected").to_pylist()
        for i in swap:
            chosen[i], rejected[i] = rejected[i], chosen[i]
        out = out.set_column(out.schema.get_field_index("chosen"), out.schema.field("chosen"), pa.array(chosen, pa.string()))
        out = out.set_column(out.schema.get_field_index("rejected"), out.schema.field("rejected"), pa.array(rejected, pa.string()))
    meta_col = [_meta(metas[i], m) if isinstance(m, dict) else m for i, m in enumerate(new_meta)]
    out = out.set_column(out.schema.get_field_index("meta"), out.schema.field("meta"), pa.array(meta_col, pa.string()))
    src = pa.array(source, pa.string())
    if "label_source" in out.schema.names:
        out = out.set_column(out.schema.get_field_index("label_source"), "label_source", src)
    else:
        out = out.append_column("label_source", src)
    mask = pa.array(keep)
    if not all(keep):
        gone = [i for i, k in enumerate(keep) if not k]
        yield StageOutput(rejected=rejected_rows(out.filter(pa.array([not k for k in keep])), stage.name,
                                                 [reasons[i] for i in gone], [details[i] for i in gone], kind=kind))
    kept = out.filter(mask)
    stage.ctx.progress(batch.num_rows)
    yield StageOutput(kept=kept)


def _replace_responses(batch: pa.RecordBatch, kind: str, replace: dict[int, str]) -> tuple[pa.RecordBatch, dict[int, str]]:
    """The batch with the responses at the given positions replaced; the texts they replaced."""
    originals: dict[int, str] = {}
    if kind == "generation":
        values = batch.column("completion").to_pylist()
        for i, text in replace.items():
            originals[i], values[i] = values[i], text
        idx = batch.schema.get_field_index("completion")
        return batch.set_column(idx, batch.schema.field(idx), pa.array(values, pa.string())), originals
    idx = batch.schema.get_field_index("messages")
    convs = batch.column(idx).to_pylist()
    for i, text in replace.items():
        turns = convs[i]
        last = max(j for j, t in enumerate(turns) if t["role"] == "assistant")
        originals[i] = turns[last]["content"]
        turns[last] = {**turns[last], "content": text}
    return batch.set_column(idx, batch.schema.field(idx), pa.array(convs, batch.schema.field(idx).type)), originals
