"""clean's normalizers: each maps a pyarrow string array to a string array; the stage counts the rows each
one changed. Classification runs them in `NORMALIZERS` order, repeated until the text stops changing
(`normalize_until_stable`); generative kinds run them on each field's prose, also until stable
(`stages/clean/fields.py`, which holds their variants: `GENERATIVE_NORMALIZERS`).
"""
from __future__ import annotations

import html
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


_MOJIBAKE_HINT = r"[ÃÂ][\x{80}-\x{bf}]|â€|ï»¿|\x{fffd}"  # UTF-8 read as cp1252 / latin-1 (RE2 syntax)
_HTML_HINT = r"<[A-Za-z/!]|&(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);"
_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.I | re.S)
# A tag: a comment, or `<` + a letter (or `/` + a letter) up to the next `>` with no `<` inside. Not a tag:
# `a < b`, `I <3 you`, `<#>` (an SMS placeholder), and the masks mask_pii writes (`<EMAIL>`, `<PHONE>`,
# `<IP_ADDRESS>`), so that normalizing a masked text again leaves it as it is.
_TAG = re.compile(r"<!--.*?-->|</?(?!(?:EMAIL|PHONE|IP_ADDRESS)>)[A-Za-z][^<>]*>", re.S)
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


def _until_stable(fn, text: str) -> str:
    """Apply `fn` until the text stops changing (each step shortens it, so this ends)."""
    while True:
        new = fn(text)
        if new == text:
            return text
        text = new


def strip_html(texts):
    """Markup is markup whether it arrived as tags or escaped as entities: entities are decoded first
    (until none is left: a feed's double-escaped `&amp;lt;b&amp;gt;` is `<b>`), then comments, scripts,
    styles and tags are removed (block-level tags become a line break, others a space, so two words never
    run together and a removal never joins the pieces around it into a new tag or entity), again until
    none is left. So `Fish &amp; chips &lt;b&gt;bold&lt;/b&gt;` → `Fish & chips bold`, a news feed's
    escaped `&lt;A HREF="...">` links leave their text only, and `a &lt; b`, `I <3 you`, `<#>` keep their
    `<` (not a tag: no letter after it). The output holds no tag and no entity, so stripping it again
    changes nothing (issue #16, item 1: tags were removed first and entities decoded after, which turned
    escaped markup into live tags)."""

    def strip(text: str) -> str:
        text = _until_stable(html.unescape, text)
        text = _SCRIPT_STYLE.sub(" ", text)
        text = _BLOCK_TAG.sub("\n", text)
        return _until_stable(lambda t: _TAG.sub(" ", t), text)

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


def mask_pii(texts):
    for pattern, placeholder in PII_PATTERNS.values():
        texts = pc.replace_substring_regex(texts, pattern, placeholder)
    return texts


# Order matters: repair encoding before anything reads characters; strip markup before NFKC and
# whitespace so entities and tags leave no odd spacing behind.
NORMALIZERS = {
    "fix_mojibake": fix_mojibake,
    "strip_html": strip_html,
    "nfkc": nfkc,
    "remove_control": remove_control,
    "collapse_whitespace": collapse_whitespace,
}
# A step can make work for an earlier one: NFKC turns a full-width `＜ｂ＞` into the tag `<b>`, removing a
# zero-width space can close one up, and decoding `&Atilde;&copy;` yields mojibake. Normalization runs the
# chain again over the rows the last pass changed until none changes, so that normalizing a normalized text
# changes nothing (tests/test_clean.py checks it over the shared data and hostile cases).
MAX_NORMALIZE_PASSES = 5


def repeat_until_stable(one_pass, texts: pa.Array) -> tuple[pa.Array, list[np.ndarray]]:
    """Run `one_pass` (texts → new texts, a changed-rows mask per step) again over the rows the previous
    pass changed, until none changes or MAX_NORMALIZE_PASSES passes; per step, the rows it changed in any."""
    n = len(texts)
    rows = np.arange(n)
    current, masks = texts, None
    for _ in range(MAX_NORMALIZE_PASSES):
        if not len(rows):
            break
        start = current if len(rows) == n else current.take(pa.array(rows, pa.int64()))
        new, per_step = one_pass(start)
        if masks is None:
            masks = [np.zeros(n, dtype=bool) for _ in per_step]
        for mask, hit in zip(masks, per_step):
            mask[rows] |= hit
        moved = np.asarray(pc.fill_null(pc.not_equal(new, start), False).to_numpy(zero_copy_only=False), dtype=bool)
        if len(rows) == n:
            current = new
        elif moved.any():
            values = current.to_pylist()
            for i, v in zip(rows[moved], new.filter(pa.array(moved)).to_pylist()):
                values[i] = v
            current = pa.array(values, pa.string())
        rows = rows[moved]
    return current, masks if masks is not None else []


def normalize_until_stable(texts: pa.Array, steps: list[str]) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """The classification normalizers `steps`, in order, repeated until the text stops changing
    (`repeat_until_stable`); per step, which rows it changed in any pass."""
    def one_pass(part: pa.Array) -> tuple[pa.Array, list[np.ndarray]]:
        hits = []
        for step in steps:
            new = NORMALIZERS[step](part)
            hits.append(np.asarray(pc.fill_null(pc.not_equal(new, part), False).to_numpy(zero_copy_only=False), dtype=bool))
            part = new
        return part, hits

    out, masks = repeat_until_stable(one_pass, texts)
    return out, {step: masks[k] if masks else np.zeros(len(texts), dtype=bool) for k, step in enumerate(steps)}
