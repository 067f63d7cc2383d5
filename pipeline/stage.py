"""The stage contract.

A stage is configured from its config section and maps a stream of Arrow record batches to kept batches
plus rejected rows (each with a `reason`). A stage that must see every row before it can decide (dedupe,
split) sets `whole_stream = True`; it then gets a re-iterable input it may read more than once. Stages never
import each other; the plan (`pipeline.project`) orders them and the executor runs them.

Everything the executor, the config loader and the store need to know about a stage is declared on its
class — its name and config section, what it reads and adds beyond the record kind's fields (so the plan
derives its input and output schemas), whether it needs the whole stream, whether it is optional, its typed summary and what it contributes to a published version — so that adding a stage is
its own module plus one line in `stages/__init__.py`, and nothing in `pipeline/` names a stage.

Filters (signals + rules) are the small case of a row-wise stage: see `pipeline.filters`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Protocol

import pyarrow as pa
from pydantic import BaseModel, Field

import schemas
from schemas.kinds import KINDS, DEFAULT_KIND
from schemas.record import RecordKind
from schemas.summaries import Summary


@dataclass
class StageOutput:
    """What a stage yields: rows it keeps and rows it rejects (REJECTED schema), either may be None."""

    kept: pa.RecordBatch | None = None
    rejected: pa.RecordBatch | None = None


class StageInput(Protocol):
    """A stage's input. `batches()` may be called again by whole-stream stages (one pass per call)."""

    num_rows: int

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]: ...


@dataclass
class StageContext:
    """What the executor tells a stage about the run it is part of."""

    dataset: str
    config_dir: Path  # relative paths in the config are relative to this folder
    work_dir: Path  # the stage's own output folder: side outputs (reports) may be written here
    batch_size: int = 10_000
    workers: int = 1
    # id → split of the parent version, for stages that must keep a row's earlier decision (split).
    previous_splits: pa.Table | None = None
    progress: Callable[[int], None] = lambda n: None  # advance the progress bar by n rows
    labels: list[str] | None = None  # the dataset's label set, when the config names one
    # Where near-duplicate search runs (pipeline.near_duplicates.LocalNearDuplicates's interface): None means
    # this process and a pool of `workers` processes; the Ray executor supplies one that runs on the cluster.
    near_duplicates: Callable[..., Any] | None = None
    kind: RecordKind = KINDS[DEFAULT_KIND]  # the dataset's record kind: the payload every row carries


class Stage:
    """Base class of all stages. Subclasses set the class attributes and implement `run`."""

    # -- declared by every stage ------------------------------------------------------------------------
    name: ClassVar[str]  # stage folders, the funnel, `rejected.stage`, `--from NAME`
    Config: ClassVar[type[BaseModel]]  # its config section's model
    config_key: ClassVar[str | None] = None  # the YAML key of its section (default: `name`)
    whole_stream: ClassVar[bool] = False  # needs every row before it can decide: gets a re-iterable input
    optional: ClassVar[bool] = False  # runs only when its section is in the config (and not skipped)
    adds: ClassVar[tuple[pa.Field, ...]] = ()  # columns this stage adds to every row it keeps
    needs: ClassVar[tuple[str, ...]] = ()  # columns beyond the record kind's it reads (an earlier stage adds them)
    summary_type: ClassVar[type[Summary] | None] = None  # the typed facts it hands on (`summarize`)
    # Files the stage leaves in its work folder that belong in a published version: {file: path in version}.
    version_files: ClassVar[dict[str, str]] = {}

    def __init__(self, config: BaseModel, ctx: StageContext):
        self.config = config
        self.ctx = ctx
        # Figures the stage wants in the funnel / manifest beyond rows in / out / dropped per reason.
        self.stats: dict[str, Any] = {}

    # -- its place in the dataset config -----------------------------------------------------------------

    @classmethod
    def key(cls) -> str:
        return cls.config_key or cls.name

    @classmethod
    def config_fields(cls) -> dict[str, tuple[Any, Any]]:
        """The top-level keys this stage adds to the dataset config, as pydantic field definitions
        `{key: (annotation, default)}`: its section, optional or with its defaults."""
        if cls.optional:
            return {cls.key(): (cls.Config | None, None)}
        return {cls.key(): (cls.Config, Field(default_factory=cls.Config))}

    @classmethod
    def section(cls, config: Any) -> BaseModel | None:
        """This stage's section of a loaded dataset config (None: an optional stage the config leaves out)."""
        return getattr(config, cls.key())

    @classmethod
    def check_section(cls, section: BaseModel, config_dir: Path, config: Any) -> None:
        """Checks that need the file system (do the files a section names exist?); raise UserError."""

    @classmethod
    def unsupported(cls, kind: RecordKind) -> str | None:
        """Why this stage cannot run on rows of `kind` (the plan refuses it in one line), or None."""
        return None

    # -- what it contributes to a published version -------------------------------------------------------

    @classmethod
    def manifest_entries(cls, summary: Summary | None, skipped: str | None) -> dict[str, Any]:
        """Top-level manifest entries from this stage's summary, or, for an optional stage that did not run,
        from why (`skipped`)."""
        return {}

    # -- a run ---------------------------------------------------------------------------------------------

    def fingerprint_inputs(self) -> str:
        """Anything outside the config, the upstream rows and the code that decides the output (input file
        hashes, a Label Studio project's state, user code the stage calls)."""
        return ""

    def run(self, inputs: StageInput | None) -> Iterator[StageOutput]:
        raise NotImplementedError

    def summarize(self) -> Summary | None:
        """The stage's typed summary, once `run` has been consumed (an instance of `summary_type`)."""
        return None

    # A source stage that reads independent parts (collect: one per source) may be run part by part in
    # parallel (the Ray executor does); the parts' outputs, in part order, are the stage's output.
    def parts(self) -> int:
        return 1

    def part(self, index: int) -> "Stage":
        return self


def rejected_rows(
    batch: pa.RecordBatch,
    stage: str,
    reasons: Iterable[str] | str,
    details: Iterable[dict | None] | None = None,
    text: pa.Array | None = None,
    kind: RecordKind | None = None,
) -> pa.RecordBatch:
    """Build rejected rows (`kind.rejected_schema`; classification's without a kind) for every row of
    `batch` (select the rows first). `text` is what a person reads: by default the batch's `text` column,
    or for a kind without one its rendering of the record; such a kind also keeps the record as JSON."""
    kind = kind or KINDS[DEFAULT_KIND]
    n = batch.num_rows
    reasons = [reasons] * n if isinstance(reasons, str) else list(reasons)
    detail_json = [None] * n if details is None else [None if d is None else json.dumps(d, default=str, ensure_ascii=False) for d in details]
    names = batch.schema.names

    def col(name: str, typ: pa.DataType) -> pa.Array:
        return batch.column(name) if name in names else pa.nulls(n, typ)

    has_payload = all(p in names for p in kind.payload_names)
    if text is None:
        text = kind.render(batch) if kind.keeps_record and has_payload and kind.render is not None else col("text", pa.string())
    arrays = [
        col("id", pa.string()),
        pa.array([stage] * n, pa.string()),
        pa.array(reasons, pa.string()),
        pa.array(detail_json, pa.string()),
        col("source", pa.string()),
        col("source_file", pa.string()),
        col("source_line", pa.int64()),
        text,
        col("label", pa.string()),
    ]
    if kind.keeps_record:
        arrays.append(kind.record_json(batch))
    return pa.RecordBatch.from_arrays(arrays, schema=kind.rejected_schema)
