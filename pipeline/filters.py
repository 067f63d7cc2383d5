"""The filter framework: signals (scores) + rules (thresholds), applied by the framework.

A *signal* is a function that scores a batch of texts into one or more columns; a *rule* in the config
thresholds a signal column (`n_chars: {min: 2}`). The framework, not the filter, computes signals only for
rows still alive, applies the rules in config order, counts drops per reason and routes dropped rows to
`rejected`. Signal columns are kept, so a threshold can be changed without the scores being recomputed.

A signal travels to worker processes *by value* (`portable`): a signal registered outside the package — in
a user's module or a notebook's `__main__` — works there as it does here, and no worker looks a signal up
in a registry of its own.

Signals read a *field*. A text signal scores one text per row: which text is the rule's field —
`completion.n_words: {min: 3}` scores the record kind's `completion` view (`schemas.views`) and keeps the
score as the column `completion_n_words` (plain identifiers: pandas, Great Expectations and SQL take them
as they are), dropping with the reason `completion_n_words_below_min`. A rule without a field reads the
kind's default view (classification's `text`), and its columns keep the signal's own names, as they always
had. A *record* signal (`reads="record"`) reads the whole row — several fields, turns, or other signals'
scores it `needs` — and its rule names no field (`n_turns: {max: 20}`). A text signal marked `prose` reads
a generative field's prose only (code blocks and inline code removed, `pipeline.markdown`): language
identification must not call a Python answer "not English"; a field with fewer letters of prose than the
signal asks for (or a third as many Chinese / Japanese / Korean characters) gets a null score (not
applicable), which passes every rule. A text signal marked `raw` reads the field as it came into the
stage, before the stage's normalizers rewrote it (clean's `markup_share`: after `strip_html` a footer link
is just "Click here"): the framework gives it the stage's `original` batch — the same rows it already
routes to `rejected` — so the value before normalization has one source, not a copy kept in a column.
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
from pydantic import BaseModel, Field

from pipeline import markdown
from pipeline.stage import StageOutput, rejected_rows
from schemas.kinds import DEFAULT_KIND, KINDS
from schemas.record import RecordKind

# Modules whose functions every worker can import (the project's own packages): pickled by reference.
_PROJECT_PACKAGES = ("pipeline", "stages", "schemas", "train")


@dataclass(frozen=True)
class Signal:
    """A scoring function. Text signals: `fn(texts: pa.StringArray) -> {column: pa.Array}`; record signals
    (`reads="record"`): `fn(batch, kind) -> {column: pa.Array}`, the batch holding the payload and the
    columns of the rule keys the signal `needs`."""

    name: str
    columns: dict[str, pa.DataType]
    fn: Callable[..., dict[str, pa.Array]]
    parallel: bool = False  # pure-Python and slow: worth spreading over worker processes
    reads: str = "text"  # "text": one text per row (a field); "record": the whole row
    needs: tuple[str, ...] = ()  # record signals: rule keys computed before this one (their columns are in the batch)
    # Text signals on a generative field: 1 reads its prose only (code removed); N > 1 also gives null ("not
    # applicable") to a field with fewer than N letters of prose (a code-only answer, a one-word answer).
    prose: int = 0
    raw: bool = False  # text signals: read the field before the stage's normalizers (apply_rules' `original`)

    def __call__(self, texts: pa.Array) -> dict[str, pa.Array]:
        return self.fn(texts)


SIGNALS: dict[str, Signal] = {}  # by column name: each column is produced by exactly one signal


def signal(*columns: str, types: dict[str, pa.DataType] | None = None, parallel: bool = False,
           reads: str = "text", needs: tuple[str, ...] = (), prose: int = 0, raw: bool = False):
    """Register a scoring function producing `columns` (float64 unless `types` says otherwise).

    A text signal takes a pyarrow string array; a record signal (`reads="record"`) a record batch and the
    record kind. Either returns a dict of equally long arrays; a null score means "not applicable" and
    passes every rule. `raw`: a text signal that reads its field as the stage received it (before
    normalization; see the module docstring).
    """
    if reads not in ("text", "record"):
        raise ValueError(f"reads must be 'text' or 'record', not {reads!r}")
    if raw and reads != "text":
        raise ValueError("raw applies to text signals: a record signal reads the row as it is")

    def register(fn: Callable[..., dict[str, pa.Array]]):
        types_ = {c: (types or {}).get(c, pa.float64()) for c in columns}
        sig = Signal(fn.__name__, types_, fn, parallel, reads, tuple(needs), prose, raw)
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
    """A hash of the code of the signals producing `columns` (rule keys: `completion.lang` is the `lang`
    signal's): a signal edited outside the project's modules (whose code is in the stage's code
    fingerprint already) still recomputes the stage."""
    h = hashlib.sha256()
    names = [c.rsplit(".", 1)[-1] for c in columns]
    used = {SIGNALS[c].name: SIGNALS[c] for c in names if c in SIGNALS}
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
    # lang rules only: an allowed language at least this probable is taken as the row's language (the
    # stage's default when left out: clean.language.plausible). Read by the stage that computes `lang`.
    plausible: float | None = Field(None, gt=0.0, le=1.0)

    def check(self, values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Return (keep mask, reason code per row: 0 keep, 1 below min, 2 above max, 3 not allowed). A null
        value ("not applicable") passes every bound."""
        n = len(values)
        code = np.zeros(n, dtype=np.int8)
        valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if self.allowed is not None:
            ok = pc.is_in(values, value_set=pa.array(self.allowed, values.type))  # false (not null) for a null
            code[valid & ~np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)] = 3
        if self.min is not None or self.max is not None:
            v = np.asarray(pc.fill_null(values.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False))
            if self.max is not None:
                code[valid & (code == 0) & (v > self.max)] = 2
            if self.min is not None:
                code[valid & (code == 0) & (v < self.min)] = 1
        return code == 0, code


