"""Normalization of generative records (`generation`, `chat`): per field, per turn, and safe for responses.

A response's code must survive clean: today's classification normalizers (strip HTML, NFKC, collapse every
whitespace run) would delete `<div>` from an HTML answer, turn `x²` into `x2`, and flatten a Python
function onto one line. So on generative kinds:

- every normalizer rewrites the *prose* of a field only: fenced code blocks and inline code come back byte
  for byte (`pipeline.markdown.map_prose`);
- each normalizer touches the fields the config names — `true` (every field), `false`, or a list of the
  kind's parts (generation: `prompt`, `completion`, `system`; chat: the turns of a role, `system`, `user`,
  `assistant`, `tool`) — and by default (the setting left out) only those that cannot change meaning:

| normalizer | default on generative kinds | why |
|---|---|---|
| `fix_mojibake` | every field | repairs UTF-8 read as cp1252 (`â€™` → `’`), nothing else |
| `remove_control` | every field | control and zero-width characters; keeps tab, newline, ZWJ/ZWNJ (emoji, Persian, Indic scripts) |
| `tidy_whitespace` | every field | `\r\n` → `\n`, blank-line runs → one blank line, leading blank lines and trailing whitespace of the field; indentation and single line breaks kept |
| `strip_html` | off | `<tags>` in instructions and answers are content (HTML questions, XML answers) |
| `nfkc` | off | NFKC turns `x²` into `x2`, `½` into `1⁄2` and full-width CJK punctuation into ASCII |
| `collapse_whitespace` | off | joins lines: Markdown lists, tables and poems lose their structure |
| `mask_pii` | off | as for classification |
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import markdown
from schemas.record import RecordKind
from schemas.views import flat_turns
from stages.clean.normalize import NORMALIZERS, mask_pii, repeat_until_stable

# Generative variants where the classification normalizer would change meaning or structure.
_CONTROL_KEEPING_JOINERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\x{200b}\x{200e}\x{200f}\x{2028}\x{2029}\x{feff}]"


def remove_control(texts: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(texts, _CONTROL_KEEPING_JOINERS, "")


def tidy_whitespace(texts: pa.Array) -> pa.Array:
    """Line ends to `\\n`, runs of blank (or whitespace-only) lines to one blank line."""
    texts = pc.replace_substring_regex(texts, r"\r\n?", "\n")
    return pc.replace_substring_regex(texts, r"\n(?:[ \t]*\n){2,}", "\n\n")


def collapse_whitespace(texts: pa.Array) -> pa.Array:
    """Space and tab runs to one space and blank-line runs to a line break, on prose pieces (which must
    keep their edges: the space before an inline code span)."""
    texts = pc.replace_substring_regex(texts, r"\r\n?", "\n")
    texts = pc.replace_substring_regex(texts, r"[^\S\n]+", " ")
    return pc.replace_substring_regex(texts, r" ?\n[ \n]*", "\n")


def trim_edges(texts: pa.Array) -> pa.Array:
    """A whole field's leading blank lines and trailing whitespace (indentation of its first line kept)."""
    texts = pc.replace_substring_regex(texts, r"^(?:[ \t]*\r?\n)+", "")
    return pc.utf8_rtrim_whitespace(texts)


DEFAULT_ON = ("fix_mojibake", "remove_control", "tidy_whitespace")


def resolve(settings: dict[str, bool | list[str] | None], kind: RecordKind) -> list[tuple[str, list[str]]]:
    """(normalizer, parts) in order, from the config's `normalize` settings for a generative kind."""
    parts = list(kind.parts.names)
    plan = []
    for name, value in settings.items():
        if value is None:
            value = name in DEFAULT_ON
        chosen = parts if value is True else [] if value is False else [p for p in parts if p in value]
        if chosen:
            plan.append((name, chosen))
    return plan


def normalize(batch: pa.RecordBatch, kind: RecordKind, plan: list[tuple[str, list[str]]], normalizers: dict,
              changed: dict[str, int]) -> pa.RecordBatch:
    """Apply the plan's normalizers to the prose of the named parts (each text split into prose and code
    once for all of them); count the texts (fields, turns) each one changed."""
    groups: dict[tuple[str, ...], list[str]] = {}  # the normalizers a part goes through → those parts
    for part in kind.parts.names:
        steps = tuple(name for name, parts in plan if part in parts)
        if steps:
            groups.setdefault(steps, []).append(part)
    for steps, parts in groups.items():
        def fn(texts: pa.Array, steps=steps) -> pa.Array:
            # Until stable, as for classification: NFKC can make a tag strip_html has not seen (`＜ｂ＞`).
            new, per_step = repeat_until_stable(
                lambda part: markdown.map_prose_steps(part, [normalizers[s] for s in steps]), texts)
            masks = dict(zip(steps, per_step))
            if "tidy_whitespace" in masks:  # edges belong to the whole field, not to a prose piece
                trimmed = trim_edges(new)
                masks["tidy_whitespace"] |= np.asarray(pc.not_equal(trimmed, new).to_numpy(zero_copy_only=False), dtype=bool)
                new = trimmed
            for name, mask in masks.items():
                changed[name] = changed.get(name, 0) + int(mask.sum())
            return new

        batch, _ = kind.parts.apply(batch, parts, fn)
    return batch


def empty_texts(batch: pa.RecordBatch, kind: RecordKind) -> tuple[np.ndarray, list[str | None]]:
    """Rows where a text the kind requires is empty (a required string field, or any turn of a
    conversation), and which field: what normalization may leave behind."""
    n = batch.num_rows
    empty = np.zeros(n, dtype=bool)
    where: list[str | None] = [None] * n
    for f in kind.payload:
        col = batch.column(f.name)
        if pa.types.is_string(f.type) and not f.nullable:
            hit = np.asarray(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0).to_numpy(zero_copy_only=False), dtype=bool)
            for i in np.flatnonzero(hit & ~empty):
                where[i] = f.name
            empty |= hit
        elif pa.types.is_list(f.type) and pa.types.is_struct(f.type.value_type):
            role, content, parent = flat_turns(col)
            hit = np.asarray(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(content)), 0).to_numpy(zero_copy_only=False), dtype=bool)
            roles = role.to_pylist()
            for pos in np.flatnonzero(hit):
                if not empty[parent[pos]]:
                    where[parent[pos]] = f"{f.name} ({roles[pos]} turn)"
                    empty[parent[pos]] = True
    return empty, where


# On generative kinds the classification steps run on each field's prose, two of them in the variants above
# that keep what a response needs, plus tidy_whitespace and mask_pii as steps of their own.
GENERATIVE_NORMALIZERS = {**NORMALIZERS, "remove_control": remove_control, "collapse_whitespace": collapse_whitespace,
                          "tidy_whitespace": tidy_whitespace, "mask_pii": mask_pii}
