"""The annotate stage: select, push, wait for people, pull, aggregate, hand the labels on.

See the package docstring (`stages/annotate/__init__.py`) for how a run goes and the files it leaves.
Label Studio is reached only through `pipeline.labelstudio`."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from pipeline.errors import PipelinePaused, UserError
from pipeline.stage import Stage, StageInput, StageOutput
from schemas.summaries import Agreement, AnnotationSummary, LabelChange, ReviewSummary, Summary, Tie
from stages.annotate import agreement, review
from stages.annotate.config import Config
from stages.annotate.responses import run as responses
from stages.annotate.export import annotations_from_export, write_annotations
from stages.annotate.labelling import FROM_NAME, MULTI_SEP, TO_NAME, instructions_html, label_config
from stages.annotate.selection import file_hash, read_table, select_rows

# Files the stage leaves in its work folder; a published version keeps them under annotations/.
VERSION_FILES = ("annotations.parquet", "annotations_aside.parquet", "labels.parquet", "agreement.json", *review.FILES)


class AnnotateStage(Stage):
    name = "annotate"
    Config = Config
    whole_stream = True
    optional = True  # runs when the config has an `annotate:` section, unless skipped (--no-annotate)
    adds = (schemas.LABEL_SOURCE,)
    summary_type = AnnotationSummary
    version_files = {f: f"annotations/{f}" for f in VERSION_FILES}
    # "run": push, then pull and go on once coverage is reached. "push": push and stop (sftpipe annotate push).
    mode: ClassVar[str] = "run"

    @classmethod
    def check_section(cls, section: Config, config_dir: Path, config) -> None:
        responses.check_mode(section.mode, config.record_kind)

    def __init__(self, config: Config, ctx):
        super().__init__(config, ctx)
        self._client = None
        self._agreement: dict[str, Any] = {}  # every agreement figure of the last aggregation
        self._ties: list[dict[str, Any]] = []  # the first 100 unresolved rows of it, with their votes
        self._changes: list[dict[str, Any]] = []  # the first 100 rows whose label the run changed

    # -- Label Studio ----------------------------------------------------------------------------------------

    @property
    def title(self) -> str:
        return self.config.project_title or f"sftpipe: {self.ctx.dataset}"

    def labels(self) -> list[str]:
        labels = self.config.labels or self.ctx.labels
        if not labels or len(labels) < 2:
            raise UserError("annotate: no label set — set `labels` at the top of the config or annotate.labels")
        return list(labels)

    def client(self):
        if self._client is None:
            from pipeline import labelstudio

            creds = labelstudio.resolve_credentials(self.config.url_env, self.config.api_key_env)
            self._client = labelstudio.LabelStudioClient(creds)
        return self._client

    def project(self, create: bool = True) -> int | None:
        """The dataset's project id: found again by the stored id and the title; created when absent."""
        from pipeline import labelstudio

        client = self.client()
        state_dir = labelstudio.server_dir()
        stored = labelstudio.stored_project_id(state_dir, client.url, self.title)
        if not create:
            if stored is not None:
                p = client.get_project(stored)
                if p is not None and p.title == self.title:
                    return stored
            same = client.projects_titled(self.title)
            return int(same[0].id) if len(same) == 1 else None
        interface, what = ((label_config(self.labels(), self.config.choice, self.config.instructions), "a human label")
                           if self.config.mode == "label" else responses.labelling_config(self))
        pid, created = client.ensure_project(
            self.title,
            interface,
            stored_id=stored,
            description=f"sftpipe dataset {self.ctx.dataset}: rows that need {what}. Managed by sftpipe; "
            f"tasks carry the row id in data.row_id.",
            instructions=instructions_html(self.config.instructions),
            maximum_annotations=self.config.annotators_per_task,
            show_predictions=self.config.prefilled if self.config.mode == "label" else self.config.mode == "edit",
        )
        if stored != pid:
            labelstudio.store_project_id(state_dir, client.url, self.title, pid)
        self.stats["project_created"] = created
        if client.warnings:
            self.stats["warnings"] = list(client.warnings)
        return pid

    def project_url(self, pid: int) -> str:
        return f"{self.client().url}/projects/{pid}/data"

    def _path(self, name: str | None) -> Path | None:
        return None if name is None else (Path(self.ctx.config_dir) / name)

    def flagged_ids(self) -> set[str] | None:
        path = self._path(self.config.flagged_file)
        if path is None:
            return None
        table = read_table(path)
        if "id" not in table.columns:
            raise UserError(f"annotate: {path} has no `id` column (has: {', '.join(map(str, table.columns))})")
        return set(table["id"].astype(str))

    def predictions(self) -> dict[str, tuple[str, float | None, str]]:
        """Row id → (label, score, model_version) from predictions_file."""
        path = self._path(self.config.predictions_file)
        if path is None:
            return {}
        table = read_table(path)
        missing = [c for c in ("id", "label") if c not in table.columns]
        if missing:
            raise UserError(f"annotate: {path} lacks column(s) {', '.join(missing)}")
        score = table["score"] if "score" in table.columns else pd.Series([None] * len(table))
        version = table["model_version"] if "model_version" in table.columns else pd.Series([path.stem] * len(table))
        return {
            str(i): (str(l), None if s is None or pd.isna(s) else float(s), str(v))
            for i, l, s, v in zip(table["id"], table["label"], score, version)
        }

    def fingerprint_inputs(self) -> str:
        """The side files and the annotation state of the project and of every review's: any new, edited or
        deleted annotation changes it, so a run after labelling pulls again while a run with nothing new
        reuses the earlier output."""
        if self.mode == "push":  # never reuse an earlier output: a push must reach the server (and never publish)
            return f"annotate:push:{time.time_ns()}"
        files = [file_hash(p) for p in (self._path(self.config.flagged_file), self._path(self.config.predictions_file)) if p]
        h = hashlib.sha256(f"{files}".encode())
        projects = [self] if self.config.select != "none" else []
        projects += [type(self)(review.review_section(self.config, r), self.ctx) for r in self.config.reviews]
        for stage in projects:
            pid = stage.project(create=False)
            h.update(f"|{stage.title} {stage.client().url} {pid}".encode())
            if pid is not None:
                for t in sorted(stage.client().annotation_state(pid)):
                    h.update(repr(t).encode())
        return "annotate:" + h.hexdigest()

    def push(self, pid: int, rows: pd.DataFrame) -> dict[str, int]:
        """Import the rows that are not tasks yet, in bulk batches (`LabelStudioClient.import_missing`). Safe
        to interrupt and run again."""
        client, labels = self.client(), set(self.labels())
        self._predictions = self.predictions()
        existing = client.tasks(pid)
        present = {t["data"].get("row_id") for t in existing}
        todo = rows[~rows["id"].isin(present)]
        # A row whose text changed upstream (a new clean config) keeps its task: its annotations were made on
        # the old text. Say so rather than silently mixing.
        text_of = dict(zip(rows["id"], rows["text"]))
        stale = sorted(t["data"]["row_id"] for t in existing
                       if t["data"].get("row_id") in text_of and t["data"].get(TO_NAME) != text_of[t["data"]["row_id"]])
        if stale:
            self.stats["stale_tasks"] = len(stale)
            self.stats.setdefault("warnings", []).append(
                f"{len(stale)} task(s) show an older text of their row (e.g. {', '.join(stale[:3])}); "
                f"their annotations are used as they are")
        pending = [self._task(r, labels) for r in todo.itertuples(index=False)]
        pushed = client.import_missing(pid, pending, batch_size=self.config.push_batch_size, existing=existing)
        prefilled = sum(1 for t in pending if t.get("predictions"))
        if self.config.prefilled and (prefilled or len(existing)):
            self._use_predictions(pid)
        return {"selected": int(len(rows)), "already_in_project": int(len(rows) - len(todo)), "imported": pushed["imported"]}

    def _use_predictions(self, pid: int) -> None:
        """Make the pre-annotations the ones Label Studio pre-selects: the predictions file's model version
        where there is one, else the source label's."""
        from pipeline.labelstudio import LabelStudioError

        versions = sorted({v for _, _, v in getattr(self, "_predictions", {}).values()})
        version = versions[0] if len(versions) == 1 else self.config.model_version
        try:
            self.client().use_predictions(pid, version)
        except LabelStudioError as exc:  # no prediction of that version in the project (yet): nothing to show
            if exc.status != 400:
                raise
            self.stats.setdefault("warnings", []).append(f"pre-annotations not switched on: {exc}")

    def _task(self, row, labels: set[str]) -> dict[str, Any]:
        source_label = row.label if isinstance(row.label, str) and row.label else None
        # The source label goes into the task's meta, not its data: Label Studio's Data Manager shows every data
        # field as a column, where it would anchor the annotators.
        task: dict[str, Any] = {
            "data": {TO_NAME: row.text, "row_id": row.id},
            "meta": {"dataset": self.ctx.dataset, "source": row.source, "source_label": source_label},
        }
        predicted = getattr(self, "_predictions", {}).get(row.id)
        if predicted is not None:
            label, score, version = predicted
        else:
            label, score, version = source_label, 1.0, self.config.model_version
        if self.config.prefilled and label is not None:
            choices = [c for c in label.split(MULTI_SEP) if c in labels] if self.config.choice == "multiple" else (
                [label] if label in labels else [])
            if choices:
                pred: dict[str, Any] = {
                    "model_version": version,
                    "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": choices}}],
                }
                if score is not None:
                    pred["score"] = score
                task["predictions"] = [pred]
        return task

    # -- run -------------------------------------------------------------------------------------------------

    def run(self, inputs: StageInput | None) -> Iterator[StageOutput]:
        if self.config.mode != "label":  # rate, edit, compare: review of responses
            return (yield from responses.review(self, inputs))
        self.labels()  # no label set: fail before anything is sent
        batches = list(inputs.batches()) if inputs is not None else []
        table = pa.Table.from_batches(batches) if batches else self.ctx.kind.schema().empty_table()
        marked = [c for c in ("label_issue",) if c in table.schema.names]  # the label_noise stage's marks
        rows = table.select(["id", "text", "label", "source", *marked]).to_pandas()

        human: dict[str, str] = {}
        waiting: PipelinePaused | None = None
        if self.config.select != "none":
            try:
                human = self._own_rows(rows)
            except PipelinePaused as paused:
                if self.mode == "push":
                    raise  # pushed: nothing is pulled
                waiting = paused
        reviewed: dict[str, str] = {}
        reviewed_by: dict[str, str] = {}
        if self.config.reviews and self.mode != "push":
            outcome = review.collect(self, rows, Path(self.ctx.work_dir))
            self.stats["reviews"] = outcome.summaries
            if outcome.warnings:
                self.stats.setdefault("warnings", []).extend(outcome.warnings)
            if outcome.waiting:
                message = "; ".join(outcome.waiting) + " — run again after labelling"
                if waiting is not None:  # both: annotate's own message first, the reviews after it
                    message = f"{waiting}; " + "; ".join(outcome.waiting)
                waiting = PipelinePaused(message, stage=self.name, url=waiting.url if waiting else "")
            reviewed, reviewed_by = outcome.labels, outcome.by
        if waiting is not None:
            raise waiting

        relabelled, changes = 0, []
        for batch in batches:
            ids = batch.column("id").to_pylist()
            old = batch.column("label").to_pylist()
            new_label, source = [], []
            for i, l in zip(ids, old):
                if i in reviewed:
                    new_label.append(reviewed[i])
                    source.append("review")
                elif i in human:
                    new_label.append(human[i])
                    source.append("annotation")
                else:
                    new_label.append(l)
                    source.append("source" if l else None)
                if new_label[-1] != l:
                    relabelled += 1
                    if len(changes) < 100:
                        by = f"review of {reviewed_by[i]}" if i in reviewed else "annotation"
                        changes.append({"id": i, "before": l, "after": new_label[-1], "by": by})
            out = batch.set_column(batch.schema.get_field_index("label"), "label", pa.array(new_label, pa.string()))
            if "label_source" in out.schema.names:
                out = out.set_column(out.schema.get_field_index("label_source"), "label_source", pa.array(source, pa.string()))
            else:
                out = out.append_column("label_source", pa.array(source, pa.string()))
            self.ctx.progress(out.num_rows)
            yield StageOutput(kept=out)
        # Rows whose label this stage changed (people's labels and review decisions): the funnel shows them.
        self.stats["relabelled"] = relabelled
        self._changes = changes  # for the summary (not the stats: the manifest would hold them twice)

    def _own_rows(self, rows: pd.DataFrame) -> dict[str, str]:
        """The section's own selection: push it, pull it, and once enough is labelled, aggregate; the human
        label per row id. Raises PipelinePaused while too few are labelled (and after a push-only run)."""
        cfg = self.config
        selected = select_rows(rows, cfg, self.flagged_ids())
        client = self.client()
        pid = self.project()
        url = self.project_url(pid)
        pushed = self.push(pid, selected)
        tasks = client.tasks(pid)
        ann, aside, _ = self.pull(pid)

        # Only rows of this input count; annotations of rows no longer in the dataset are ignored.
        in_input = set(rows["id"])
        ann = ann[ann["row_id"].isin(in_input)].reset_index(drop=True)
        aside = aside[aside["row_id"].isin(in_input) | aside["row_id"].isna()].reset_index(drop=True)

        done_per_row: dict[str, int] = {}
        for frame in (ann, aside):
            for rid, n in frame.groupby("row_id").size().items():
                done_per_row[rid] = done_per_row.get(rid, 0) + int(n)
        sel_ids = selected["id"].tolist()
        done = sum(1 for r in sel_ids if done_per_row.get(r, 0) >= cfg.annotators_per_task)
        total = len(sel_ids)
        coverage = done / total if total else 1.0
        row_ids_in_tasks = [t["data"].get("row_id") for t in tasks]
        self.stats.update(
            {
                "url": client.url,
                "project_id": pid,
                "project_title": self.title,
                "select": cfg.select,
                "annotators_per_task": cfg.annotators_per_task,
                "prefill": cfg.prefilled,
                "push": pushed,
                "tasks_in_project": len(tasks),
                "duplicate_tasks": len(row_ids_in_tasks) - len(set(row_ids_in_tasks)),
                "selected": total,
                "done": done,
                "coverage": round(coverage, 6),
                "min_coverage": cfg.min_coverage,
                "annotations": int(len(ann)),
                "annotations_aside": int(len(aside)),
            }
        )
        remaining = total - done
        if self.mode == "push" or coverage < cfg.min_coverage:
            pushed_note = f" ({pushed['imported']} imported now)" if pushed["imported"] else ""
            raise PipelinePaused(
                f"{remaining} tasks awaiting annotation at {url}{pushed_note} — run again after labelling"
                if remaining
                else f"all {total} tasks are annotated at {url}{pushed_note} — run again to pull them",
                stage=self.name,
                waiting=remaining,
                url=url,
            )
        source_of = dict(zip(rows["id"], rows["label"]))
        resolved = self.aggregate_labels(ann, aside, source_of, Path(self.ctx.work_dir))
        return dict(zip(resolved["item"], resolved["label"]))

    def pull(self, pid: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        """(annotations, aside, source label per row id from the task data) from an export snapshot."""
        client = self.client()
        if self.config.mode != "label":  # rate, edit, compare: one row per review annotation
            return (*responses.pull(self, pid), {})
        export = client.export_snapshot(pid)
        ann, aside = annotations_from_export(export, client.users(), self.labels())
        source_of = {(t.get("data") or {}).get("row_id"): source_label_of(t) for t in export}
        return ann, aside, source_of

    def aggregate_labels(self, ann: pd.DataFrame, aside: pd.DataFrame, source_of: dict[str, Any], work: Path) -> pd.DataFrame:
        """Aggregate, measure agreement, write the files and the stats; return the resolved rows
        (columns item, label, ...)."""
        responses.refuse_label_aggregation(self.config.mode)
        cfg, labels = self.config, self.labels()
        agg, details = agreement.aggregate(ann, labels, cfg.aggregation)
        report = agreement.report(ann.rename(columns={"row_id": "item"}), labels, agg) if len(ann) else {}
        self._agreement = report
        unresolved = sorted(agg.loc[agg["unresolved"].astype(bool), "item"].tolist()) if len(agg) else []
        tied = agg[agg["unresolved"].astype(bool)].sort_values("item") if len(agg) else agg
        self._ties = [{"id": i, "votes": v} for i, v in zip(tied["item"][:100], tied["votes"][:100])]
        resolved = agg[~agg["unresolved"].astype(bool)] if len(agg) else agg
        changed = [
            {"row_id": i, "source_label": source_of.get(i), "label": l}
            for i, l in zip(resolved["item"], resolved["label"])
            if isinstance(source_of.get(i), str) and source_of.get(i) and source_of.get(i) != l
        ]
        self.stats.update(
            {
                "aggregation": cfg.aggregation,
                "annotators": sorted(ann["annotator"].unique().tolist()),
                "labelled_rows": int(len(resolved)),
                "unresolved": len(unresolved),
                "unresolved_rows": unresolved[:100],
                "changed_from_source": len(changed),
                "agreement": {
                    "cohen_kappa": report.get("cohen_kappa", []),
                    "fleiss_kappa": report.get("fleiss_kappa"),
                    "krippendorff_alpha": report.get("krippendorff_alpha"),
                    "annotator_consensus": report.get("annotator_consensus", {}),
                    "per_label_agreement": report.get("per_label_agreement", {}),
                },
                **({"annotator_accuracy": details["annotator_accuracy"]} if "annotator_accuracy" in details else {}),
            }
        )
        work.mkdir(parents=True, exist_ok=True)
        write_annotations(ann, work / "annotations.parquet")
        write_annotations(aside, work / "annotations_aside.parquet", {"reason": pa.string()})
        items = agg["item"].tolist() if len(agg) else []
        labels_table = pa.table(
            {
                "row_id": pa.array(items, pa.string()),
                "label": pa.array([l if isinstance(l, str) else None for l in agg["label"]] if len(agg) else [], pa.string()),
                "method": pa.array([cfg.aggregation] * len(items), pa.string()),
                "support": pa.array(agg["support"].tolist() if len(agg) else [], pa.float64()),
                "n_annotations": pa.array(agg["n"].tolist() if len(agg) else [], pa.int64()),
                "votes": pa.array([json.dumps(v, sort_keys=True) for v in agg["votes"]] if len(agg) else [], pa.string()),
                "unresolved": pa.array(agg["unresolved"].tolist() if len(agg) else [], pa.bool_()),
                "source_label": pa.array([_str_or_none(source_of.get(i)) for i in items], pa.string()),
            }
        )
        pq.write_table(labels_table, work / "labels.parquet")
        doc = {
            "method": cfg.aggregation,
            **details,
            "coverage": {k: self.stats.get(k) for k in ("selected", "done", "coverage", "min_coverage")},
            "unresolved_rows": unresolved,
            "changed_from_source": changed,
            "annotations_aside": [
                {"row_id": r.row_id, "annotator": r.annotator, "labels": list(r.labels), "reason": r.reason}
                for r in aside.itertuples(index=False)
            ],
            **report,
        }
        (work / "agreement.json").write_text(json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")
        return resolved

    # -- what it hands on ---------------------------------------------------------------------------------

    def summarize(self) -> AnnotationSummary | None:
        """The outcome of a run that went through (None while paused)."""
        s = self.stats
        if "relabelled" not in s:
            return None
        report = self._agreement
        own = {k: s.get(k) for k in ("url", "project_id", "project_title")}
        figures = {k: s.get(k, 0) for k in ("selected", "done", "annotations", "annotations_aside", "labelled_rows",
                                             "unresolved", "changed_from_source")}
        return AnnotationSummary(
            **own, **figures,
            select=self.config.select,
            annotators_per_task=self.config.annotators_per_task,
            coverage=s.get("coverage", 1.0),
            annotators=s.get("annotators", []),
            aggregation=s.get("aggregation", self.config.aggregation),
            agreement=Agreement(**{k: report[k] for k in Agreement.model_fields if k in report}),
            annotator_accuracy=s.get("annotator_accuracy"),
            relabelled=s["relabelled"],
            relabelled_rows=[LabelChange(**c) for c in self._changes],
            ties=[Tie(**t) for t in self._ties],
            reviews=[ReviewSummary(**r) for r in s.get("reviews", [])],
            warnings=s.get("warnings", []),
            mode=s.get("mode", "label"),
            response_review=s.get("response_review"),
        )

    @classmethod
    def manifest_entries(cls, summary: Summary | None, skipped: str | None) -> dict[str, Any]:
        """`label_origin` and the manifest's `annotation` block (never a token: the summary holds none)."""
        if summary is None:
            return {"label_origin": "source labels only",
                    "annotation": {"status": "skipped", "reason": skipped or "no annotate section",
                                   "labels": "source labels only"}}
        block = summary.model_dump(mode="json", exclude_none=True)
        if not block.get("warnings"):
            block.pop("warnings", None)
        origin = "source labels and human annotation" if summary.select != "none" else "source labels"
        if summary.reviews:
            origin += ", with the label review of " + ", ".join(r.version for r in summary.reviews)
        own = [f for f in VERSION_FILES if f not in review.FILES] if summary.select != "none" else []
        files = own + (list(review.FILES) if summary.reviews else [])
        return {"label_origin": origin,
                "annotation": {"status": "annotated", **block, "files": [cls.version_files[f] for f in files]}}


def source_label_of(task: dict[str, Any]) -> Any:
    """The source label a task was pushed with (its meta; its data in projects that earlier sftpipe versions pushed)."""
    meta = task.get("meta") or {}
    return meta["source_label"] if "source_label" in meta else (task.get("data") or {}).get("source_label")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
