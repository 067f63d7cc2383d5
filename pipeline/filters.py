"""The filter framework: signals (scores) + rules (thresholds), applied by the framework.

A *signal* is a function that scores a batch of texts into one or more columns; a *rule* in the config
thresholds a signal column (`n_chars: {min: 2}`). The framework, not the filter, computes signals only for
rows still alive, applies the rules in config order, counts drops per reason and routes dropped rows to
`rejected`. Signal columns are kept, so a threshold can be changed without the scores being recomputed.

A signal travels to worker processes *by value* (`portable`): a signal registered outside the package — in
a user's module or a notebook's `__main__` — works there as it does here, and no worker looks a signal up
in a registry of its own.
"""
from __future__ import annotations

import hashlib
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from pipeline.stage import StageOutput, rejected_rows

# Modules whose functions every worker can import (the project's own packages): pickled by reference.
_PROJECT_PACKAGES = ("pipeline", "stages", "schemas", "train")


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
            if c in SIGNALS and SIGNALS[c].fn is not fn and not _redefinition(SIGNALS[c].fn, fn):
                raise ValueError(f"signal column {c!r} is already produced by {SIGNALS[c].name}")
            SIGNALS[c] = sig
        return fn

    return register


def _redefinition(old: Callable, new: Callable) -> bool:
    """The same function defined again (a notebook cell run twice, a module reloaded)."""
    return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)


def _is_project_module(name: str) -> bool:
    return name.split(".")[0] in _PROJECT_PACKAGES


def portable(sig: Signal) -> bytes:
    """The signal itself, pickled for a worker process: by reference where the worker can import it (the
    project's modules), by value otherwise (a user's module, `__main__`, a function made at run time)."""
    module = sys.modules.get(sig.fn.__module__)
    by_value = module is not None and not _is_project_module(module.__name__) and module.__name__ != "__main__"
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(sig)
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


def portable_registry() -> bytes:
    """The signals registered from outside the project, pickled (`portable`) for processes that build a
    stage themselves from its config (the Ray executor's actors): `register_portable` there."""
    foreign = {c: s for c, s in SIGNALS.items() if not _is_project_module(s.fn.__module__)}
    return cloudpickle.dumps({c: portable(s) for c, s in foreign.items()})


def register_portable(payload: bytes) -> None:
    """Register the signals of a `portable_registry()` in this process."""
    for column, sig in cloudpickle.loads(payload).items():
        SIGNALS[column] = cloudpickle.loads(sig)


_UNPICKLED: dict[bytes, Signal] = {}


def run_portable(payload: bytes, texts: list[str]) -> dict[str, list]:
    """Worker job: unpickle the signal (once per worker) and score `texts`."""
    key = hashlib.sha1(payload).digest()
    sig = _UNPICKLED.get(key)
    if sig is None:
        sig = _UNPICKLED[key] = cloudpickle.loads(payload)
    return {c: a.to_pylist() for c, a in sig(pa.array(texts, pa.string())).items()}


def signals_fingerprint(columns: Iterable[str]) -> str:
    """A hash of the code of the signals producing `columns`: a signal edited outside the project's
    modules (whose code is in the stage's code fingerprint already) still recomputes the stage."""
    h = hashlib.sha256()
    used = {SIGNALS[c].name: SIGNALS[c] for c in columns if c in SIGNALS}
    for _, sig in sorted(used.items()):
        try:
            code = inspect.getsource(sig.fn).encode()
        except (OSError, TypeError):  # defined where no source file is kept (an interactive session)
            code = sig.fn.__code__.co_code + repr(sig.fn.__code__.co_consts).encode()
        h.update(f"{sig.fn.__module__}.{sig.fn.__qualname__}\0".encode() + code + b"\0")
    return h.hexdigest()


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
