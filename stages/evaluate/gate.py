"""The gate's orchestration: read the candidate, run every check, turn their bounds and the per-split rules
into Great Expectations suites, write the evidence and the report, say whether publication may go on.

Adding a check: a module in this package with `check(candidate, config) -> CheckResult` (its summary
block, the figures it adds to the dataset-level table with their bounds, evidence for the report), one
line in `CHECK_MODULES` below, and its name in `config.CHECKS`.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa

import schemas
from pipeline.gate import GateRequest
from pipeline.memory import release_memory
from schemas.summaries import Summaries
from stages.evaluate import (agreement, decontamination, label_conflicts, label_noise, leakage, refusals,
                             rejected_share, split_overlap)
from stages.evaluate.candidate import read_candidate
from stages.evaluate.config import Config
from stages.evaluate.evidence import LABEL_ISSUES_FILE, QUALITY_DIR, REPORT_FILE, SUMMARY_FILE, jsonable
from stages.evaluate import report_records
from stages.evaluate.expectations import Validation, dataset_expectations, metrics_frame, split_expectations, with_views
from stages.evaluate.report import no_mathtext, write_report
from stages.evaluate.result import CheckResult, EvaluationResult

# The dataset-level checks, in the order their figures and expectations appear.
CHECK_MODULES = (split_overlap, leakage, label_noise, label_conflicts, agreement, refusals, decontamination,
                 rejected_share)


def evaluate_candidate(
    candidate_dir: Path,
    config: Config,
    dataset_config: Any,
    previous_version_dir: Path | None = None,
    summaries: Summaries | None = None,
    schema: pa.Schema | None = None,
) -> EvaluationResult:
    """Check the candidate version in `candidate_dir`; write `quality/`, `label_issues.parquet`,
    `report.html` into it and return whether every blocking expectation passed.

    `dataset_config` names the dataset and its labels (`.dataset`, `.labels`; the manifest's otherwise).
    `previous_version_dir` is the parent version's folder, for the leakage check against its test split.
    `summaries` are what the run's stages handed on (dedupe's clusters and similarity, clean's rules,
    annotate's agreement); `schema` is the published rows' schema (the classification kind's by default).
    """
    t0 = time.perf_counter()
    candidate_dir = Path(candidate_dir)
    if not config.enabled:
        return EvaluationResult(passed=True, failures=[], summary={
            "passed": True, "status": "not evaluated", "skipped": "evaluate.enabled is false in the config"})
    quality = candidate_dir / QUALITY_DIR
    quality.mkdir(parents=True, exist_ok=True)
    candidate = read_candidate(candidate_dir, getattr(dataset_config, "dataset", None),
                               getattr(dataset_config, "labels", None), previous_version_dir, summaries, schema,
                               getattr(dataset_config, "kind", None), getattr(dataset_config, "config_dir", None))

    timings: dict[str, float] = {}
    rows = sum(candidate.num_rows(split) for split in schemas.SPLITS)
    release_memory(rows)  # what the run's stages freed but their allocators kept: the gate's peak comes on top
    # The split suites first, one split at a time, while the process holds least: a split's frame and GE's
    # metrics over it are the largest thing the gate holds.
    t = time.perf_counter()
    validation = Validation(candidate.dataset, quality)
    languages = config.allowed_languages or candidate.default_languages()
    for split in schemas.SPLITS:
        frame = with_views(split, candidate.frame(split), candidate, config)
        validation.validate(split, frame, split_expectations(split, frame, candidate.labels, languages, config,
                                                             candidate.schema, candidate))
        del frame
        release_memory(rows)
    timings["expectations"] = time.perf_counter() - t

    checks: dict[str, CheckResult] = {}
    for module in CHECK_MODULES:
        t = time.perf_counter()
        result = module.check(candidate, config)
        timings[result.name] = round(time.perf_counter() - t, 3)
        checks[result.name] = result
        candidate.release()  # whole frames a check loaded
        release_memory(rows)
    metrics = {k: v for c in checks.values() for k, v in c.metrics.items()}
    bounds = [b for c in checks.values() for b in c.bounds]

    t = time.perf_counter()
    validation.validate("dataset", metrics_frame(metrics), dataset_expectations(bounds, config))
    ge = validation.finish()
    timings["expectations"] = round(timings["expectations"] + time.perf_counter() - t, 3)
    failures = ge["failures"]

    passed = not any(f.blocking for f in failures)
    summary: dict[str, Any] = {
        "passed": passed,
        "status": "passed" if passed else "failed-gates",
        "blocking_failures": sum(f.blocking for f in failures),
        "warnings": sum(not f.blocking for f in failures),
        "failures": [jsonable(asdict(f)) for f in failures],
        "expectations": ge["counts"],
        "metrics": jsonable(metrics),
        **{name: c.summary for name, c in checks.items()},
        "files": {
            "report": REPORT_FILE,
            "label_issues": LABEL_ISSUES_FILE,
            "leakage": f"{QUALITY_DIR}/leakage.parquet",
            "suites": ge["suite_files"],  # one JSON file, suite per scope
            "results": ge["result_files"],  # one JSON file, validation result per scope
            "pages": ge["page_files"],  # scope → GE's rendered page
        },
        "seconds": timings,
    }
    result = EvaluationResult(passed=passed, failures=failures, summary=summary,
                              report_path=candidate_dir / REPORT_FILE, candidate=candidate, checks=checks,
                              results_table=ge["results_table"], config=config)
    t = time.perf_counter()
    with no_mathtext():  # the kind's sections draw data strings too
        write_report(result.report_path, result, *report_records.sections(result))
    timings["report"] = round(time.perf_counter() - t, 3)
    timings["total"] = round(time.perf_counter() - t0, 3)
    result.summary = jsonable(summary)
    (quality / SUMMARY_FILE).write_text(json.dumps(result.summary, indent=2, ensure_ascii=False))
    return result


class QualityGate:
    """The gate the executor is given (`pipeline.gate.Gate`): its config section, where its summary goes in
    the manifest, and the check itself."""

    config_key = "evaluate"
    Config = Config
    manifest_key = "evaluation"

    def check(self, section: Config, request: GateRequest) -> EvaluationResult:
        return evaluate_candidate(request.folder, section, request, request.parent, request.summaries, request.schema)
