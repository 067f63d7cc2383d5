"""The local executor: runs a project's plan in order and publishes a version.

Each stage's output is written under the run folder `<data_dir>/runs/<dataset>/stages/` in a folder named
by a fingerprint of (upstream fingerprint, the stage's config section, the labels and record kind, the
stage's code fingerprint, the stage's own inputs such as file hashes). A folder is written under a
temporary name and renamed when complete, so a later run trusts only whole outputs and resumes from the
first stage whose fingerprint changed. With it the stage's `stats.json` keeps its counts and its typed
summary, which a reused stage hands on exactly as a fresh run would.

The executor never names a stage: it gets the plan (stages, sections, boundary schemas, skipped optional
stages) and the gate from the config's project (`pipeline.project`), writes the candidate version
(`pipeline.candidate`), hands the gate the candidate and every summary, and publishes through the store.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc

import schemas
from pipeline import candidate as candidates
from pipeline.config import DatasetConfig
from pipeline.errors import PipelinePaused, UserError, is_user_os_error, os_error_message
from pipeline.fingerprint import code_fingerprint
from pipeline.gate import GateRequest
from pipeline.memory import release_memory
from pipeline.project import Plan, Project, Step
from pipeline.stage import Stage, StageContext, StageOutput
from pipeline.stage_io import BoundaryWriter, ParquetInput
from pipeline.store import VersionStore
from pipeline.workers import start_worker_server
from schemas.summaries import Summaries, Summary


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
    code: str = ""  # the stage's code fingerprint
    summary: Summary | None = None  # what it handed on (its class's summary_type)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint, "code": self.code, "rows_in": self.rows_in,
                "rows_out": self.rows_out, "dropped": self.dropped, "seconds": round(self.seconds, 3),
                "rows_per_second": round(self.rows_in / self.seconds, 1) if self.seconds > 0 else None,
                "stats": self.stats, "notes": self.summary.notes() if self.summary is not None else []}


@dataclass
class RunResult:
    dataset: str
    version: str | None  # the version published, or the identical one already there; None if gated
    published: bool
    stages: list[StageReport]
    manifest: dict[str, Any]
    candidate: Path
    evaluation: Any = None  # the gate's result (pipeline.gate.GateResult), when the gate ran
    summaries: Summaries = field(default_factory=Summaries)


class GateFailed(UserError):
    """A blocking quality expectation failed: the candidate was not published."""

    def __init__(self, message: str, result: RunResult):
        super().__init__(message)
        self.result = result


class LocalExecutor:
    """Runs the plan of `config`'s project in this process (and worker processes for the stages' CPU work).

    `skip`: optional stages not to run, with why ({"annotate": "run with --no-annotate"}); `from_stage`:
    re-run this stage and the ones after it even if unchanged.
    """

    def __init__(
        self,
        config: DatasetConfig,
        data_dir: Path | None = None,
        batch_size: int = 10_000,
        workers: int | None = None,
        from_stage: str | None = None,
        skip: Mapping[str, str] | None = None,
        allow_failed_gates: bool = False,
        progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
        log: Callable[[str], None] = lambda msg: None,
        project: Project | None = None,
    ):
        self.config = config
        self.project: Project = project or type(config).project
        if self.project is None:
            raise ValueError("the config was not loaded through a project (pipeline.project.Project.load_config)")
        self.data_dir = Path(data_dir if data_dir is not None else config.store.data_dir)
        self.batch_size = batch_size
        self.workers = workers or os.cpu_count() or 1
        self.from_stage = from_stage
        self.allow_failed_gates = allow_failed_gates
        self.progress = progress or (lambda name, total: (lambda n: None))
        self.log = log
        self.store = VersionStore(self.data_dir)
        self.run_dir = self.data_dir / "runs" / config.dataset
        self.plan: Plan = self.project.plan(config, skip)
        if from_stage is not None and from_stage not in self.plan.names:
            raise UserError(f"--from {from_stage!r}: no such stage (stages: {', '.join(self.plan.names)})")

    # -- the run --------------------------------------------------------------------------------------------

    def run(self, tag: str | None = None) -> RunResult:
        # One run of a dataset at a time: a second one is told so at once rather than racing for the
        # stage folders and the next version number.
        self.store.check_writable()
        if self.workers > 1:
            start_worker_server()
        try:
            with self.store.lock(self.config.dataset):
                self.store.clean_stale(self.config.dataset)
                for stale in self.run_dir.glob("*/*.tmp-*"):  # outputs of runs killed midway: never trusted
                    shutil.rmtree(stale, ignore_errors=True)
                return self._run(tag)
        except (OSError, shutil.Error) as exc:
            # A full disk, a read-only or unwritable data folder: the user's to fix, said in one line naming
            # the path. (A stage's half-written output was removed by `_execute`; nothing was published.)
            if not is_user_os_error(exc):
                raise
            for partial in self.run_dir.glob(f"*/*.tmp-{os.getpid()}"):  # free what this run half-wrote
                shutil.rmtree(partial, ignore_errors=True)
            raise UserError(os_error_message(exc, where=self.data_dir)) from None

    def _run(self, tag: str | None) -> RunResult:
        dataset = self.config.dataset
        parent = self.store.latest(dataset)
        if parent is not None:  # its splits decide this version's: it must be what was published
            self.store.check_intact(dataset, parent, "used as the parent of a new version")
        previous_splits = self.store.splits_of(dataset, parent) if parent else None
        upstream = ""
        inputs: ParquetInput | None = None
        reports: list[StageReport] = []
        forced = False
        for index, step in enumerate(self.plan.steps):
            cls = step.stage
            forced = forced or cls.name == self.from_stage
            ctx = StageContext(dataset=dataset, config_dir=self.config.config_dir, work_dir=Path(),
                               batch_size=self.batch_size, workers=self.workers, previous_splits=previous_splits,
                               labels=self.config.labels, kind=self.plan.kind)
            stage = cls(step.section, ctx)
            code = code_fingerprint(cls.__module__)
            fp = _hash(upstream, cls.name, json.dumps(step.section.model_dump(mode="json"), sort_keys=True),
                       json.dumps(self.config.labels), self.config.kind, code, stage.fingerprint_inputs())
            folder = self.run_dir / "stages" / f"{index:02d}-{cls.name}-{fp[:16]}"
            report = None if forced else self._cached(cls, fp, folder, code)
            if report is None:
                try:
                    report = self._execute(stage, step, inputs, fp, folder, code)
                except PipelinePaused as paused:
                    paused.stages = list(reports)  # the funnel so far: the stages finished before it
                    raise
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
        return self._publish(reports, upstream, parent, tag)

    def _cached(self, cls: type[Stage], fp: str, folder: Path, code: str) -> StageReport | None:
        stats_file = folder / "stats.json"
        if not stats_file.is_file():
            return None
        data = json.loads(stats_file.read_text())
        summary = None
        if cls.summary_type is not None:
            if data.get("summary") is None:
                return None  # written without the summary this stage hands on: not a usable output
            summary = cls.summary_type.model_validate(data["summary"])
        self.log(f"{cls.name}: unchanged since an earlier run, reusing {folder}")
        return StageReport(name=cls.name, fingerprint=fp, folder=folder, rows_in=data["rows_in"], rows_out=data["rows_out"],
                           dropped=data["dropped"], seconds=data["seconds"], cached=True, stats=data["stats"], code=code,
                           summary=summary)

    def _execute(self, stage: Stage, step: Step, inputs: ParquetInput | None, fp: str, folder: Path,
                 code: str) -> StageReport:
        tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        stage.ctx.work_dir = tmp
        rows_in = inputs.num_rows if inputs is not None else None
        stage.ctx.progress = self.progress(stage.name, rows_in)
        kept = BoundaryWriter(tmp / "part-00000.parquet", step.output_schema, f"stage {stage.name}")
        rejected = BoundaryWriter(tmp / "rejected.parquet", self.plan.kind.rejected_schema,
                                  f"stage {stage.name} (rejected rows)")
        dropped: dict[str, int] = {}
        start = time.perf_counter()
        try:
            stage.prepare(inputs)  # on the whole input, here, before any worker gets a part of it
            for out in self._outputs(stage, inputs):
                kept.write(out.kept)
                if out.rejected is not None and out.rejected.num_rows:
                    rejected.write(out.rejected)
                    for reason, n in _value_counts(out.rejected.column("reason")):
                        dropped[reason] = dropped.get(reason, 0) + n
            seconds = time.perf_counter() - start
            # Inside the guard: a stage may find, summing up, that its output must not be kept (collect: an
            # input changed while it was read).
            summary = stage.summarize()
        except BaseException:
            # A stage that stops (an error, or a pause waiting on annotators) leaves nothing half-written.
            kept.close()
            rejected.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        kept.close()
        rejected.close()
        # What a whole-stream stage freed (label_noise: a million texts as Python strings) stays in glibc's heap
        # and Arrow's pool, and the next stage's peak would sit on top of it (1M rows: 1.7 GB held into dedupe).
        if rows_in is None:  # a source stage: its input is what it read
            rows_in = kept.rows + rejected.rows
        release_memory(rows_in)
        report = StageReport(name=stage.name, fingerprint=fp, folder=folder, rows_in=rows_in, rows_out=kept.rows,
                             dropped=dict(sorted(dropped.items(), key=lambda kv: -kv[1])), seconds=seconds,
                             cached=False, stats=_jsonable(stage.stats), code=code, summary=summary)
        record = {**report.as_dict(), "summary": summary.model_dump(mode="json") if summary is not None else None}
        (tmp / "stats.json").write_text(json.dumps(record, indent=2, default=str))
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

    def code_version(self) -> str:
        """The code fingerprint of everything that decides the version: every stage of the plan and the gate."""
        modules = [s.stage.__module__ for s in self.plan.steps]
        if self.project.gate is not None:
            modules.append(type(self.project.gate).__module__)
        return code_fingerprint(*modules)

    def _publish(self, reports: list[StageReport], fingerprint: str, parent: str | None, tag: str | None) -> RunResult:
        config, plan, dataset = self.config, self.plan, self.config.dataset
        summaries = Summaries(r.summary for r in reports if r.summary is not None)
        candidate = self.run_dir / "candidates" / fingerprint[:16]
        tmp = candidate.with_name(candidate.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        split_counts = candidates.write_splits(reports[-1].folder, tmp, plan.published_schema, plan.kind.label_field,
                                               self.batch_size)
        rejected_rows = candidates.write_rejected([r.folder for r in reports], tmp, self.batch_size,
                                                  plan.kind.rejected_schema)
        contributed: dict[str, Any] = {}
        for step, report in zip(plan.steps, reports):
            candidates.copy_version_files(step.stage, report.folder, tmp)
            contributed.update(step.stage.manifest_entries(report.summary, None))
        for stage, why in plan.skipped:
            contributed.update(stage.manifest_entries(None, why))
        content = candidates.content_fingerprint_of(tmp)
        manifest = {
            "dataset": dataset,
            "kind": plan.kind.name,  # the record kind: what a row holds (train reads it)
            "description": config.description,
            "parent_version": parent,
            "config": config.resolved(),
            "config_hash": config.config_hash(),
            "code_version": self.code_version(),
            "labels": config.labels,
            **contributed,
            "rows_in": reports[0].rows_in,
            "stages": [r.as_dict() for r in reports],
            "splits": split_counts,
            "rejected": {"rows": rejected_rows, "by_stage_reason": {r.name: r.dropped for r in reports if r.dropped}},
            "content_fingerprint": content,
        }
        candidates.write_json(tmp / "manifest.json", manifest)
        shutil.rmtree(candidate, ignore_errors=True)
        os.rename(tmp, candidate)

        identical = self.store.find(dataset, content, manifest["config_hash"])
        if identical is not None:
            self.store.check_intact(dataset, identical, "named identical to this run's output")
            return RunResult(dataset, identical, False, reports, manifest, candidate, summaries=summaries)

        # The gate: evidence that the candidate is good, written into it, before anything is published.
        # The run holds the dataset's lock, so the number this candidate will get is already known.
        manifest["version"] = self.store.next_version(dataset)
        candidates.write_json(candidate / "manifest.json", manifest)
        evaluation = None
        gate = self.project.gate
        if gate is not None:
            request = GateRequest(folder=candidate, dataset=dataset, labels=config.labels, kind=plan.kind,
                                  schema=plan.published_schema,
                                  parent=self.store.path(dataset, parent) if parent else None, summaries=summaries,
                                  config_dir=config.config_dir)
            evaluation = gate.check(config.section(gate.config_key), request)
            manifest[gate.manifest_key] = evaluation.summary
            manifest["gates"] = "passed" if evaluation.passed else "failed-gates"
            candidates.write_json(candidate / "manifest.json", manifest)
            if not evaluation.passed and not self.allow_failed_gates:
                result = RunResult(dataset, None, False, reports, manifest, candidate, evaluation, summaries)
                raise GateFailed(f"{len(evaluation.blocking_failures)} blocking quality check(s) failed; nothing published "
                                 f"(the candidate is at {candidate}; --allow-failed-gates publishes it marked failed-gates)",
                                 result)
        version = self.store.publish(dataset, candidate, manifest, tag=tag, locked=True)
        return RunResult(dataset, version, True, reports, self.store.manifest(dataset, version), candidate, evaluation,
                         summaries)


def _value_counts(values: pa.Array) -> list[tuple[Any, int]]:
    counts = pc.value_counts(values)
    return list(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
