"""The candidate version: what the executor assembles from the last stage's output and every stage's
rejected rows before the gate looks at it and the store publishes it.

A candidate folder holds `<split>.parquet` for every split, `rejected.parquet`, the files stages
contribute to a version (`Stage.version_files`, e.g. annotate's `annotations/`), and `manifest.json`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from pipeline.fingerprint import content_fingerprint
from pipeline.stage import Stage
from pipeline.stage_io import BoundaryWriter, ParquetInput


def write_splits(split_folder: Path, out: Path, schema: pa.Schema, label_field: str | None,
                 batch_size: int) -> dict[str, Any]:
    """One Parquet file per split from the last stage's output; per split its rows and label counts."""
    writers = {s: BoundaryWriter(out / f"{s}.parquet", schema, f"split {s}") for s in schemas.SPLITS}
    labels: dict[str, dict[str, int]] = {s: {} for s in schemas.SPLITS}
    for batch in ParquetInput(sorted(split_folder.glob("part-*.parquet")), batch_size).batches():
        column = batch.column("split")
        for s in schemas.SPLITS:
            part = batch.filter(pc.equal(column, s))
            if part.num_rows:
                writers[s].write(part)
                if label_field is not None:
                    counts = pc.value_counts(part.column(label_field))
                    for lab, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
                        key = "(none)" if lab is None else lab
                        labels[s][key] = labels[s].get(key, 0) + n
    for w in writers.values():
        w.close()
    return {s: {"rows": writers[s].rows, "labels": dict(sorted(labels[s].items()))} for s in schemas.SPLITS}


def write_rejected(stage_folders: list[Path], out: Path, batch_size: int, schema: pa.Schema = schemas.REJECTED) -> int:
    """Every stage's rejected rows, in stage order, as one `rejected.parquet` (the record kind's
    `rejected_schema`); the number of rows."""
    writer = BoundaryWriter(out / "rejected.parquet", schema, "rejected rows")
    for folder in stage_folders:
        path = folder / "rejected.parquet"
        if path.exists():
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
                writer.write(batch)
    writer.close()
    return writer.rows


def copy_version_files(stage: type[Stage], stage_folder: Path, out: Path) -> None:
    """The files a stage contributes to a version, from its output folder to their place in the version."""
    for name, target in stage.version_files.items():
        source = stage_folder / name
        if source.exists():
            (out / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, out / target)


def content_fingerprint_of(folder: Path) -> str:
    """The content fingerprint of a candidate or version folder: every column of every split and of the
    rejected rows (`pipeline.fingerprint.content_fingerprint`)."""
    return content_fingerprint(folder, (*schemas.SPLITS, "rejected"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
