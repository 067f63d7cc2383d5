"""Signals for instruction and chat data, and the rules a generative dataset gets by default.

Text signals score the field a rule names (`completion.refusal`); record signals read the whole record
(`n_turns`). Each is documented with its default rule in `GENERATIVE_FILTERS` and the README's table:

| signal | reads | meaning | default rule |
|---|---|---|---|
| `refusal`, `refusal_phrase` | a field | 1 when a refusal or boilerplate phrase ("As an AI language model", "I'm sorry, but I cannot", "作为一个人工智能") is in the text, and the first one found | `completion.refusal: {max: 0}` |
| `placeholders`, `placeholder` | a field's prose | unfilled template placeholders: `{{name}}`, `<PLACEHOLDER>`, `[Your Name]`; how many, and the first | `completion.placeholders: {max: 0}` |
| `unclosed_code_fence` | a field | 1 when a fenced code block is opened and never closed: the text was cut inside code | `completion.unclosed_code_fence: {max: 0}` |
| `ends_mid_sentence` | a field's prose | 1 when the last line is a sentence of 5+ words that stops without closing punctuation; null for texts ending in code, a list, a table or a heading, and for short texts | none (kept as a score) |
| `completion_prompt_ratio` | record | characters of the completion / characters of the prompt | none (a summary is short, an essay long) |
| `n_turns` | record | user turns (a generation record: 1) | none |
| `repeated_turns` | record | turns repeating an earlier turn of the same role (case and spacing aside); a completion repeating its prompt | `repeated_turns: {max: 0}` |
| `placeholder_only`, `url_only` | a field | short junk (stages/clean/junk.py): the text is only a placeholder ("n/a", "null") / only a URL | `prompt.placeholder_only: {max: 0}`, `prompt.url_only: {max: 0}` |
| `lang_mismatch` | record | 1 when the prompt's and the completion's languages (`prompt.lang`, `completion.lang`, each identified with probability ≥ 0.75) differ | none (translation data differs by design; `configs/alpaca_en.yaml` sets `{max: 0}`) |

Language per field is clean's `lang` signal on the field's prose (`prompt.lang`); it is not computed by
default (it is the slowest signal), and a field with fewer than 40 letters of prose, or 14 CJK characters (a code-only answer,
"Apple, Banana, Grapes") gets null, which passes every rule: on alpaca_en, langdetect called 25 such short
English answers Danish, Italian or Tagalog.
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import markdown
from pipeline.filters import signal
from schemas.record import MAX_TEXT_CHARS
from schemas.views import flat_turns

# The defaults a `generation` or `chat` dataset gets (a config's `clean.filters` is merged over them; a rule
# set to null switches one off). No Gopher rule: they were made for web pages and misfire on code answers.
GENERATIVE_FILTERS: dict[str, dict] = {
    "prompt.n_chars": {"min": 1, "max": MAX_TEXT_CHARS},
    "completion.n_chars": {"min": 1, "max": MAX_TEXT_CHARS},
    "completion.unclosed_code_fence": {"max": 0},
    "completion.refusal": {"max": 0},
    "completion.placeholders": {"max": 0},
    "repeated_turns": {"max": 0},
    # Short junk (stages/clean/junk.py) on the prompt only: an instruction that is a placeholder or a URL
    # asks nothing. An answer may rightly be "None", a URL, HTML or a repeated word: no junk rule on it.
    "prompt.placeholder_only": {"max": 0},
    "prompt.url_only": {"max": 0},
}

# Lower-case phrases; a text matches when one occurs in its lower-cased form.
REFUSAL_PHRASES = (
    "as an ai language model", "as a language model", "as an ai assistant", "as an ai model", "as an ai,",
    "as an artificial intelligence", "i am an ai language model", "i'm an ai language model",
    "i'm sorry, but i cannot", "i'm sorry, but i can't", "i am sorry, but i cannot", "i'm sorry, i cannot",
    "i'm sorry, i can't", "i am sorry, i cannot", "i cannot fulfill", "i can't fulfill", "i cannot assist with",
    "i can't assist with", "i cannot help with that", "i'm unable to assist", "i am unable to assist",
    "i'm not able to provide", "i am not able to provide", "i don't have access to real-time",
    "i do not have access to real-time", "i don't have personal opinions", "i do not have personal opinions",
    "i don't have personal preferences", "i do not have personal preferences",
    "作为一个人工智能", "作为一个ai", "作为ai语言模型", "作为一个语言模型", "作为人工智能", "我是一个人工智能",
    "我是一个ai", "很抱歉，我无法", "抱歉，我无法", "很抱歉，我不能", "抱歉，我不能",
)
_REFUSAL = re.compile("|".join(re.escape(p) for p in sorted(REFUSAL_PHRASES, key=len, reverse=True)))

# Template residue, never legitimate in prose: {{ name }}, <PLACEHOLDER> / <YOUR_NAME> (the PII masks clean
# writes itself excepted), [Your Name] / [Recipient] / [Company Name] (not a Markdown link "[text](url)").
_PII_MASKS = ("<EMAIL>", "<PHONE>", "<IP_ADDRESS>")
_PLACEHOLDER = re.compile(
    r"\{\{\s*[^{}\n]{1,60}?\s*\}\}"
    r"|<(?!(?:EMAIL|PHONE|IP_ADDRESS)>)[A-Z][A-Z0-9_]*(?: [A-Z0-9_]+){0,4}>"
    r"|\[(?:(?:[Yy]our|[Ii]nsert|[Ee]nter)\b[^\]\n]{0,40}"
    r"|(?:[A-Z][\w’']*\s){0,3}(?:Name|Address|Company|Date|E-?mail|Phone|Number|Title|Position|Recipient|Manager"
    r"|City|Organi[sz]ation|Signature|Details|Information|Website|Location|Product|Amount|Time)(?:’s|'s)?)\]"
)
# [Chorus], [Verse 1], [The lights fade.] and Markdown links are not placeholders: a bracket counts when it
# starts with Your / Insert / Enter or ends with a form-letter word (Name, Address, Company, Date, ...).
_PLACEHOLDER_HINT = r"\{\{|<[A-Z]|\[[A-Z]|\[(?:[Yy]our|[Ii]nsert|[Ee]nter)"  # RE2 (no look-ahead): rows worth a look


def _f64(values) -> pa.Array:
    return pa.array(values, pa.float64())


@signal("refusal", "refusal_phrase", types={"refusal_phrase": pa.string()})
def refusal(texts):
    """Refusal / boilerplate phrases (REFUSAL_PHRASES), case-insensitively: 1.0 and the first phrase found."""
    lowered = pc.utf8_lower(texts)
    hint = np.flatnonzero(np.asarray(pc.match_substring_regex(lowered, _REFUSAL.pattern).to_numpy(zero_copy_only=False), dtype=bool))
    score = np.zeros(len(texts))
    phrase: list[str | None] = [None] * len(texts)
    for i, text in zip(hint, lowered.take(pa.array(hint, pa.int64())).to_pylist()):
        score[i] = 1.0
        phrase[i] = _REFUSAL.search(text).group(0)
    return {"refusal": _f64(score), "refusal_phrase": pa.array(phrase, pa.string())}


@signal("placeholders", "placeholder", types={"placeholder": pa.string()}, prose=1)
def placeholders(texts):
    """Unfilled template placeholders in the text: how many, and the first."""
    count = np.zeros(len(texts))
    first: list[str | None] = [None] * len(texts)
    hint = np.flatnonzero(np.asarray(pc.match_substring_regex(texts, _PLACEHOLDER_HINT).to_numpy(zero_copy_only=False), dtype=bool))
    for i, text in zip(hint, texts.take(pa.array(hint, pa.int64())).to_pylist()):
        found = _PLACEHOLDER.findall(text)
        count[i] = len(found)
        first[i] = found[0] if found else None
    return {"placeholders": _f64(count), "placeholder": pa.array(first, pa.string())}


@signal("unclosed_code_fence")
def unclosed_code_fence(texts):
    """1.0 when a fenced code block is opened and not closed before the text ends."""
    return {"unclosed_code_fence": _f64(markdown.unclosed_fence(texts).astype(np.float64))}


_CLOSING = set(".!?。！？…\"'”’)]}*_`>|»」』）】~")
_STRUCTURE = re.compile(r"^\s*(?:[-*+>|#]|\d+[.)]\s|[A-Za-z][.)]\s)")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


@signal("ends_mid_sentence")
def ends_mid_sentence(texts):
    """1.0 when the text's last line is a sentence (5+ words, or 15+ CJK characters) that stops without
    closing punctuation; null when the text ends in code, a list item, a table row, a heading or a quote,
    or its last line is shorter (a title, an answer such as "Positive" is complete as it is)."""
    out: list[float | None] = [None] * len(texts)
    for i, text in enumerate(texts.to_pylist()):
        parts = markdown.segments(text.rstrip())
        if not parts or parts[-1][0]:
            continue
        last = parts[-1][1].rstrip().rsplit("\n", 1)[-1]
        if not last or _STRUCTURE.match(last):
            continue
        if len(last.split()) < 5 and len(_CJK.findall(last)) < 15:
            continue
        out[i] = 0.0 if last[-1] in _CLOSING else 1.0
    return {"ends_mid_sentence": _f64(out)}


# -- record signals ----------------------------------------------------------------------------------------


def _turn_table(batch: pa.RecordBatch) -> tuple[pa.Array, pa.Array, np.ndarray] | None:
    """A conversation's turns (role, content, row), or None for a record without a list of turns."""
    for f in batch.schema:
        if pa.types.is_list(f.type) and pa.types.is_struct(f.type.value_type) and f.type.value_type.get_field_index("role") >= 0:
            return flat_turns(batch.column(f.name))
    return None


