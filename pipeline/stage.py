"""The stage contract and the filter framework.

A stage is configured from its config section and maps a stream of Arrow record batches to kept batches
plus rejected rows (each with a `reason`). A stage that must see every row before it can decide (dedupe,
split) sets `whole_stream = True`; it then gets a re-iterable input it may read more than once. Stages never
import each other: `pipeline/` composes them.

Filters are the small case. A *signal* is a function that scores a batch of texts into one or more columns;
a *rule* in the config thresholds a signal column (`n_chars: {min: 2}`). The framework, not the filter,
computes signals only for rows still alive, applies the rules in config order, counts drops per reason and
routes dropped rows to `rejected`. Signal columns are kept, so a threshold can be changed without the
scores being recomputed: see `pipeline.filters`.
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

import schemas


@dataclass
class StageOutput:
    """What a stage yields: rows it keeps and rows it rejects (REJECTED schema), either may be None."""

    kept: pa.RecordBatch | None = None
    rejected: pa.RecordBatch | None = None


class StageInput(Protocol):
    """A stage's input. `batches()` may be called again by whole-stream stages (one pass per call)."""

    num_rows: int

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]: ...


def _worker_context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "pyarrow", "pyarrow.compute", "pipeline.worker_warmup"])
    return context


def worker_pool(workers: int) -> ProcessPoolExecutor | None:
    """A pool of `workers` processes for a stage's CPU-bound work, or None where one process does it all.

    Workers come from a fork server (a fresh single-threaded process with numpy, pyarrow and the MinHash
    tables loaded), not from this process: forking a process that runs threads — Ray's and gRPC's in the Ray
    executor's driver, a notebook's — can leave the child waiting forever on a lock held by a thread that
    does not exist in it.
    """
    if workers <= 1:
        return None
    return ProcessPoolExecutor(workers, mp_context=_worker_context())


def start_worker_server() -> None:
    """Start the fork server now, so that its imports (~1 s) overlap a run's first stages."""
    _worker_context()
    from multiprocessing import forkserver

    forkserver.ensure_running()


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
    # Where near-duplicate search runs (pipeline.minhash.LocalNearDuplicates's interface): None means this
    # process and a pool of `workers` processes; the Ray executor supplies one that runs on the cluster.
    near_duplicates: Callable[..., Any] | None = None


class Stage:
    """Base class of all stages. Subclasses set the class attributes and implement `run`."""

    name: ClassVar[str]
    output_schema: ClassVar[pa.Schema]
    whole_stream: ClassVar[bool] = False
    Config: ClassVar[type[BaseModel]]

    def __init__(self, config: BaseModel, ctx: StageContext):
        self.config = config
        self.ctx = ctx
        # Figures the stage wants in the funnel / manifest beyond rows in / out / dropped per reason.
        self.stats: dict[str, Any] = {}

    def fingerprint_inputs(self) -> str:
        """Anything outside the config and the upstream rows that decides the output (input file hashes)."""
        return ""

    def run(self, inputs: StageInput | None) -> Iterator[StageOutput]:
        raise NotImplementedError


def rejected_rows(
    batch: pa.RecordBatch,
    stage: str,
    reasons: Iterable[str] | str,
    details: Iterable[dict | None] | None = None,
    text: pa.Array | None = None,
) -> pa.RecordBatch:
    """Build REJECTED rows for every row of `batch` (select the rows first)."""
    n = batch.num_rows
    reasons = [reasons] * n if isinstance(reasons, str) else list(reasons)
    detail_json = [None] * n if details is None else [None if d is None else json.dumps(d, default=str, ensure_ascii=False) for d in details]
    names = batch.schema.names

    def col(name: str, typ: pa.DataType) -> pa.Array:
        return batch.column(name) if name in names else pa.nulls(n, typ)

    return pa.RecordBatch.from_arrays(
        [
            col("id", pa.string()),
            pa.array([stage] * n, pa.string()),
            pa.array(reasons, pa.string()),
            pa.array(detail_json, pa.string()),
            col("source", pa.string()),
            col("source_file", pa.string()),
            col("source_line", pa.int64()),
            text if text is not None else col("text", pa.string()),
            col("label", pa.string()),
        ],
        schema=schemas.REJECTED,
    )


# ---------------------------------------------------------------------------------------------------------
# Filters: signals (scores) + rules (thresholds), applied by the framework.


@dataclass(frozen=True)
class Signal:
    """A scoring function over texts. `fn(texts: pa.StringArray) -> {column: pa.Array}`."""

    name: str
    columns: dict[str, pa.DataType]
    fn: Callable[[pa.Array], dict[str, pa.Array]]
    parallel: bool = False  # pure-Python and slow: worth spreading over worker processes

    def __call__(self, texts: pa.Array) -> dict[str, pa.Array]:
        return self.fn(texts)


SIGNALS: dict[str, Signal] = {}  # by column name: each column is produced by exactly one signal


