"""The local executor: runs the configured stages in order and publishes a version.

Each stage's output is written under the run folder `<data_dir>/runs/<dataset>/stages/` in a folder named
by a fingerprint of (upstream fingerprint, the stage's config section, the code version, the stage's own
inputs such as file hashes). A folder is written under a temporary name and renamed when complete, so a
later run trusts only whole outputs and resumes from the first stage whose fingerprint changed.
Between stages rows travel as Parquet record batches; no stage needs the corpus in Python objects.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

import pipeline
import schemas
from pipeline.config import DatasetConfig
from pipeline.errors import UserError
from pipeline.stage import Stage, StageContext, StageOutput, start_worker_server
from pipeline.store import VersionStore
from stages import annotate, clean, collect, dedupe, evaluate, split

ROOT = Path(__file__).resolve().parent.parent


def stage_plan(config: DatasetConfig, with_annotation: bool = True) -> list[tuple[type[Stage], BaseModel]]:
    """The stages this config runs, in order, each with its config section."""
    plan: list[tuple[type[Stage], BaseModel]] = [
        (collect.CollectStage, collect.Config(sources=config.sources, inputs_within=config.inputs_within)),
        (clean.CleanStage, config.clean),
        (dedupe.DedupeStage, config.dedupe),
    ]
    if with_annotation and config.annotate is not None:
        plan.append((annotate.AnnotateStage, config.annotate))
    plan.append((split.SplitStage, config.split))
    return plan


def code_version() -> str:
    """Package version plus a hash of the code that decides outputs (any edit changes fingerprints)."""
    h = hashlib.sha256()
    for folder in ("pipeline", "stages", "schemas"):
        for p in sorted((ROOT / folder).rglob("*.py")):
            h.update(p.relative_to(ROOT).as_posix().encode())
            h.update(p.read_bytes())
    return f"{pipeline.__version__}+{h.hexdigest()[:12]}"


class ParquetInput:
    """A stage's input: the Parquet files another stage wrote; re-iterable for whole-stream stages."""

    def __init__(self, files: list[Path], batch_size: int):
        self.files = files
        self.batch_size = batch_size
        self.num_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        for f in self.files:
            yield from pq.ParquetFile(f).iter_batches(batch_size=self.batch_size, columns=columns)


@dataclass
class StageReport:
    name: str
    fingerprint: str
    folder: Path
    rows_in: int
    rows_out: int
    dropped: dict[str, int]
    seconds: float
    cached: bool
    stats: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint, "rows_in": self.rows_in, "rows_out": self.rows_out,
                "dropped": self.dropped, "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows_in / self.seconds, 1) if self.seconds > 0 else None,
                "stats": self.stats}


@dataclass
class RunResult:
    dataset: str
    version: str | None  # the version published, or the identical one already there; None if gated
    published: bool
    stages: list[StageReport]
    manifest: dict[str, Any]
    candidate: Path
    evaluation: Any = None  # stages.evaluate.EvaluationResult, when the gate ran


class GateFailed(UserError):
    """A blocking quality expectation failed: the candidate was not published."""

    def __init__(self, message: str, result: RunResult):
        super().__init__(message)
        self.result = result


class _Writer:
    """Lazily opened Parquet writer that checks every batch against the boundary's schema."""

    def __init__(self, path: Path, schema: pa.Schema, where: str):
        self.path, self.schema, self.where = path, schema, where
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch is None or batch.num_rows == 0:
            return
        schemas.check(batch, self.schema, self.where)
        batch = schemas.conform(batch, self.schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, batch.schema, compression="zstd")
        elif batch.schema != self.writer.schema:
            try:
                batch = batch.cast(self.writer.schema)
            except (ValueError, pa.ArrowInvalid) as exc:
                raise schemas.SchemaError(f"{self.where}: batch schema changed mid-stream: {exc}") from None
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        if self.writer is None:  # no rows: still leave a readable file with the declared columns
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self.writer.close()