def _folded(values: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(values), r"\s+", " "))


@signal("n_turns", reads="record")
def n_turns(batch, kind):
    """User turns in the record (a prompt–completion record has one)."""
    turns = _turn_table(batch)
    if turns is None:
        return {"n_turns": _f64(np.ones(batch.num_rows))}
    role, _, parent = turns
    users = np.asarray(pc.equal(role, "user").to_numpy(zero_copy_only=False), dtype=bool)
    return {"n_turns": _f64(np.bincount(parent[users], minlength=batch.num_rows).astype(np.float64))}


@signal("repeated_turns", reads="record")
def repeated_turns(batch, kind):
    """Turns that repeat an earlier turn of the same role (casefolded, spacing collapsed); for a
    prompt–completion record, 1 when the completion repeats the prompt."""
    turns = _turn_table(batch)
    if turns is None:
        same = pc.equal(_folded(kind.view("prompt")(batch)), _folded(kind.view("completion")(batch)))
        return {"repeated_turns": _f64(np.asarray(same.to_numpy(zero_copy_only=False), dtype=np.float64))}
    role, content, parent = turns
    keys = pc.binary_join_element_wise(role, _folded(content), "\x1f")
    spoken = np.asarray(pc.is_in(role, value_set=pa.array(["user", "assistant"])).to_numpy(zero_copy_only=False), dtype=bool)
    codes = pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    pair = parent * (int(codes.max(initial=0)) + 1) + codes
    _, first = np.unique(pair, return_index=True)
    repeat = np.ones(len(pair), dtype=bool)
    repeat[first] = False
    return {"repeated_turns": _f64(np.bincount(parent[repeat & spoken], minlength=batch.num_rows).astype(np.float64))}


