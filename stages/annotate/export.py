"""An export snapshot → one row per annotation (and the annotations set aside, with why), and their files."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stages.annotate.labelling import FROM_NAME, MULTI_SEP

ANNOTATION_COLUMNS = [
    "row_id", "task_id", "annotation_id", "annotator", "annotator_id", "label", "labels",
    "created_at", "updated_at", "lead_time",
]  # fmt: skip


def each_annotation(export: list[dict[str, Any]], users: dict[int, str]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(annotation, its record's common fields) for every non-cancelled annotation of an export snapshot:
    row_id (None: a task sftpipe did not import), task_id, annotation_id, annotator (e-mail), annotator_id,
    created_at, updated_at, lead_time. Shared by the label path and the review of responses."""
    for task in export:
        row_id = (task.get("data") or {}).get("row_id")
        for a in task.get("annotations") or []:
            if a.get("was_cancelled"):
                continue
            uid = a.get("completed_by")
            uid = uid.get("id") if isinstance(uid, dict) else uid
            yield a, {"row_id": row_id, "task_id": int(task["id"]), "annotation_id": int(a["id"]),
                      "annotator": users.get(uid, f"user-{uid}"), "annotator_id": uid, "created_at": a.get("created_at"),
                      "updated_at": a.get("updated_at"), "lead_time": a.get("lead_time")}


def annotations_from_export(
    export: list[dict[str, Any]], users: dict[int, str], labels: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(annotations, aside): one row per non-cancelled annotation with a choice; those with a choice
    outside the label set (or no choice at all) go aside with their reason."""
    allowed = set(labels)
    kept, aside = [], []
    for a, common in each_annotation(export, users):
        choices: list[str] = []
        for r in a.get("result") or []:
            if r.get("from_name") == FROM_NAME and r.get("type") == "choices":
                choices.extend((r.get("value") or {}).get("choices") or [])
        choices = sorted(set(choices))
        rec = {**common, "label": MULTI_SEP.join(choices) if choices else None, "labels": choices}
        unknown = [c for c in choices if c not in allowed]
        if rec["row_id"] is None:
            aside.append({**rec, "reason": "task has no row_id (not imported by sftpipe)"})
        elif not choices:
            aside.append({**rec, "reason": "no choice in the annotation"})
        elif unknown:
            aside.append({**rec, "reason": f"choice not in the label set: {', '.join(unknown)}"})
        else:
            kept.append(rec)
    return annotation_frame(kept, ANNOTATION_COLUMNS), annotation_frame(aside, ANNOTATION_COLUMNS + ["reason"])


def annotation_frame(records: list[dict], columns: list[str]) -> pd.DataFrame:
    """The records as a frame with typed timestamps and numbers, in a stable order (row, annotator, annotation)."""
    df = pd.DataFrame(records, columns=columns)
    for c in ("created_at", "updated_at"):
        df[c] = pd.to_datetime(df[c], utc=True, errors="coerce")
    for c in ("lead_time", "rating"):
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
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