_REASON_SUFFIX = {1: "below_min", 2: "above_max", 3: "not_allowed"}
_IDEOGRAM = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"


@dataclass(frozen=True)
class Target:
    """What a rule key (or a kept signal) means for one record kind: the signal, the field it reads (None:
    a record signal), and the columns it writes (`completion_n_words`; the default view's unprefixed)."""

    key: str
    signal: Signal
    field: str | None
    column: str  # the column the rule thresholds
    prefix: str

    @property
    def columns(self) -> dict[str, pa.DataType]:
        return {self.prefix + c: t for c, t in self.signal.columns.items()}


def target(key: str, kind: RecordKind | None = None) -> Target:
    """Resolve a rule key — `signal_column` or `field.signal_column` — for `kind`; ValueError saying what
    is wrong (an unknown signal or field, a text signal without the field it should read)."""
    kind = kind or KINDS[DEFAULT_KIND]
    field, _, column = key.rpartition(".")
    if column not in SIGNALS:
        raise ValueError(f"unknown signal {column!r} in {key!r} (known: {', '.join(sorted(SIGNALS))})")
    sig = SIGNALS[column]
    if sig.reads == "record":
        if field:
            raise ValueError(f"{key!r}: {column} reads the whole record; name it without a field ({column})")
        return Target(key, sig, None, column, "")
    if not field:
        if kind.default_view is None:
            raise ValueError(f"{key!r}: say which field {column} reads, e.g. completion.{column} "
                             f"(fields of {kind.name}: {', '.join(kind.views)})")
        field = kind.default_view
    if field not in kind.views:
        raise ValueError(f"{key!r}: {kind.name} records have no field {field!r} (fields: {', '.join(kind.views)})")
    prefix = "" if field == kind.default_view else f"{field}_"
    return Target(key, sig, field, prefix + column, prefix)