@signal("completion_prompt_ratio", reads="record")
def completion_prompt_ratio(batch, kind):
    """Characters of the completion per character of the prompt (null for an empty prompt)."""
    prompt = pc.utf8_length(kind.view("prompt")(batch)).to_numpy(zero_copy_only=False).astype(np.float64)
    completion = pc.utf8_length(kind.view("completion")(batch)).to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = completion / prompt
    return {"completion_prompt_ratio": pa.array(ratio, pa.float64(), mask=prompt == 0)}


# fastText's probabilities for short English prose are lower than langdetect's (median 0.91 on alpaca_en's
# instructions, against ~1.0): at 0.9 it judged only 200 of 358 swapped alpaca_zh / alpaca_en pairs. At 0.75
# it flags 298 of them (langdetect at 0.9: 284) and none of alpaca_en's 999 records (benchmarks/langid/fields.py;
# tests/test_language.py holds it).
MISMATCH_CONFIDENCE = 0.75


@signal("lang_mismatch", reads="record", needs=("prompt.lang", "completion.lang"))
def lang_mismatch(batch, kind):
    """1.0 when the prompt's and the completion's languages differ (by base language, should a code name a
    region: zh-TW is zh's); null when either is unknown or uncertain (no prose, too little, or identified
    with probability below MISMATCH_CONFIDENCE: "Write a function to convert Fahrenheit to Celsius" comes
    out German at 0.24)."""
    def base(column: str) -> pa.Array:
        values = batch.column(column)
        unsure = pc.fill_null(pc.less(batch.column(f"{column}_score"), MISMATCH_CONFIDENCE), True)
        values = pc.if_else(unsure, pa.scalar(None, pa.string()), values)  # no language: null, not "und"
        return pc.utf8_lower(pc.replace_substring_regex(values, r"[-_].*$", ""))

    differ = pc.not_equal(base("prompt_lang"), base("completion_lang"))
    return {"lang_mismatch": pc.cast(differ, pa.float64())}
