"""A project: the registered stages in order, the quality gate, and the config sections that are not stages.

The composition root (`pipeline/cli/project.py`) builds one from `stages.STAGES`, the evaluate package's
gate and `train:`'s section; everything else receives it. From it come the dataset config's model (composed
from the registered sections), and for a loaded config the *plan*: the stages that run, each with its
section and the schemas of its input and output (the record kind's envelope and payload plus what the
stages before it added), and the optional stages that do not run, with why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
from pydantic import BaseModel, Field

from pipeline import config as config_module
from pipeline.config import DatasetConfig, Section, compose, parse_config
from pipeline.errors import UserError
from pipeline.gate import Gate
from pipeline.stage import Stage
from schemas.record import RecordKind


@dataclass(frozen=True)
class Step:
    """One stage of a plan: the class, its config section, and the schemas at its two boundaries."""

    stage: type[Stage]
    section: BaseModel
    input_schema: pa.Schema | None  # None: a source stage
    output_schema: pa.Schema

    @property
    def name(self) -> str:
        return self.stage.name


@dataclass(frozen=True)
class Plan:
    kind: RecordKind
    steps: tuple[Step, ...]
    skipped: tuple[tuple[type[Stage], str], ...] = ()  # optional stages that do not run, and why

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    @property
    def published_schema(self) -> pa.Schema:
        return self.steps[-1].output_schema


@dataclass(frozen=True)
class Project:
    stages: tuple[type[Stage], ...]
    gate: Gate | None = None
    sections: tuple[Section, ...] = ()
    config_model: type[DatasetConfig] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"two stages share a name: {names}")
        fields: dict[str, tuple[Any, Any]] = {}
        for stage in self.stages:
            fields.update(stage.config_fields())
        if self.gate is not None:
            fields[self.gate.config_key] = (self.gate.Config, Field(default_factory=self.gate.Config))
        object.__setattr__(self, "config_model", compose(fields, self.sections, self))

    # -- configs ----------------------------------------------------------------------------------------

    def load_config(self, path: str | Path, check_sources: bool = True, skip: Iterable[str] = ()) -> DatasetConfig:
        """Read and validate a config; with `check_sources`, also let each stage check what its section
        names on disk (collect: the files exist and hold the fields the config names), except the stages
        in `skip` (a run with `--no-annotate` does not refuse an annotate section it will not use)."""
        config = parse_config(path, self.config_model)
        skip = set(skip)
        if check_sources:
            for stage in self.stages:
                if stage.name in skip:
                    continue
                section = stage.section(config)
                if section is not None:
                    try:
                        stage.check_section(section, config.config_dir, config)
                    except UserError as exc:
                        raise UserError(f"{path}: {exc}") from None
        return config

    def install(self) -> "Project":
        """Make this the project `pipeline.config.load_config` reads configs with."""
        config_module.install(self)
        return self

    # -- plans ----------------------------------------------------------------------------------------------

    def plan(self, config: DatasetConfig, skip: Mapping[str, str] | None = None) -> Plan:
        """The stages `config` runs, in order. `skip`: optional stages not to run, with why (the CLI's
        `--no-annotate` gives {"annotate": "run with --no-annotate"})."""
        skip = dict(skip or {})
        unknown = [n for n in skip if n not in {s.name for s in self.stages if s.optional}]
        if unknown:
            optional = ", ".join(s.name for s in self.stages if s.optional) or "none"
            raise UserError(f"cannot skip {', '.join(unknown)}: only optional stages can be skipped ({optional})")
        kind = config.record_kind
        steps, skipped, added = [], [], []
        upstream: pa.Schema | None = None
        for stage in self.stages:
            section = stage.section(config)
            if stage.optional and section is None:
                skipped.append((stage, f"no {stage.key()} section"))
                continue
            if stage.name in skip:
                skipped.append((stage, skip[stage.name]))
                continue
            why_not = stage.unsupported(kind)
            if why_not:
                raise UserError(f"{stage.key()}: {why_not}")
            available = kind.schema(*added).names
            missing = [c for c in stage.needs if c not in available]
            if missing:
                raise UserError(f"stage {stage.name} needs column(s) {', '.join(missing)}, which no stage before it "
                                f"adds (plan: {', '.join(s.name for s in steps) or 'nothing'} before it)")
            added.extend(stage.adds)
            output = kind.schema(*added)
            steps.append(Step(stage, section, upstream, output))
            upstream = output
        return Plan(kind, tuple(steps), tuple(skipped))