def apply_rules(
    batch: pa.RecordBatch,
    rules: dict[str, Rule],
    stage: str,
    signal_columns: Iterable[str] = (),
    map_signal: Callable[[Signal, pa.Array], dict[str, pa.Array]] | None = None,
    original: pa.RecordBatch | None = None,
    kind: RecordKind | None = None,
    bind: Callable[[Target], Signal] | None = None,
) -> StageOutput:
    """Score `batch` and apply `rules` (by rule key) in order; return kept rows (with signal columns) and
    rejected rows.

    Signals are computed only on rows no earlier rule dropped (a dropped row gets null scores), so an
    expensive signal such as language detection placed last costs nothing for rows already gone.
    `signal_columns` names extra signals (rule keys) to compute and keep without a rule. The first failing
    rule gives a row its reason: `<column>_below_min`, `<column>_above_max` or `<column>_not_allowed`.
    Rejected rows are taken from `original` (the rows before normalization) when given, and `raw` signals
    read their field from it (from `batch` when no `original` is given). `bind` gives the
    signal to compute for a rule key when the stage has settings for it (clean binds `lang` to its
    identifier and to the languages allowed on the field it reads); without it, the registered signal.
    """
    kind = kind or KINDS[DEFAULT_KIND]
    map_signal = map_signal or (lambda sig, texts: sig(texts))
    n = batch.num_rows
    alive = np.ones(n, dtype=bool)
    reason = np.empty(n, dtype=object)
    failing_value: list[Any] = [None] * n
    computed: dict[str, pa.Array] = {}
    done: set[tuple[str, str | None]] = set()  # (signal, field) pairs computed
    views: dict[tuple[str, bool, bool], pa.Array] = {}  # (field, prose, raw) → one text per row

    def texts_of(field: str, prose: bool, raw: bool = False) -> pa.Array:
        if (field, prose, raw) not in views:
            values = kind.view(field)(original if raw and original is not None else batch)
            views[(field, prose, raw)] = markdown.prose(values) if prose and kind.keeps_record else values
        return views[(field, prose, raw)]

    def compute(t: Target) -> None:
        if (t.signal.name, t.field) in done:
            return
        for need in t.signal.needs:
            compute(target(need, kind))
        sig = bind(t) if bind is not None else t.signal
        live = alive.copy()
        if sig.reads == "text" and sig.prose > 1 and kind.keeps_record:
            # Too little prose to judge (a code-only answer has no language): null, "not applicable". A
            # Chinese or Japanese character says about what a short word does: a third as many suffice.
            prose = texts_of(t.field, True)
            enough = pc.or_(pc.match_substring_regex(prose, r"(?s)(?:\pL\PL*){%d}" % sig.prose),
                            pc.match_substring_regex(prose, r"(?s)(?:%s.*?){%d}" % (_IDEOGRAM, -(-sig.prose // 3))))
            live &= np.asarray(pc.fill_null(enough, False).to_numpy(zero_copy_only=False), dtype=bool)
        idx = np.flatnonzero(live)
        take = pa.array(idx, pa.int64())
        if not len(idx):
            scores = {c: pa.array([], ty) for c, ty in sig.columns.items()}
        elif sig.reads == "record":
            rows = batch
            for c, arr in computed.items():
                rows = rows.append_column(c, arr) if c not in rows.schema.names else rows
            scores = sig.fn(rows.take(take), kind)
        else:
            scores = map_signal(sig, texts_of(t.field, bool(sig.prose), sig.raw).take(take))
        for c, ty in sig.columns.items():
            computed[t.prefix + c] = _scatter(scores[c], idx, n, ty)
        done.add((sig.name, t.field))

    for key in list(dict.fromkeys([*rules, *signal_columns])):
        t = target(key, kind)
        compute(t)
        rule = rules.get(key)
        if rule is None:
            continue
        keep, code = rule.check(computed[t.column])
        newly = alive & ~keep
        if newly.any():
            values = computed[t.column]
            # Generative kinds: the signal's other columns too (the refusal phrase beside its 0/1 score).
            siblings = [c for c in t.columns if c != t.column] if kind.keeps_record else []
            for i in np.flatnonzero(newly):
                reason[i] = f"{t.column}_{_REASON_SUFFIX[int(code[i])]}"
                failing_value[i] = {"column": t.column, "value": values[int(i)].as_py(), **rule.model_dump(exclude_none=True),
                                    **{c: computed[c][int(i)].as_py() for c in siblings}}
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
        rows = (original if original is not None else batch).take(take)
        rejected = rejected_rows(rows, stage, [reason[i] for i in dropped_idx], [failing_value[i] for i in dropped_idx],
                                 kind=kind)
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
