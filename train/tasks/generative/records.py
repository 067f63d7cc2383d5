"""Generative records as the tasks read them: the columns per record kind, which rows can be used, and each
row as a conversation (the turns a chat template renders), a prompt and a reference answer.

A `generation` row (prompt, completion, optional system) is the conversation [system?, user: prompt,
assistant: completion]; a `chat` row is its `messages` (with its `tools`). What a model is asked when scored is
every turn before the LAST assistant turn, and the reference answer is that turn's content. Batches are the
dicts of columns `datasets.map` hands an encode function; the kind is told by the columns it holds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import UserError
from schemas.chat import MESSAGES

# the payload columns each kind is read with (Task.kinds)
COLUMNS = {"generation": ("prompt", "completion", "system"), "chat": ("messages", "tools")}

_TYPES = {"prompt": pa.string(), "completion": pa.string(), "system": pa.string(), "messages": MESSAGES,
          "tools": pa.string()}

Turn = dict[str, Any]


def usable_rows(table: pa.Table, file: Path) -> tuple[pa.Table, int]:
    """(rows with an answer to learn or score against, rows without one). UserError naming `file` when a column
    has the wrong type."""
    try:
        table = table.cast(pa.schema([(name, _TYPES.get(name, pa.string())) for name in table.column_names]))
    except (pa.ArrowException, ValueError) as exc:
        raise UserError(f"{file}: payload columns of the wrong type: {exc}".replace("\n", " ")) from None
    if "completion" in table.column_names:
        answered = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(table["completion"])), 0), False)
    else:
        answered = pa.array([bool(last_answer(m)) for m in table["messages"].to_pylist()], pa.bool_())
    kept = table.filter(answered)
    return kept, table.num_rows - kept.num_rows


def conversations(batch: dict[str, list]) -> list[list[Turn]]:
    """Every row of a batch as its turns (role, content)."""
    if "messages" in batch:
        return [[{"role": t["role"], "content": t["content"] or ""} for t in messages] for messages in batch["messages"]]
    systems = batch.get("system") or [None] * len(batch["prompt"])
    return [([{"role": "system", "content": s}] if s else []) + [{"role": "user", "content": p},
                                                                  {"role": "assistant", "content": c}]
            for p, c, s in zip(batch["prompt"], batch["completion"], systems)]


def tools(batch: dict[str, list]) -> list[list[dict] | None]:
    """Every row's callable functions (the `tools` JSON, parsed), None where it has none or they do not parse."""
    out = []
    for text in batch.get("tools") or [None] * len(next(iter(batch.values()))):
        try:
            value = json.loads(text) if text else None
        except ValueError:
            value = None
        out.append(value if isinstance(value, list) and value else None)
    return out


def last_assistant_index(turns: list[Turn]) -> int:
    for i in range(len(turns) - 1, -1, -1):
        if turns[i]["role"] == "assistant":
            return i
    return -1


def last_answer(turns: list[Turn] | None) -> str:
    i = last_assistant_index(turns or [])
    return (turns[i]["content"] or "") if i >= 0 else ""


def prompt_turns(turns: list[Turn]) -> list[Turn]:
    """The turns a model is shown when asked for the last answer."""
    i = last_assistant_index(turns)
    return turns[:i] if i >= 0 else turns


def references(rows: pa.Table) -> list[str]:
    """Each row's reference answer: the completion, or the last assistant turn."""
    if "completion" in rows.column_names:
        return rows["completion"].to_pylist()
    return [last_answer(m) for m in rows["messages"].to_pylist()]


def prompt_texts(rows: pa.Table) -> list[str]:
    """What each row asks, for a person reading predictions: the prompt (after a `[system]` block where there is
    one), or the turns before the last answer as `[role]` blocks."""
    if "prompt" in rows.column_names:
        systems = rows["system"].to_pylist() if "system" in rows.column_names else [None] * rows.num_rows
        return [f"[system]\n{s}\n\n{p}" if s else p for p, s in zip(rows["prompt"].to_pylist(), systems)]
    return ["\n\n".join(f"[{t['role']}]\n{t['content']}" for t in prompt_turns(m))
            for m in rows["messages"].to_pylist()]


def has_system_turn(rows: dict[str, pa.Table]) -> int:
    """How many rows (over every split) have a system turn."""
    n = 0
    for table in rows.values():
        if "system" in table.column_names:
            empty = pc.sum(pc.equal(table["system"], "")).as_py() or 0
            n += table.num_rows - table["system"].null_count - empty
        elif "messages" in table.column_names:
            n += sum(1 for m in table["messages"].to_pylist() if any(t["role"] == "system" for t in m))
    return n
