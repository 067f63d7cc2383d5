"""annotate: send the rows that need a human to Label Studio and take their labels back.

The stage needs the whole stream. It selects the rows that need a human (unlabelled rows, an audit sample
of source-labelled rows, or all rows), makes sure each is a task of the dataset's Label Studio project
(bulk import, row id in the task data, never imported twice — the project is read back first, so an
interrupted push run again imports only what is missing; an import whose answer is lost is checked against
the project before anything is resent), then pulls an export snapshot and maps every
non-cancelled annotation back to its row.

Until the configured share of the selected rows is labelled (`min_coverage`) it stops the run cleanly with
`PipelinePaused` ("N tasks awaiting annotation at URL — run again after labelling"). Once enough is
labelled it aggregates (majority vote, ties left unresolved and listed, or Dawid–Skene), writes the raw
annotations and the agreement figures into its work folder, and passes every row on with `label` filled
or replaced by the aggregated human label and `label_source` saying where the label came from
("annotation", "source" or null).

Files in the stage's work folder (for the version): `annotations.parquet` (one row per annotation),
`annotations_aside.parquet` (annotations whose choice is not in the label set — reported, not used),
`labels.parquet` (per row: aggregated label, method, support, votes, unresolved) and `agreement.json`.
The stage never trusts its own memory of the server: every run asks Label Studio for the project's state.
Label Studio is reached only through `pipeline.labelstudio`.
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import time
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal
from xml.sax.saxutils import quoteattr

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

import schemas
from pipeline import agreement
from pipeline.errors import PipelinePaused, UserError
from pipeline.stage import Stage, StageInput, StageOutput

FROM_NAME, TO_NAME = "label", "text"  # the control and object tag names of the generated labelling config
MULTI_SEP = "|"  # a multi-choice answer as one nominal value: its sorted choices joined


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    select: Literal["unlabelled", "sample", "flagged", "all"] = Field(
        "unlabelled",
        description="rows that need a human: rows without a label, an audit sample of labelled rows, the rows "
        "listed in flagged_file (e.g. likely label errors found by evaluate), or all",
    )
    flagged_file: str | None = Field(None, description="select: flagged — file with an `id` column (parquet, csv, jsonl) "
                                     "or one id per line (txt); relative to the config file")
    sample_size: int | None = Field(None, ge=1, description="select: sample — number of rows")
    sample_fraction: float | None = Field(None, gt=0, le=1, description="select: sample — share of the labelled rows")
    stratify: bool = Field(False, description="select: sample — proportional to each source label")
    seed: int = 0
    annotators_per_task: int = Field(1, ge=1, le=20, description="Label Studio's overlap (maximum annotations per task)")
    labels: list[str] | None = Field(None, min_length=2, description="the label set; default: the dataset's labels")
    choice: Literal["single", "multiple"] = "single"
    instructions: str = ""
    min_coverage: float = Field(1.0, ge=0, le=1, description="share of selected rows fully annotated before the run goes on")
    aggregation: Literal["majority", "dawid_skene"] = "majority"
    prefill: bool = Field(True, description="send a pre-annotation (prediction) with each task")
    model_version: str = Field("source-label", description="model_version of the source-label pre-annotations")
    predictions_file: str | None = Field(
        None, description="a model's predictions to pre-annotate with instead of the source label: columns id, label, "
        "and optionally score and model_version (parquet, csv, jsonl); relative to the config file")
    project_title: str | None = Field(None, description="default: 'sftpipe: <dataset>'")
    url_env: str | None = Field(None, description="environment variable holding the server URL (default LABEL_STUDIO_URL)")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (default LABEL_STUDIO_API_KEY)")
    push_batch_size: int = Field(500, ge=1, le=10_000)

    @model_validator(mode="after")
    def _check(self) -> "Config":
        if self.select == "sample" and (self.sample_size is None) == (self.sample_fraction is None):
            raise ValueError("select: sample needs exactly one of sample_size or sample_fraction")
        if self.select != "sample" and (self.sample_size is not None or self.sample_fraction is not None or self.stratify):
            raise ValueError("sample_size / sample_fraction / stratify apply to select: sample only")
        if (self.select == "flagged") != (self.flagged_file is not None):
            raise ValueError("select: flagged and flagged_file go together")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self


# -- the labelling config ------------------------------------------------------------------------------------


def label_config(labels: list[str], choice: str = "single", instructions: str = "") -> str:
    """Label Studio labelling config for text classification. The text is shown with the `Text` tag
    (plain text, never interpreted as HTML); every value is XML-escaped."""
    header = f"  <Header value={quoteattr(instructions)}/>\n" if instructions.strip() else ""
    mode = "single-radio" if choice == "single" else "multiple"
    options = "".join(f"    <Choice value={quoteattr(l)}/>\n" for l in labels)
    return (
        "<View>\n"
        f"{header}"
        f'  <Text name="{TO_NAME}" value="${TO_NAME}" saveTextResult="no"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="{mode}" showInline="true" required="true">\n'
        f"{options}"
        "  </Choices>\n"
        "</View>\n"
    )


def instructions_html(text: str) -> str:
    """Label Studio shows project instructions as HTML: escape them and keep line breaks."""
    return "<br/>".join(html.escape(line) for line in text.strip().splitlines())


# -- choosing the rows ---------------------------------------------------------------------------------------


def _rank(seed: int, ids: pd.Series) -> pd.Series:
    """A stable pseudo-random order: a row's rank does not depend on batch order or on other rows."""
    return ids.map(lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def read_table(path: Path) -> pd.DataFrame:
    """A small side input (flagged ids, predictions) by its suffix."""
    if not path.is_file():
        raise UserError(f"annotate: file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path).to_pandas()
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        if suffix == ".txt":
            return pd.DataFrame({"id": [l.strip() for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]})
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise UserError(f"annotate: cannot read {path}: {exc}".replace("\n", " ")) from None
    raise UserError(f"annotate: {path}: expected .parquet, .csv, .jsonl or .txt")


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def select_rows(rows: pd.DataFrame, cfg: Config, flagged: set[str] | None = None) -> pd.DataFrame:
    """The rows (columns id, text, label) that need a human, in a stable order."""
    has_label = rows["label"].notna() & (rows["label"].astype("string").str.len() > 0)
    if cfg.select == "all":
        chosen = rows
    elif cfg.select == "flagged":
        chosen = rows[rows["id"].isin(flagged or set())]
    elif cfg.select == "unlabelled":
        chosen = rows[~has_label]
    else:
        pool = rows[has_label].assign(_rank=_rank(cfg.seed, rows.loc[has_label, "id"]))
        k = cfg.sample_size if cfg.sample_size is not None else round(cfg.sample_fraction * len(pool))
        k = min(int(k), len(pool))
        if not cfg.stratify or len(pool) == 0:
            chosen = pool.sort_values("_rank").head(k)
        else:
            sizes = pool.groupby("label").size().sort_index()
            exact = sizes * k / len(pool)
            take = exact.apply(math.floor)
            rest = k - int(take.sum())
            order = (exact - take).sort_values(ascending=False, kind="stable").index[:rest]
            take[order] += 1  # largest remainders, so the strata sum to k exactly
            parts = [g.sort_values("_rank").head(int(take[lab])) for lab, g in pool.groupby("label")]
            chosen = pd.concat(parts) if parts else pool.head(0)
        chosen = chosen.drop(columns="_rank")
    return chosen.sort_values("id", kind="stable").reset_index(drop=True)


# -- export → annotations ------------------------------------------------------------------------------------

ANNOTATION_COLUMNS = [
    "row_id", "task_id", "annotation_id", "annotator", "annotator_id", "label", "labels",
    "created_at", "updated_at", "lead_time",
]  # fmt: skip


def annotations_from_export(
    export: list[dict[str, Any]], users: dict[int, str], labels: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(annotations, aside): one row per non-cancelled annotation with a choice; those with a choice
    outside the label set (or no choice at all) go aside with their reason."""
    allowed = set(labels)
    kept, aside = [], []
    for task in export:
        row_id = (task.get("data") or {}).get("row_id")
        for a in task.get("annotations") or []:
            if a.get("was_cancelled"):
                continue
            choices: list[str] = []
            for r in a.get("result") or []:
                if r.get("from_name") == FROM_NAME and r.get("type") == "choices":
                    choices.extend((r.get("value") or {}).get("choices") or [])
            uid = a.get("completed_by")
            uid = uid.get("id") if isinstance(uid, dict) else uid
            choices = sorted(set(choices))
            rec = {
                "row_id": row_id,
                "task_id": int(task["id"]),
                "annotation_id": int(a["id"]),
                "annotator": users.get(uid, f"user-{uid}"),
                "annotator_id": uid,
                "label": MULTI_SEP.join(choices) if choices else None,
                "labels": choices,
                "created_at": a.get("created_at"),
                "updated_at": a.get("updated_at"),
                "lead_time": a.get("lead_time"),
            }
            unknown = [c for c in choices if c not in allowed]
            if row_id is None:
                aside.append({**rec, "reason": "task has no row_id (not imported by sftpipe)"})
            elif not choices:
                aside.append({**rec, "reason": "no choice in the annotation"})
            elif unknown:
                aside.append({**rec, "reason": f"choice not in the label set: {', '.join(unknown)}"})
            else:
                kept.append(rec)
    return _annotation_frame(kept), _annotation_frame(aside, extra=["reason"])


def _annotation_frame(records: list[dict], extra: list[str] = ()) -> pd.DataFrame:
    df = pd.DataFrame(records, columns=ANNOTATION_COLUMNS + list(extra))
    for c in ("created_at", "updated_at"):
        df[c] = pd.to_datetime(df[c], utc=True, errors="coerce")
    df["lead_time"] = pd.to_numeric(df["lead_time"], errors="coerce")
    df["annotator_id"] = pd.to_numeric(df["annotator_id"], errors="coerce").astype("Int64")
    return df.sort_values(["row_id", "annotator", "annotation_id"], kind="stable").reset_index(drop=True)


ANNOTATIONS_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.string()),
        pa.field("task_id", pa.int64()),
        pa.field("annotation_id", pa.int64()),
        pa.field("annotator", pa.string()),
        pa.field("annotator_id", pa.int64()),
        pa.field("label", pa.string()),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("lead_time", pa.float64()),
    ]
)


def write_annotations(df: pd.DataFrame, path: Path, extra: dict[str, pa.DataType] | None = None) -> None:
    schema = ANNOTATIONS_SCHEMA
    for name, typ in (extra or {}).items():
        schema = schema.append(pa.field(name, typ))
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    pq.write_table(table, path)


def aggregate(ann: pd.DataFrame, labels: list[str], method: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per row: the aggregated label (None when unresolved), support, votes. Plus method details."""
    frame = ann.rename(columns={"row_id": "item"})[["item", "annotator", "label"]]
    if frame.empty:
        return pd.DataFrame(columns=["item", "label", "support", "n", "votes", "unresolved"]), {}
    if method == "dawid_skene":
        result, accuracy = agreement.dawid_skene(frame, labels)
        return result, {"annotator_accuracy": accuracy}
    return agreement.majority(frame), {}


# -- the stage -----------------------------------------------------------------------------------------------


class AnnotateStage(Stage):
    name = "annotate"
    output_schema = schemas.ANNOTATED
    whole_stream = True
    Config = Config
    # "run": push, then pull and go on once coverage is reached. "push": push and stop (sftpipe annotate push).
    mode: ClassVar[str] = "run"

    def __init__(self, config: Config, ctx):
        super().__init__(config, ctx)
        self._client = None

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
        labels = self.labels()
        pid, created = client.ensure_project(
            self.title,
            label_config(labels, self.config.choice, self.config.instructions),
            stored_id=stored,
            description=f"sftpipe dataset {self.ctx.dataset}: rows that need a human label. Managed by sftpipe; "
            f"tasks carry the row id in data.row_id.",
            instructions=instructions_html(self.config.instructions),
            maximum_annotations=self.config.annotators_per_task,
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
        """The side files and the project's annotation state: any new, edited or deleted annotation changes
        it, so a run after labelling pulls again while a run with nothing new reuses the earlier output."""
        if self.mode == "push":  # never reuse an earlier output: a push must reach the server (and never publish)
            return f"annotate:push:{time.time_ns()}"
        files = [file_hash(p) for p in (self._path(self.config.flagged_file), self._path(self.config.predictions_file)) if p]
        pid = self.project(create=False)
        if pid is None:
            return "annotate:no-project:" + ",".join(files)
        h = hashlib.sha256(f"{self.client().url} {pid} {files}".encode())
        for t in sorted(self.client().annotation_state(pid)):
            h.update(repr(t).encode())
        return "annotate:" + h.hexdigest()

    def push(self, pid: int, rows: pd.DataFrame) -> dict[str, int]:
        """Import the rows that are not tasks yet, in bulk batches. Safe to interrupt and run again."""
        from pipeline.labelstudio import LabelStudioUnreachable

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
        imported = 0
        size = self.config.push_batch_size
        for start in range(0, len(todo), size):
            chunk = todo.iloc[start : start + size]
            pending = [self._task(r, labels) for r in chunk.itertuples(index=False)]
            for attempt in range(client.retries + 1):
                try:
                    imported += len(client.import_tasks(pid, pending))
                    break
                except LabelStudioUnreachable:  # a 5xx, a timeout, a lost answer: stored or not, we cannot tell
                    if attempt == client.retries:
                        raise
                client.backoff(attempt)
                # Read the project again and resend only what is not there (never a row twice).
                present = {t["data"].get("row_id") for t in client.tasks(pid)}
                landed = [t for t in pending if t["data"]["row_id"] in present]
                imported += len(landed)
                pending = [t for t in pending if t["data"]["row_id"] not in present]
                if not pending:
                    break
        return {"selected": int(len(rows)), "already_in_project": int(len(rows) - len(todo)), "imported": imported}

    def _task(self, row, labels: set[str]) -> dict[str, Any]:
        source_label = row.label if isinstance(row.label, str) and row.label else None
        task: dict[str, Any] = {
            "data": {TO_NAME: row.text, "row_id": row.id, "source_label": source_label},
            "meta": {"dataset": self.ctx.dataset, "source": row.source},
        }
        predicted = getattr(self, "_predictions", {}).get(row.id)
        if predicted is not None:
            label, score, version = predicted
        else:
            label, score, version = source_label, 1.0, self.config.model_version
        if self.config.prefill and label is not None:
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
        cfg = self.config
        self.labels()  # no label set: fail before anything is sent
        batches = list(inputs.batches()) if inputs is not None else []
        table = pa.Table.from_batches(batches) if batches else schemas.DEDUPED.empty_table()
        rows = table.select(["id", "text", "label", "source"]).to_pandas()
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
        resolved = self.summarize(ann, aside, source_of, Path(self.ctx.work_dir))
        human = dict(zip(resolved["item"], resolved["label"]))
        for batch in batches:
            ids = batch.column("id").to_pylist()
            old = batch.column("label").to_pylist()
            new_label, source = [], []
            for i, l in zip(ids, old):
                if i in human:
                    new_label.append(human[i])
                    source.append("annotation")
                else:
                    new_label.append(l)
                    source.append("source" if l else None)
            out = batch.set_column(batch.schema.get_field_index("label"), "label", pa.array(new_label, pa.string()))
            if "label_source" in out.schema.names:
                out = out.set_column(out.schema.get_field_index("label_source"), "label_source", pa.array(source, pa.string()))
            else:
                out = out.append_column("label_source", pa.array(source, pa.string()))
            self.ctx.progress(out.num_rows)
            yield StageOutput(kept=schemas.conform(out, schemas.ANNOTATED))

    def pull(self, pid: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        """(annotations, aside, source label per row id from the task data) from an export snapshot."""
        client = self.client()
        export = client.export_snapshot(pid)
        ann, aside = annotations_from_export(export, client.users(), self.labels())
        source_of = {(t.get("data") or {}).get("row_id"): (t.get("data") or {}).get("source_label") for t in export}
        return ann, aside, source_of

    def summarize(self, ann: pd.DataFrame, aside: pd.DataFrame, source_of: dict[str, Any], work: Path) -> pd.DataFrame:
        """Aggregate, measure agreement, write the files and the stats; return the resolved rows
        (columns item, label, ...)."""
        cfg, labels = self.config, self.labels()
        agg, details = aggregate(ann, labels, cfg.aggregation)
        report = agreement.report(ann.rename(columns={"row_id": "item"}), labels, agg) if len(ann) else {}
        unresolved = sorted(agg.loc[agg["unresolved"].astype(bool), "item"].tolist()) if len(agg) else []
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


# -- what the executor publishes ----------------------------------------------------------------------------

# Files the stage leaves in its work folder, for the version (copy them into <version>/annotations/).
VERSION_FILES = ("annotations.parquet", "annotations_aside.parquet", "labels.parquet", "agreement.json")


def manifest_summary(stats: dict[str, Any] | None, skipped_reason: str | None = None) -> dict[str, Any]:
    """The manifest's `annotation` block from the stage's stats (never a token: stats hold none)."""
    if skipped_reason is not None or not stats:
        return {"status": "skipped", "reason": skipped_reason or "no annotate section", "labels": "source labels only"}
    keys = ("url", "project_id", "project_title", "select", "annotators_per_task", "selected", "done", "coverage",
            "annotations", "annotations_aside", "annotators", "aggregation", "labelled_rows", "unresolved",
            "changed_from_source", "agreement", "annotator_accuracy", "warnings")
    return {"status": "annotated", **{k: stats[k] for k in keys if k in stats}, "files": [f"annotations/{f}" for f in VERSION_FILES]}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
