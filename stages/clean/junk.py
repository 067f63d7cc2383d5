"""Signals for short junk: rows that are no text at all, which Gopher's rules (50+ words) never see.

Collected data carries rows that are not examples of anything: "n/a", "null", a URL alone, a footer link
or an empty table, one token repeated. Each signal here scores one of those shapes; the default rules
(`DEFAULT_FILTERS` in `stages/clean/__init__.py`, classification only) drop them. Measured on the planted
junk of issue #21's corrupted TREC and SMS sets and on every real row of SMS, TREC and alpaca
(`benchmarks/clean/`): together with the language rule they remove 97 % of the planted junk and at most
0.5 % of the real rows of any set.

| signal | reads | meaning | default rule (classification) |
|---|---|---|---|
| `placeholder_only` | the text | 1 when its letters and digits, case-folded, are a known placeholder (`n/a`, `null`, `none`, `nan`, `undefined`, `[deleted]`, `tbd`, ...) | `{max: 0}` |
| `url_only` | the text | 1 when it holds a URL and nothing else but punctuation | `{max: 0}` |
| `markup_share` | the text **before normalization** | share of its characters inside HTML tags, comments and entities | `{max: 0.5}` |
| `top_token_share` | the text | share of its words that are its most frequent word (case-folded); null under 4 words | `{max: 0.5}` |

`markup_share` reads the field as the stage received it (`raw=True`, pipeline/filters.py): after
`strip_html` a footer link is "Click here" and an unsubscribe line "Unsubscribe | View in browser",
which no rule on the normalized text can tell from a message.

A text with no letter or digit at all (":)", "...", "-") is not a placeholder here: it has no word, and
`n_words: {min: 1}` drops it first (`stages/clean/__init__.py` says what a word is).

Generative kinds get none of these by default: an answer "None" (a Python question), a URL (asked for
one), HTML (an HTML question) or a repeated word ("Say hello five times") is a right answer. Name the
field to use one: `prompt.placeholder_only: {max: 0}`.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.filters import signal
from stages.clean.words import split_words

# Case-folded letters and digits of a text that mean "no value" (each non-alphanumeric run is one space:
# "#N/A" → "n a", "[deleted]" → "deleted").
PLACEHOLDERS = frozenset({"n a", "na", "null", "none", "nil", "nan", "undefined", "deleted", "removed", "tbd",
                          "unknown", "test"})
_NOT_ALNUM = r"[^\p{L}\p{N}]+"
_URL = r"(?i)(?:https?://|www\.)\S+"
# Markup: a comment, an opening / closing / self-closing tag whose name starts with a letter, an entity.
_MARKUP = r"(?s)<!--.*?-->|</?[A-Za-z][^<>]*>|&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);"
TOP_TOKEN_MIN_WORDS = 4  # "ok ok" and "Bye bye" are messages; four of one word in a short text is spam


def _alnum_words(texts: pa.Array) -> pa.Array:
    """Letters and digits, case-folded, each other run one space, trimmed."""
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(texts), _NOT_ALNUM, " "))


@signal("placeholder_only")
def placeholder_only(texts):
    words = _alnum_words(texts)
    hit = pc.is_in(words, value_set=pa.array(sorted(PLACEHOLDERS)))
    return {"placeholder_only": pc.cast(pc.fill_null(hit, False), pa.float64())}


@signal("url_only")
def url_only(texts):
    has_url = pc.fill_null(pc.match_substring_regex(texts, _URL), False)
    rest = pc.replace_substring_regex(pc.replace_substring_regex(texts, _URL, " "), r"[^\p{L}\p{N}]+", "")
    only = pc.and_(has_url, pc.equal(pc.utf8_length(rest), 0))
    return {"url_only": pc.cast(pc.fill_null(only, False), pa.float64())}


@signal("markup_share", raw=True)
def markup_share(texts):
    """Characters inside markup / all characters (empty text: null). Reads the text before normalization."""
    total = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.float64)
    outside = pc.utf8_length(pc.replace_substring_regex(texts, _MARKUP, "")).to_numpy(zero_copy_only=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (total - outside) / total
    return {"markup_share": pa.array(share, pa.float64(), mask=~(total > 0))}  # empty or null: null


@signal("top_token_share")
def top_token_share(texts):
    """Share of the words that are the most frequent one, case-folded (texts of 4+ words; else null).
    Words as the Gopher signals count them (standalone punctuation is none)."""
    flat, doc = split_words(pc.utf8_lower(texts))
    n = len(texts)
    out = np.full(n, np.nan)
    counts = np.bincount(doc, minlength=n)
    if len(flat):
        codes = pc.dictionary_encode(flat).indices.to_numpy(zero_copy_only=False).astype(np.int64)
        pair = doc.astype(np.int64) * (int(codes.max()) + 1) + codes
        uniq, per_pair = np.unique(pair, return_counts=True)
        top = np.zeros(n, dtype=np.int64)
        np.maximum.at(top, uniq // (int(codes.max()) + 1), per_pair)
        ok = counts >= TOP_TOKEN_MIN_WORDS
        out[ok] = top[ok] / counts[ok]
    return {"top_token_share": pa.array(out, pa.float64(), mask=np.isnan(out))}

