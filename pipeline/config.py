"""The dataset config: one YAML file per dataset, validated before any work starts.

Every section is a pydantic model with unknown keys forbidden, so a typo is an error naming the key. The
stage sections are declared by the stages themselves (`stages.<name>.Config`); this module only composes
them. Relative paths in a config are resolved against the config file's folder.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import UserError
from stages import annotate as annotate_stage
from stages import clean as clean_stage
from stages import collect as collect_stage
from stages import dedupe as dedupe_stage
from stages import evaluate as evaluate_stage
from stages import split as split_stage
from train import config as train_config


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Where versions and run folders go; relative to the working directory unless absolute. The CLI's
    # --data-dir overrides it.
    data_dir: str = "data"


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="dataset name, used in paths")
    description: str = ""
    labels: list[str] | None = Field(None, description="the label set; rows with other labels are rejected")
    sources: list[collect_stage.SourceConfig] = Field(min_length=1)
    inputs_within: str | None = Field(
        None, description="folder (relative to the config) every source file must resolve inside; `..` or a symlink out is an error")
    clean: clean_stage.Config = clean_stage.Config()
    dedupe: dedupe_stage.Config = dedupe_stage.Config()
    annotate: annotate_stage.Config | None = None  # rows that need a human go to Label Studio
    split: split_stage.Config = split_stage.Config()
    evaluate: evaluate_stage.Config = evaluate_stage.Config()  # quality gates before publication
    store: StoreConfig = StoreConfig()
    train: train_config.Config = train_config.Config()

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: list[collect_stage.SourceConfig]) -> list[collect_stage.SourceConfig]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique: {', '.join(dupes)}")
        return sources

    # Set by load_config, not by the YAML.
    _path: Path | None = None

    @property
    def path(self) -> Path:
        assert self._path is not None
        return self._path

    @property
    def config_dir(self) -> Path:
        return self.path.parent

    def section(self, name: str) -> Any:
        return getattr(self, name)

    def resolved(self) -> dict[str, Any]:
        """The config as data, defaults filled in: what the manifest stores and the hash covers."""
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """Hash of what decides the dataset's content: training settings and prose are left out, so
        changing a learning rate or a description never mints a new data version."""
        data = {k: v for k, v in self.resolved().items() if k not in _NOT_DATA}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


_NOT_DATA = {"train", "description", "store"}


def load_config(path: str | Path, check_sources: bool = True) -> DatasetConfig:
    """Read and validate a config; with `check_sources`, also check that every source's files exist and
    that the fields the config names are columns of them. Raises UserError naming the key."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level, found {type(raw).__name__}")
    try:
        config = DatasetConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    config._path = path.resolve()
    if check_sources:
        for i, source in enumerate(config.sources):
            try:
                within = config.config_dir / config.inputs_within if config.inputs_within is not None else None
                collect_stage.check_source(source, config.config_dir, within)
            except UserError as exc:
                raise UserError(f"{path}: sources[{i}] ({source.name}): {exc}") from None
    return config


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if error["type"] == "missing":
        return f"{where}: required key missing"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"
