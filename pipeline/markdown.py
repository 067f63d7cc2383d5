"""Which parts of a text are code: fenced code blocks and inline code spans, as Markdown writes them.

Responses in instruction data hold code whose every character matters — indentation, blank lines, `<tags>`,
`{{ templates }}`, `#include`. Clean's normalizers rewrite the *prose* of a generative record only
(`map_prose`), language identification and placeholder detection read the prose only (`prose`), and a
response cut off inside a code block is found by its unclosed fence (`unclosed_fence`).

What counts as code (CommonMark's rules, simplified where they do not matter here):
- a fenced block: a line of three or more backticks or tildes (indented at most three spaces, an info
  string after it allowed), up to a line of the same character at least as long, or to the end of the
  text when no such line comes (an *unclosed* fence);
- an inline code span: a run of backticks, text on the same line, the same run of backticks.
Indented code blocks (four spaces, no fence) are not told apart from prose: the normalizers that run on
generative fields by default keep indentation and line breaks anyway.

Texts without a backtick or a tilde fence — most of them — take the vectorized path: `fn` over them whole.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HINT = r"`|~~~"  # a text without these has no code
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*$", re.M)
_INLINE = re.compile(r"(?<!`)(`+)(?!`)[^\n]*?(?<!`)\1(?!`)")


def segments(text: str) -> list[tuple[bool, str]]:
    """The text as consecutive (is_code, piece) parts; the pieces joined give the text back."""
    return [(kind != PROSE, piece) for kind, piece in _scan(text)]


PROSE, CODE, OPEN_CODE = 0, 1, 2  # OPEN_CODE: a fenced block that runs to the end of the text unclosed


def _scan(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pos = 0
    while True:
        m = _FENCE_OPEN.search(text, pos)
        if m is None:
            _inline(text[pos:], out)
            return [p for p in out if p[1]]
        # A backtick fence's info string may not hold a backtick (it is an inline span then).
        if m.group(1)[0] == "`" and "`" in text[m.end(1):m.end()]:
            _inline(text[pos:m.end()], out)
            pos = m.end()
            continue
        _inline(text[pos:m.start()], out)
        fence = m.group(1)
        close = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$", re.M)
        c = close.search(text, m.end() + 1) if m.end() < len(text) else None
        end = len(text) if c is None else c.end()
        out.append((OPEN_CODE if c is None else CODE, text[m.start():end]))
        pos = end


def _inline(text: str, out: list[tuple[int, str]]) -> None:
    pos = 0
    for m in _INLINE.finditer(text):
        out.append((PROSE, text[pos:m.start()]))
        out.append((CODE, m.group(0)))
        pos = m.end()
    out.append((PROSE, text[pos:]))


def has_code_hint(texts: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.match_substring_regex(texts, _HINT), False).to_numpy(zero_copy_only=False),
                      dtype=bool)


def map_prose(texts: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """`fn` (a string array to a string array of the same length) over the prose of every text; code
    parts come back byte for byte. `fn` runs once over all the prose pieces of the batch."""
    hint = has_code_hint(texts)
    if not hint.any():
        return fn(texts)
    out = texts
    plain = ~hint
    if plain.any():
        out = pc.replace_with_mask(out, pa.array(plain), fn(texts.filter(pa.array(plain))))
    rows = np.flatnonzero(hint)
    parts = [segments(t) for t in texts.take(pa.array(rows)).to_pylist()]
    prose = [piece for row in parts for code, piece in row if not code]
    new_prose = iter(fn(pa.array(prose, pa.string())).to_pylist()) if prose else iter(())
    rebuilt = ["".join(piece if code else next(new_prose) for code, piece in row) for row in parts]
    return pc.replace_with_mask(out, pa.array(hint), pa.array(rebuilt, pa.string()))


def map_prose_steps(texts: pa.Array, steps: list[Callable[[pa.Array], pa.Array]]) -> tuple[pa.Array, list[np.ndarray]]:
    """`map_prose` for several functions in turn, splitting each text once: the new texts, and per step a
    mask of the texts it changed."""
    n = len(texts)
    changed = [np.zeros(n, dtype=bool) for _ in steps]
    hint = has_code_hint(texts)
    plain = np.flatnonzero(~hint)
    out = texts
    if len(plain):
        values = texts.take(pa.array(plain))
        for k, fn in enumerate(steps):
            new = fn(values)
            changed[k][plain] = np.asarray(pc.fill_null(pc.not_equal(new, values), False).to_numpy(zero_copy_only=False), dtype=bool)
            values = new
        out = pc.replace_with_mask(out, pa.array(~hint), values) if hint.any() else values
    rows = np.flatnonzero(hint)
    if len(rows):
        parts = [segments(t) for t in texts.take(pa.array(rows)).to_pylist()]
        pieces = [piece for row in parts for code, piece in row if not code]
        owner = np.array([r for r, row in zip(rows, parts) for code, _ in row if not code], dtype=np.int64)
        values = pa.array(pieces, pa.string())
        for k, fn in enumerate(steps):
            if not len(values):
                break
            new = fn(values)
            differs = np.asarray(pc.fill_null(pc.not_equal(new, values), False).to_numpy(zero_copy_only=False), dtype=bool)
            changed[k][owner[differs]] = True
            values = new
        new_prose = iter(values.to_pylist())
        rebuilt = ["".join(piece if code else next(new_prose) for code, piece in row) for row in parts]
        out = pc.replace_with_mask(out, pa.array(hint), pa.array(rebuilt, pa.string()))
    return out, changed


def prose(texts: pa.Array, code_placeholder: str = " ") -> pa.Array:
    """Every text with its code parts replaced by `code_placeholder`: what a reader's language is."""
    hint = has_code_hint(texts)
    if not hint.any():
        return texts
    rows = np.flatnonzero(hint)
    stripped = ["".join(code_placeholder if code else piece for code, piece in segments(t))
                for t in texts.take(pa.array(rows)).to_pylist()]
    return pc.replace_with_mask(texts, pa.array(hint), pa.array(stripped, pa.string()))


def unclosed_fence(texts: pa.Array) -> np.ndarray:
    """Per text: whether a fenced code block is opened and never closed (the text was cut inside code)."""
    out = np.zeros(len(texts), dtype=bool)
    hint = np.flatnonzero(has_code_hint(texts))
    for i, t in zip(hint, texts.take(pa.array(hint, pa.int64())).to_pylist()):
        out[i] = any(kind == OPEN_CODE for kind, _ in _scan(t))
    return out