class LocalExecutor:
    def __init__(
        self,
        config: DatasetConfig,
        data_dir: Path | None = None,
        batch_size: int = 10_000,
        workers: int | None = None,
        from_stage: str | None = None,
        annotate: bool = True,
        allow_failed_gates: bool = False,
        progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
        log: Callable[[str], None] = lambda msg: None,
    ):
        self.config = config
        self.data_dir = Path(data_dir if data_dir is not None else config.store.data_dir)
        self.batch_size = batch_size
        self.workers = workers or os.cpu_count() or 1
        self.from_stage = from_stage
        self.annotate = annotate
        self.allow_failed_gates = allow_failed_gates
        self.progress = progress or (lambda name, total: (lambda n: None))
        self.log = log
        self.store = VersionStore(self.data_dir)
        self.run_dir = self.data_dir / "runs" / config.dataset
        names = [cls.name for cls, _ in stage_plan(config, annotate)]
        if from_stage is not None and from_stage not in names:
            raise UserError(f"--from {from_stage!r}: no such stage (stages: {', '.join(names)})")

    # -- the run --------------------------------------------------------------------------------------------

    def run(self, tag: str | None = None) -> RunResult:
        # One run of a dataset at a time: a second one is told so at once rather than racing for the
        # stage folders and the next version number.
        if self.workers > 1:
            start_worker_server()
        with self.store.lock(self.config.dataset):
            self.store.clean_stale(self.config.dataset)
            for stale in self.run_dir.glob("*/*.tmp-*"):  # outputs of runs killed midway: never trusted
                shutil.rmtree(stale, ignore_errors=True)
            return self._run(tag)

    def _run(self, tag: str | None) -> RunResult:
        dataset = self.config.dataset
        parent = self.store.latest(dataset)
        previous_splits = self.store.splits_of(dataset, parent) if parent else None
        code = code_version()
        upstream = ""
        inputs: ParquetInput | None = None
        reports: list[StageReport] = []
        forced = False
        input_files: list[dict] = []
        for index, (cls, section) in enumerate(stage_plan(self.config, self.annotate)):
            forced = forced or cls.name == self.from_stage
            ctx = StageContext(dataset=dataset, config_dir=self.config.config_dir, work_dir=Path(),
                               batch_size=self.batch_size, workers=self.workers, previous_splits=previous_splits,
                               labels=self.config.labels)
            stage = cls(section, ctx)
            fp = _hash(upstream, cls.name, json.dumps(section.model_dump(mode="json"), sort_keys=True),
                       json.dumps(self.config.labels), code, stage.fingerprint_inputs())
            if cls.name == "collect":
                input_files = stage.stats.get("inputs", [])
            folder = self.run_dir / "stages" / f"{index:02d}-{cls.name}-{fp[:16]}"
            report = None if forced else self._cached(cls.name, fp, folder)
            if report is None:
                report = self._execute(stage, inputs, fp, folder)
            reports.append(report)
            upstream = fp
            inputs = ParquetInput(sorted(folder.glob("part-*.parquet")), self.batch_size)
        self._check_accounting(reports)
        if reports[-1].rows_out == 0:
            reasons = {}
            for r in reports:
                for k, v in r.dropped.items():
                    reasons[f"{r.name}: {k}"] = v
            top = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3]) or "the sources are empty"
            raise UserError(f"nothing to publish: {reports[0].rows_in} rows read, none left — {top}; "
                            f"rejected rows are under {self.run_dir / 'stages'}")
        return self._publish(reports, upstream, parent, input_files, code, tag)

    def _cached(self, name: str, fp: str, folder: Path) -> StageReport | None:
        stats_file = folder / "stats.json"
        if not stats_file.is_file():
            return None
        data = json.loads(stats_file.read_text())
        self.log(f"{name}: unchanged since an earlier run, reusing {folder}")
        return StageReport(name=name, fingerprint=fp, folder=folder, rows_in=data["rows_in"], rows_out=data["rows_out"],
                           dropped=data["dropped"], seconds=data["seconds"], cached=True, stats=data["stats"])

    def _execute(self, stage: Stage, inputs: ParquetInput | None, fp: str, folder: Path) -> StageReport:
        tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        stage.ctx.work_dir = tmp
        rows_in = inputs.num_rows if inputs is not None else None
        stage.ctx.progress = self.progress(stage.name, rows_in)
        kept = _Writer(tmp / "part-00000.parquet", stage.output_schema, f"stage {stage.name}")
        rejected = _Writer(tmp / "rejected.parquet", schemas.REJECTED, f"stage {stage.name} (rejected rows)")
        dropped: dict[str, int] = {}
        start = time.perf_counter()
        try:
            for out in self._outputs(stage, inputs):
                kept.write(out.kept)
                if out.rejected is not None and out.rejected.num_rows:
                    rejected.write(out.rejected)
                    for reason, n in _value_counts(out.rejected.column("reason")):
                        dropped[reason] = dropped.get(reason, 0) + n
        except BaseException:
            # A stage that stops (an error, or a pause waiting on annotators) leaves nothing half-written.
            kept.close()
            rejected.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        kept.close()
        rejected.close()
        seconds = time.perf_counter() - start
        if rows_in is None:  # a source stage: its input is what it read
            rows_in = kept.rows + rejected.rows
        report = StageReport(name=stage.name, fingerprint=fp, folder=folder, rows_in=rows_in, rows_out=kept.rows,
                             dropped=dict(sorted(dropped.items(), key=lambda kv: -kv[1])), seconds=seconds,
                             cached=False, stats=_jsonable(stage.stats))
        (tmp / "stats.json").write_text(json.dumps({k: v for k, v in report.as_dict().items()}, indent=2, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(tmp, folder)  # only a complete output ever carries the final name
        return report

    def _outputs(self, stage: Stage, inputs: ParquetInput | None) -> Iterator[StageOutput]:
        """Where a stage's output stream comes from: here, the stage itself in this process. The Ray
        executor (pipeline/ray_executor.py) overrides this to run row-wise stages on an actor pool."""
        return stage.run(inputs)

    def _check_accounting(self, reports: list[StageReport]) -> None:
        for prev, cur in zip([None, *reports], reports):
            if prev is not None and cur.rows_in != prev.rows_out:
                raise RuntimeError(f"accounting: {cur.name} read {cur.rows_in} rows but {prev.name} kept {prev.rows_out}")
            if cur.rows_in != cur.rows_out + sum(cur.dropped.values()):
                raise RuntimeError(f"accounting: {cur.name} read {cur.rows_in} rows, kept {cur.rows_out}, "
                                   f"rejected {sum(cur.dropped.values())}")

    # -- candidate and publication --------------------------------------------------------------------------

    def _publish(self, reports, fingerprint, parent, input_files, code, tag) -> RunResult:
        candidate = self.run_dir / "candidates" / fingerprint[:16]
        tmp = candidate.with_name(candidate.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        split_counts = self._write_splits(reports[-1].folder, tmp)
        rejected_rows = self._write_rejected(reports, tmp)
        annotation_stats = next((r.stats for r in reports if r.name == annotate.AnnotateStage.name), None)
        if annotation_stats is not None:
            (tmp / "annotations").mkdir()
            annotate_folder = next(r.folder for r in reports if r.name == annotate.AnnotateStage.name)
            for name in annotate.VERSION_FILES:
                if (annotate_folder / name).exists():
                    shutil.copy2(annotate_folder / name, tmp / "annotations" / name)
            annotation = annotate.manifest_summary(annotation_stats)
        else:
            annotation = annotate.manifest_summary(
                None, None if self.config.annotate is None else "run with --no-annotate")
        content = content_fingerprint(tmp)
        manifest = {
            "dataset": self.config.dataset,
            "description": self.config.description,
            "parent_version": parent,
            "config": self.config.resolved(),
            "config_hash": self.config.config_hash(),
            "code_version": code,
            "labels": self.config.labels,
            "label_origin": "source labels and human annotation" if annotation_stats is not None else "source labels only",
            "annotation": annotation,
            "inputs": input_files,
            "rows_in": reports[0].rows_in,
            "stages": [r.as_dict() for r in reports],
            "splits": split_counts,
            "rejected": {"rows": rejected_rows, "by_stage_reason": {r.name: r.dropped for r in reports if r.dropped}},
            "content_fingerprint": content,
        }
        _write_json(tmp / "manifest.json", manifest)
        shutil.rmtree(candidate, ignore_errors=True)
        os.rename(tmp, candidate)

        identical = self.store.find(self.config.dataset, content, manifest["config_hash"])
        if identical is not None:
            return RunResult(self.config.dataset, identical, False, reports, manifest, candidate)

        # The gate: evidence that the candidate is good, written into it, before anything is published.
        # The run holds the dataset's lock, so the number this candidate will get is already known.
        manifest["version"] = self.store.next_version(self.config.dataset)
        _write_json(candidate / "manifest.json", manifest)
        parent_dir = self.store.path(self.config.dataset, parent) if parent else None
        evaluation = evaluate.evaluate_candidate(candidate, self.config.evaluate, self.config, parent_dir)
        manifest["evaluation"] = evaluation.summary
        manifest["gates"] = "passed" if evaluation.passed else "failed-gates"
        _write_json(candidate / "manifest.json", manifest)
        if not evaluation.passed and not self.allow_failed_gates:
            result = RunResult(self.config.dataset, None, False, reports, manifest, candidate, evaluation)
            raise GateFailed(f"{len(evaluation.blocking_failures)} blocking quality check(s) failed; nothing published "
                             f"(the candidate is at {candidate}; --allow-failed-gates publishes it marked failed-gates)",
                             result)
        version = self.store.publish(self.config.dataset, candidate, manifest, tag=tag, locked=True)
        return RunResult(self.config.dataset, version, True, reports, self.store.manifest(self.config.dataset, version),
                         candidate, evaluation)

    def _write_splits(self, split_folder: Path, out: Path) -> dict[str, Any]:
        writers = {s: _Writer(out / f"{s}.parquet", schemas.SPLIT, f"split {s}") for s in schemas.SPLITS}
        labels: dict[str, dict[str, int]] = {s: {} for s in schemas.SPLITS}
        for batch in ParquetInput(sorted(split_folder.glob("part-*.parquet")), self.batch_size).batches():
            column = batch.column("split")
            for s in schemas.SPLITS:
                part = batch.filter(pc.equal(column, s))
                if part.num_rows:
                    writers[s].write(part)
                    for lab, n in _value_counts(part.column("label")):
                        key = "(none)" if lab is None else lab
                        labels[s][key] = labels[s].get(key, 0) + n
        for w in writers.values():
            w.close()
        return {s: {"rows": writers[s].rows, "labels": dict(sorted(labels[s].items()))} for s in schemas.SPLITS}

    def _write_rejected(self, reports: list[StageReport], out: Path) -> int:
        writer = _Writer(out / "rejected.parquet", schemas.REJECTED, "rejected rows")
        for r in reports:
            path = r.folder / "rejected.parquet"
            if path.exists():
                for batch in pq.ParquetFile(path).iter_batches(batch_size=self.batch_size):
                    writer.write(batch)
        writer.close()
        return writer.rows


def content_fingerprint(folder: Path, batch_size: int = 65_536) -> str:
    """A hash of what a version holds, independent of row order, batch size and file layout.

    Streamed: each row is hashed (its id makes it unique) batch by batch, and the sorted row hashes are
    hashed — 8 bytes per row in memory, where sorting whole splits as pandas took ~3 GB at 1M rows."""
    h = hashlib.sha256()
    for name, columns in [*((s, ["id", "text", "label", "split"]) for s in schemas.SPLITS),
                          ("rejected", ["id", "stage", "reason"])]:
        row_hashes = [np.zeros(0, np.uint64)]
        for batch in pq.ParquetFile(folder / f"{name}.parquet").iter_batches(batch_size=batch_size, columns=columns):
            frame = batch.to_pandas()
            row_hashes.append(pd.util.hash_pandas_object(frame, index=False).to_numpy())
        hashes = np.sort(np.concatenate(row_hashes))
        h.update(f"{name}:{len(hashes)}\n".encode())
        h.update(hashes.tobytes())
    return h.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def _value_counts(values: pa.Array) -> list[tuple[Any, int]]:
    counts = pc.value_counts(values)
    return list(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
