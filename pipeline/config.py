"""The dataset config: one YAML file per dataset, validated before any work starts.

What a config may hold is composed from what is registered (`pipeline.project.Project`): the fields every
dataset has (below), one section per stage (declared by the stage class: `Stage.config_fields`), the
quality gate's section, and sections that are not stages (`train:`). Every section is a pydantic model with
unknown keys forbidden, so a typo is an error naming the key. Relative paths in a config are resolved
against the config file's folder.

`load_config(path)` reads a config with the project the composition root installed (importing
`pipeline.cli.project` installs it; every `sftpipe` command does); `Project.load_config` does the same for
a given project.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from pipeline.errors import UserError
from pipeline.names import MAX_NAME_LENGTH, NAME_PATTERN
from schemas.classification import LabelName
from schemas.kinds import DEFAULT_KIND, KINDS
from schemas.record import RecordKind


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Where versions and run folders go; relative to the working directory unless absolute. The CLI's
    # --data-dir overrides it.
    data_dir: str = "data"


@dataclass(frozen=True)
class Section:
    """A config section that is not a stage's (a stage declares its own): `train:`, for example."""

    key: str
    model: type[BaseModel]
    # Whether it decides the dataset's content: sections that do not (training settings) are left out of
    # the config hash, so changing a learning rate never mints a new data version.
    data: bool = True


class DatasetConfig(BaseModel):
    """The fields every dataset config has; the composed model adds the registered sections."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH, description="dataset name, used in paths")
    description: str = ""
    labels: list[LabelName] | None = Field(
        None, description="the label set (integers are read as their digits); rows with other labels are rejected")
    kind: str = Field(DEFAULT_KIND, description=f"the record kind: what a row holds ({', '.join(KINDS)})")

    # Set by the composition: the project this model was composed for, and the keys of sections that do
    # not decide the dataset's content.
    project: ClassVar[Any] = None
    not_data: ClassVar[frozenset[str]] = frozenset({"description", "store"})

    # Set by load_config, not by the YAML.
    _path: Path | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r} (kinds: {', '.join(KINDS)})")
        return kind

    @property
    def record_kind(self) -> RecordKind:
        return KINDS[self.kind]

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
        data = {k: v for k, v in self.resolved().items() if k not in self.not_data}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def compose(fields: dict[str, tuple[Any, Any]], sections: tuple[Section, ...], project: Any) -> type[DatasetConfig]:
    """A DatasetConfig model: the common fields, then the stages' and the gate's `fields` (pydantic field
    definitions, in plan order), `store:`, and the other `sections`."""
    keys = [*DatasetConfig.model_fields, *fields, "store", *(s.key for s in sections)]
    clash = sorted({k for k in keys if keys.count(k) > 1})
    if clash:
        raise ValueError(f"config keys registered twice: {', '.join(clash)}")
    model = create_model(
        "DatasetConfig", __base__=DatasetConfig, __module__=__name__,
        **fields, store=(StoreConfig, Field(default_factory=StoreConfig)),
        **{s.key: (s.model, Field(default_factory=s.model)) for s in sections},
    )
    not_data = {s.key for s in sections if not s.data}
    model.project = project
    model.not_data = frozenset(DatasetConfig.not_data | set(not_data))
    return model


def parse_config(path: str | Path, model: type[DatasetConfig]) -> DatasetConfig:
    """Read and validate a config file against `model`. Raises UserError naming the key."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise UserError(f"{path}: {path.stat().st_size:,} bytes; a config holds settings, at most "
                            f"{MAX_CONFIG_BYTES:,} bytes (put data in source files)")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(_yaml_error(path, exc)) from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a config") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    _check_expanded_size(raw, path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level, found {type(raw).__name__}")
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    config._path = path.resolve()
    return config


# A config is a page of settings. YAML aliases let a small file expand into billions of values (an "alias
# bomb": nine anchors of nine aliases each) that exhaust memory while being validated; a self-referencing
# anchor makes a value that contains itself. Both are refused before validation, by counting the values
# and characters the document holds with every alias expanded — without expanding anything.
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_VALUES = 200_000  # keys, items and scalars, aliases expanded
MAX_CONFIG_CHARS = 20_000_000  # characters of every string, aliases expanded


def _check_expanded_size(raw: Any, path: Path) -> None:
    """UserError when the loaded document, aliases expanded, would exceed the bounds above or contain
    itself. Iterative post-order walk with the size of each distinct container memoized by identity."""
    sizes: dict[int, tuple[int, int]] = {}  # id(container) → (values, characters) with aliases expanded
    on_path: set[int] = set()
    keep: list[Any] = []  # the containers measured stay alive, so their ids are not reused mid-walk

    def leaf(x: Any) -> tuple[int, int]:
        return 1, len(x) if isinstance(x, str) else 0

    def children(x: Any) -> list[Any]:
        return [v for kv in x.items() for v in kv] if isinstance(x, dict) else list(x)

    stack: list[tuple[Any, bool]] = [(raw, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        key = id(node)
        if done:
            values, chars = 1, 0
            for child in children(node):
                v, c = sizes[id(child)] if isinstance(child, (dict, list)) else leaf(child)
                values, chars = values + v, chars + c
            sizes[key] = (values, chars)
            on_path.discard(key)
            if values > MAX_CONFIG_VALUES or chars > MAX_CONFIG_CHARS:
                raise UserError(f"{path}: the YAML expands (aliases resolved) to over {min(values, 10**12):,} values / "
                                f"{min(chars, 10**15):,} characters; a config may hold at most {MAX_CONFIG_VALUES:,} / "
                                f"{MAX_CONFIG_CHARS:,} — is an anchor (&name) repeated through aliases (*name)?")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise UserError(f"{path}: a YAML anchor (&name) contains an alias to itself (*name): the value would be infinite")
        on_path.add(key)
        keep.append(node)
        stack.append((node, True))
        stack.extend((child, False) for child in children(node) if isinstance(child, (dict, list)))


_INSTALLED: Any = None  # the project `load_config` reads configs with


def install(project: Any) -> None:
    """Make `project` the one `load_config` uses (the composition root calls this)."""
    global _INSTALLED
    _INSTALLED = project


def load_config(path: str | Path, check_sources: bool = True, skip: Iterable[str] = ()) -> DatasetConfig:
    """Read and validate a config with the installed project; with `check_sources`, also check that the
    files it names exist and hold the fields it names. Raises UserError naming the key."""
    if _INSTALLED is None:
        raise RuntimeError("no project is installed: import pipeline.cli.project (the composition root) first, "
                           "or call Project.load_config")
    return _INSTALLED.load_config(path, check_sources, skip)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """`FILE:LINE:COLUMN: not valid YAML: what`, then the offending line and a caret under the column."""
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context = getattr(exc, "context", None)
    if mark is None:
        return f"{path}: not valid YAML: {problem}"
    where = f"{path}:{mark.line + 1}:{mark.column + 1}"
    what = problem + (f" ({' '.join(str(context).split())}, line {exc.context_mark.line + 1})"
                      if context and getattr(exc, "context_mark", None) is not None else "")
    try:
        line = path.read_text(encoding="utf-8", errors="replace").splitlines()[mark.line]
    except (OSError, IndexError):
        return f"{where}: not valid YAML: {what}"
    line = line.replace("\t", " ")
    gutter = f"  {mark.line + 1} | "
    return f"{where}: not valid YAML: {what}\n{gutter}{line}\n{' ' * len(gutter)}{' ' * mark.column}^"


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if error["type"] == "missing":
        return f"{where}: required key missing"
    shown = repr(error.get("input"))
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{where}: {error['msg']} (got {shown})"
