"""Field views: one string per row, read from a record's payload with Arrow (no Python loop over rows).

A *view* is what a signal, a rule, a dedupe key or a report reads when it names a field: `prompt`,
`completion`, `system`, `user` (the user turns joined), `assistant` (the assistant turns joined),
`last_assistant`, `all` (the whole record). Each record kind declares which views it has and how they are
computed (`RecordKind.views`); the helpers here are the Arrow pieces those declarations are built from.
A view of a row that lacks the field is the empty string, never null, so every signal sees a text.

Turns are joined with a blank line (`TURN_SEPARATOR`), the separator Markdown already reads as a paragraph
break, so a joined view counts words and lines as a reader would.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TURN_SEPARATOR = "\n\n"

View = Callable[[pa.RecordBatch], pa.Array]  # a batch of one kind's rows → one string per row


def text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A string column as a plain string array, nulls as empty strings."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type != pa.string():
        values = values.cast(pa.string())
    return pc.fill_null(values, "") if values.null_count else values


def column(name: str) -> View:
    """The view of one string column."""
    return lambda batch: text(batch.column(name))


def _empty_as_null(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(pc.utf8_length(values), 0), pa.scalar(None, pa.string()), values)


def joined(*views: View, separator: str = TURN_SEPARATOR) -> View:
    """Several views of a row joined with `separator`, empty ones left out."""

    def view(batch: pa.RecordBatch) -> pa.Array:
        parts = [_empty_as_null(v(batch)) for v in views]
        return text(pc.binary_join_element_wise(*parts, separator, null_handling="skip"))

    return view


# -- conversations: a list<struct<role, content>> column ------------------------------------------------


def flat_turns(messages: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """Every turn of every row, in order: its role, its content, and the row it belongs to."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    flat = pc.list_flatten(messages)
    parent = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False).astype(np.int64)
    return text(flat.field("role")), text(flat.field("content")), parent


def regroup(values: pa.Array, parent: np.ndarray, n: int) -> pa.ListArray:
    """Flat values (each with the row it belongs to, rows in order) back into one list per row."""
    counts = np.bincount(parent, minlength=n) if len(parent) else np.zeros(n, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def last_of_role(role: pa.Array, parent: np.ndarray, n: int, wanted: str) -> np.ndarray:
    """Per row, the flat position of its last turn with role `wanted` (-1 where it has none)."""
    positions = np.flatnonzero(np.asarray(pc.equal(role, wanted).to_numpy(zero_copy_only=False), dtype=bool))
    last = np.full(n, -1, np.int64)
    last[parent[positions]] = positions  # later positions of a row overwrite earlier ones
    return last


def turns(messages_column: str, roles: Iterable[str] | None = None,
          where: Callable[[pa.Array, np.ndarray, int], np.ndarray] | None = None) -> View:
    """The contents of a row's turns with one of `roles` (all turns when None), joined; `where` narrows
    the turns further: (role, parent, n) → a boolean mask over the flat turns."""
    roles = None if roles is None else list(roles)

    def view(batch: pa.RecordBatch) -> pa.Array:
        role, content, parent = flat_turns(batch.column(messages_column))
        mask = np.ones(len(role), dtype=bool)
        if roles is not None:
            mask &= np.asarray(pc.is_in(role, value_set=pa.array(roles, pa.string())).to_numpy(zero_copy_only=False), dtype=bool)
        if where is not None:
            mask &= where(role, parent, batch.num_rows)
        keep = pa.array(mask)
        return text(pc.binary_join(regroup(content.filter(keep), parent[mask], batch.num_rows), TURN_SEPARATOR))

    return view


def before_last_assistant(role: pa.Array, parent: np.ndarray, n: int) -> np.ndarray:
    """The turns before each row's last assistant turn (every turn where there is none)."""
    last = last_of_role(role, parent, n, "assistant")
    positions = np.arange(len(role))
    limit = np.where(last[parent] >= 0, last[parent], np.iinfo(np.int64).max)
    return positions < limit


def last_assistant(role: pa.Array, parent: np.ndarray, n: int) -> np.ndarray:
    """Each row's last assistant turn only."""
    mask = np.zeros(len(role), dtype=bool)
    last = last_of_role(role, parent, n, "assistant")
    mask[last[last >= 0]] = True
    return mask


# -- rewriting texts in place (clean's normalizers) ------------------------------------------------------


def rewrite_columns(batch: pa.RecordBatch, names: list[str], fn: Callable[[pa.Array], pa.Array]
                    ) -> tuple[pa.RecordBatch, int]:
    """`fn` over the named string columns (nulls stay null); the new batch and how many rows changed."""
    changed = np.zeros(batch.num_rows, dtype=bool)
    for name in names:
        i = batch.schema.get_field_index(name)
        old = batch.column(i)
        valid = pc.is_valid(old)
        if not pc.any(valid).as_py():
            continue
        values = old.filter(valid)
        new_values = fn(values)
        new = pc.replace_with_mask(old, valid, new_values) if old.null_count else new_values
        changed |= np.asarray(pc.fill_null(pc.not_equal(new, old), False).to_numpy(zero_copy_only=False), dtype=bool)
        batch = batch.set_column(i, batch.schema.field(i), new)
    return batch, int(changed.sum())


def rewrite_turns(messages_column: str) -> Callable[[pa.RecordBatch, list[str], Callable[[pa.Array], pa.Array]],
                                                     tuple[pa.RecordBatch, int]]:
    """`fn` over the contents of the turns whose role is among the names, in a list<struct<role,
    content>> column; the new batch and how many rows had a turn changed."""

    def apply(batch: pa.RecordBatch, roles: list[str], fn: Callable[[pa.Array], pa.Array]) -> tuple[pa.RecordBatch, int]:
        i = batch.schema.get_field_index(messages_column)
        messages = batch.column(i)
        role, content, parent = flat_turns(messages)
        mask = pc.is_in(role, value_set=pa.array(list(roles), pa.string()))
        if not pc.any(mask).as_py():
            return batch, 0
        new_content = pc.replace_with_mask(content, mask, fn(content.filter(mask)))
        differs = np.asarray(pc.not_equal(new_content, content).to_numpy(zero_copy_only=False), dtype=bool)
        struct_type = messages.type.value_type
        flat = pa.StructArray.from_arrays([role, new_content], fields=list(struct_type))
        rebuilt = regroup(flat, parent, batch.num_rows).cast(messages.type)
        changed = len(np.unique(parent[differs]))
        return batch.set_column(i, batch.schema.field(i), rebuilt), changed

    return apply


def labelled(*parts: tuple[str, View]) -> View:
    """A readable rendering: each non-empty view under a `[name]` line, blank lines between them."""

    def view(batch: pa.RecordBatch) -> pa.Array:
        rendered = []
        for name, v in parts:
            values = v(batch)
            rendered.append(pc.if_else(pc.equal(pc.utf8_length(values), 0), pa.scalar(None, pa.string()),
                                       pc.binary_join_element_wise(f"[{name}]", values, "\n")))
        return text(pc.binary_join_element_wise(*rendered, TURN_SEPARATOR, null_handling="skip"))

    return view


def rendered_turns(messages_column: str) -> View:
    """A conversation as `[role]` lines, each followed by the turn's content, blank lines between turns."""

    def view(batch: pa.RecordBatch) -> pa.Array:
        role, content, parent = flat_turns(batch.column(messages_column))
        lines = pc.binary_join_element_wise(pc.binary_join_element_wise("[", role, "]", ""), content, "\n")
        return text(pc.binary_join(regroup(lines, parent, batch.num_rows), TURN_SEPARATOR))

    return view
