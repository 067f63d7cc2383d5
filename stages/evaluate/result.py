"""What the gate returns and what each check hands the gate: one result object the report draws from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Bound:
    """A dataset-level figure a check bounds: it becomes a Great Expectations expectation on the one-row
    table of figures (`<dataset>.dataset`), blocking unless the config lists the check in `non_blocking`."""

    check: str  # one of config.CHECKS
    column: str  # the figure's name in the table
    min_value: float | None = None
    max_value: float | None = None
    details: str = ""  # what was measured, in words: the failure's message when the bound is not met


@dataclass
class CheckResult:
    """One check's outcome: its block of the gate summary (JSON-ready), the figures it adds to the
    dataset-level table, their bounds, and in-memory evidence for the report (not stored)."""

    name: str  # its key in the summary
    summary: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    bounds: list[Bound] = field(default_factory=list)
    evidence: Any = None


@dataclass
class Failure:
    """One failed expectation."""

    check: str  # one of CHECKS, or "user"
    expectation: str  # GE expectation type
    split: str  # train / validation / test, or "dataset" for the dataset-level suite
    column: str | None
    observed: Any  # the observed value (share, count, figure) or the error message
    expected: str  # the bound, in words
    blocking: bool
    details: str = ""

    def __str__(self) -> str:
        where = f"{self.split}" + (f".{self.column}" if self.column else "")
        kind = "BLOCKING" if self.blocking else "warning"
        extra = f" ({self.details})" if self.details else ""
        # No square brackets: rich would read "[check]" as markup and swallow it.
        return f"{kind} {self.check}: {self.expectation} on {where}: observed {_fmt(self.observed)}, expected {self.expected}{extra}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@dataclass
class EvaluationResult:
    passed: bool  # no blocking expectation failed
    failures: list[Failure]  # every failed expectation, blocking or not
    summary: dict[str, Any]  # JSON-ready; the executor stores it in the manifest under `evaluation`
    report_path: Path | None = None
    # What the report is drawn from (in memory, not stored): the candidate, each check's result, the table
    # of every expectation result, and the config.
    candidate: Any = None  # stages.evaluate.candidate.Candidate
    checks: dict[str, CheckResult] = field(default_factory=dict)
    results_table: list[dict[str, Any]] = field(default_factory=list)
    config: Any = None  # stages.evaluate.config.Config

    @property
    def blocking_failures(self) -> list[Failure]:
        return [f for f in self.failures if f.blocking]

    @property
    def warnings(self) -> list[Failure]:
        return [f for f in self.failures if not f.blocking]
