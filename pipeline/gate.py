"""The quality gate's contract: what the executor hands the gate it was given, and what it gets back.

The executor never imports a gate: the project (`pipeline.project.Project`) is composed with one, and the
executor calls it with the candidate folder it wrote and every typed summary of the run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from pydantic import BaseModel

from schemas.record import RecordKind
from schemas.summaries import Summaries


@dataclass(frozen=True)
class GateRequest:
    """A candidate version, as the executor built it."""

    folder: Path  # train / validation / test / rejected Parquet files and manifest.json
    dataset: str
    labels: list[str] | None
    kind: RecordKind
    schema: pa.Schema  # the published rows' schema (the last boundary of the plan)
    parent: Path | None  # the parent version's folder, if there is one
    summaries: Summaries  # every stage summary of the run, by type
    config_dir: Path | None = None  # where the config's relative paths start (eval sets the gate re-reads)


class GateResult(Protocol):
    passed: bool  # no blocking check failed
    summary: dict[str, Any]  # JSON-ready; stored in the manifest under the gate's `manifest_key`

    @property
    def blocking_failures(self) -> list[Any]: ...


class Gate(Protocol):
    config_key: str  # its section of the dataset config
    Config: type[BaseModel]
    manifest_key: str  # where its summary goes in the manifest

    def check(self, section: BaseModel, request: GateRequest) -> GateResult: ...