def signal(*columns: str, types: dict[str, pa.DataType] | None = None, parallel: bool = False):
    """Register a scoring function producing `columns` (float64 unless `types` says otherwise).

    The function takes a pyarrow string array and returns a dict of equally long arrays; a null score
    means "not applicable" and passes every rule.
    """

    def register(fn: Callable[[pa.Array], dict[str, pa.Array]]):
        types_ = {c: (types or {}).get(c, pa.float64()) for c in columns}
        sig = Signal(fn.__name__, types_, fn, parallel)
        for c in columns:
            if c in SIGNALS and SIGNALS[c].fn is not fn:
                raise ValueError(f"signal column {c!r} is already produced by {SIGNALS[c].name}")
            SIGNALS[c] = sig
        return fn

    return register


class Rule(BaseModel, extra="forbid"):
    """A threshold on one signal column. Every bound given must hold for a row to be kept."""

    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None  # for string signals (lang)

    def check(self, values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Return (keep mask, reason code per row: 0 keep, 1 below min, 2 above max, 3 not allowed)."""
        n = len(values)
        code = np.zeros(n, dtype=np.int8)
        valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if self.allowed is not None:
            ok = np.asarray(pc.is_in(values, value_set=pa.array(self.allowed, values.type)).to_numpy(zero_copy_only=False), dtype=bool)
            code[valid & ~ok] = 3  # is_in says False, not null, for a null: a null passes, as documented
        if self.min is not None or self.max is not None:
            v = np.asarray(pc.fill_null(values.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False))
            if self.max is not None:
                code[valid & (code == 0) & (v > self.max)] = 2
            if self.min is not None:
                code[valid & (code == 0) & (v < self.min)] = 1
        return code == 0, code


_REASON_SUFFIX = {1: "below_min", 2: "above_max", 3: "not_allowed"}


def apply_rules(
    batch: pa.RecordBatch,
    rules: dict[str, Rule],
    stage: str,
    signal_columns: Iterable[str] = (),
    map_signal: Callable[[Signal, pa.Array], dict[str, pa.Array]] | None = None,
    original_text: pa.Array | None = None,
) -> StageOutput:
    """Score `batch` and apply `rules` in order; return kept rows (with signal columns) and rejected rows.

    Signals are computed only on rows no earlier rule dropped (a dropped row gets null scores), so an
    expensive signal such as language detection placed last costs nothing for rows already gone.
    `signal_columns` names extra signals to compute and keep without a rule. The first failing rule gives
    a row its reason: `<column>_below_min`, `<column>_above_max` or `<column>_not_allowed`. Rejected rows
    carry `original_text` (the text before normalization) when given.
    """
    map_signal = map_signal or (lambda sig, texts: sig(texts))
    n = batch.num_rows
    alive = np.ones(n, dtype=bool)
    reason = np.empty(n, dtype=object)
    failing_value: list[Any] = [None] * n
    computed: dict[str, pa.Array] = {}
    wanted = list(dict.fromkeys([*rules, *signal_columns]))
    texts = batch.column("text")

    for column in wanted:
        if column not in computed:
            sig = SIGNALS[column]
            idx = np.flatnonzero(alive)
            scores = map_signal(sig, texts.take(pa.array(idx))) if len(idx) else {c: pa.array([], t) for c, t in sig.columns.items()}
            for c, typ in sig.columns.items():
                full = _scatter(scores[c], idx, n, typ)
                computed[c] = full
        rule = rules.get(column)
        if rule is None:
            continue
        keep, code = rule.check(computed[column])
        newly = alive & ~keep
        if newly.any():
            values = computed[column]
            for i in np.flatnonzero(newly):
                reason[i] = f"{column}_{_REASON_SUFFIX[int(code[i])]}"
                failing_value[i] = {"column": column, "value": values[int(i)].as_py(), **rule.model_dump(exclude_none=True)}
            alive &= keep

    out = batch
    for c, arr in computed.items():
        if c in out.schema.names:
            out = out.set_column(out.schema.get_field_index(c), c, arr)
        else:
            out = out.append_column(c, arr)
    kept = out.filter(pa.array(alive))
    dropped_idx = np.flatnonzero(~alive)
    rejected = None
    if len(dropped_idx):
        take = pa.array(dropped_idx)
        rows = batch.take(take)
        text = original_text.take(take) if original_text is not None else None
        rejected = rejected_rows(rows, stage, [reason[i] for i in dropped_idx], [failing_value[i] for i in dropped_idx], text)
    return StageOutput(kept=kept, rejected=rejected)


def _scatter(values: pa.Array, idx: np.ndarray, n: int, typ: pa.DataType) -> pa.Array:
    """Place `values` (one per alive row) at positions `idx` of a length-n array of nulls."""
    values = values.cast(typ) if values.type != typ else values
    if len(idx) == n:
        return values
    positions = np.full(n, -1, dtype=np.int64)
    positions[idx] = np.arange(len(idx))
    take = pa.array(positions, mask=positions < 0)
    return values.take(take)
