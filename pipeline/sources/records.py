"""Mapping a source record onto a generative payload (`generation`, `chat`), with a reason for every way a
record can be malformed. Classification's mapping (`text_field`, `label_field`) is the stage's own.

Record formats (`record_format` of a source; field names in `fields:` where a source names them otherwise):

| record_format | what a record holds | default fields |
|---|---|---|
| `fields` | two (or three) mapped fields, nested paths allowed (`translation.en`) | `prompt`, `completion`, `system` |
| `alpaca` | an instruction, an optional input (joined to it by a blank line, as Alpaca prompts have it), the output, optional `system` and `history` (earlier `[instruction, output]` pairs) | `instruction`, `input`, `output`, `system`, `history` |
| `sharegpt` | `conversations` of `{from, value}` turns: `human` / `gpt` / `system`, and the tool roles `function_call` (a call: an assistant turn) / `observation` (its result: a `tool` turn); optional `system` and `tools` | `conversations`, `system`, `tools` |
| `messages` | OpenAI / Hugging Face `{role, content}` turns; an assistant turn with `tool_calls` becomes a call (its calls' JSON) | `messages`, `tools` |

A `generation` dataset takes a conversation of one user turn and its answer (and a system turn); a
longer one is rejected (`several_turns_need_chat_kind`), as is an Alpaca record with `history`. A `chat`
dataset takes every format but `fields`; an Alpaca record becomes a conversation (its history first).
"""
from __future__ import annotations

import json
from typing import Any

from schemas.chat import role_order_problem
from pipeline.sources.config import DEFAULT_FIELDS, SourceConfig

# The fields a record must have (a missing optional one is simply absent).
REQUIRED = {"fields": ("prompt", "completion"), "alpaca": ("instruction", "output"),
            "sharegpt": ("conversations",), "messages": ("messages",)}
# How a turn's role and text are named, and which roles mean what.
TURN_KEYS = {"sharegpt": ("from", "value"), "messages": ("role", "content")}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "function_call": "assistant", "observation": "tool", "tool": "tool"}
MESSAGES_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                  "tool": "tool", "function": "tool", "ipython": "tool"}

Error = tuple[str, dict[str, Any] | None]


def fields_of(source: SourceConfig) -> dict[str, str]:
    return {**DEFAULT_FIELDS[source.record_format], **(source.fields or {})}


def required_columns(source: SourceConfig) -> dict[str, str]:
    """The top-level columns a source's files must have (the first part of each required field's path)."""
    fields = fields_of(source)
    return {r: fields[r].split(".")[0] for r in REQUIRED[source.record_format]}


DEFAULT_FORMAT = {"generation": "fields", "chat": "messages"}


def resolved(source: SourceConfig, kind: str) -> SourceConfig:
    """The source with its record format settled for `kind`; ValueError for a format the kind cannot take."""
    if kind not in DEFAULT_FORMAT:
        if source.record_format is not None or source.fields is not None:
            raise ValueError(f"record_format / fields are for generation and chat datasets; {kind} reads "
                             "text_field and label_field")
        return source
    fmt = source.record_format or DEFAULT_FORMAT[kind]
    if kind == "chat" and fmt == "fields":
        raise ValueError("record_format fields maps two fields onto a generation record; a chat dataset reads "
                         "alpaca, sharegpt or messages")
    return source if fmt == source.record_format else source.model_copy(update={"record_format": fmt})


_MISSING = object()


def get_path(record: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (`translation.en`), or _MISSING; a key holding the dot wins."""
    if path in record:
        return record[path]
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _string(record: dict, field: str, path: str, required: bool) -> tuple[str | None, Error | None]:
    value = get_path(record, path)
    if value is _MISSING or value is None or (isinstance(value, float) and value != value):
        return None, (("missing_field", {"field": path}) if required else None)
    if isinstance(value, (dict, list)):
        return None, ("field_not_a_string", {"field": path, "type": type(value).__name__})
    if isinstance(value, bool):
        return None, ("field_not_a_string", {"field": path, "type": "bool"})
    return str(value), None


def map_record(source: SourceConfig, record: dict[str, Any], kind: str) -> tuple[Error | None, dict[str, Any]]:
    """(error, payload): the record as the kind's payload, or the first reason it cannot be one."""
    fmt = source.record_format
    fields = fields_of(source)
    if fmt == "fields":
        return _map_fields(record, fields)
    if fmt == "alpaca":
        error, messages, system = _alpaca_turns(record, fields, kind)
        tools = None
    else:
        error, messages, system = _conversation(record, fields, fmt, source.roles or {})
        tools = None
        if error is None:
            error, tools = _tools(record, fields)
    if error is not None:
        return error, {}
    if system:
        messages = [{"role": "system", "content": system}, *messages]
    error = check_turns(messages)
    if error is not None:
        return error, {}
    if kind == "chat":
        return None, {"messages": messages, "tools": tools}
    return _as_generation(messages)


def _map_fields(record: dict, fields: dict[str, str]) -> tuple[Error | None, dict[str, Any]]:
    prompt, error = _string(record, "prompt", fields["prompt"], True)
    if error:
        return error, {}
    completion, error = _string(record, "completion", fields["completion"], True)
    if error:
        return error, {}
    system, error = _string(record, "system", fields["system"], False)
    if error:
        return error, {}
    if not prompt.strip():
        return ("empty_prompt", {"field": fields["prompt"]}), {}
    if not completion.strip():
        return ("empty_response", {"field": fields["completion"]}), {}
    return None, {"prompt": prompt, "completion": completion, "system": system or None}


def _alpaca_turns(record: dict, fields: dict[str, str], kind: str) -> tuple[Error | None, list[dict], str | None]:
    instruction, error = _string(record, "instruction", fields["instruction"], True)
    if error:
        return error, [], None
    output, error = _string(record, "output", fields["output"], True)
    if error:
        return error, [], None
    query, error = _string(record, "input", fields["input"], False)
    if error:
        return error, [], None
    system, error = _string(record, "system", fields["system"], False)
    if error:
        return error, [], None
    prompt = "\n\n".join(p for p in (instruction, query) if p and p.strip())
    history = get_path(record, fields["history"])
    turns: list[dict] = []
    if history is not _MISSING and history not in (None, []):
        if kind != "chat":
            return ("history_needs_chat_kind", {"field": fields["history"], "turns": len(history) if isinstance(history, list) else None}), [], None
        if not isinstance(history, list) or not all(isinstance(h, (list, tuple)) and len(h) == 2 for h in history):
            return ("history_not_a_list_of_pairs", {"field": fields["history"]}), [], None
        for q, a in history:
            if not isinstance(q, str) or not isinstance(a, str):
                return ("field_not_a_string", {"field": fields["history"]}), [], None
            turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    turns += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return None, turns, system


def _conversation(record: dict, fields: dict[str, str], fmt: str, role_overrides: dict[str, str]
                  ) -> tuple[Error | None, list[dict], str | None]:
    key = "conversations" if fmt == "sharegpt" else "messages"
    path = fields[key]
    turns = get_path(record, path)
    if turns is _MISSING or turns is None:
        return ("missing_field", {"field": path}), [], None
    if isinstance(turns, str):  # a conversation stored as JSON text (a CSV cell, a string column)
        try:
            turns = json.loads(turns)
        except ValueError:
            return ("conversation_not_a_list", {"field": path, "type": "str"}), [], None
    if not isinstance(turns, (list, tuple)):
        return ("conversation_not_a_list", {"field": path, "type": type(turns).__name__}), [], None
    role_key, content_key = TURN_KEYS[fmt]
    roles = {**(SHAREGPT_ROLES if fmt == "sharegpt" else MESSAGES_ROLES), **role_overrides}
    out: list[dict] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return ("turn_not_an_object", {"field": path, "turn": i, "type": type(turn).__name__}), [], None
        raw_role = turn.get(role_key, _MISSING)
        if raw_role is _MISSING:
            return ("missing_field", {"field": f"{path}[{i}].{role_key}"}), [], None
        if not isinstance(raw_role, str) or raw_role not in roles:
            return ("unknown_role", {"turn": i, "role": raw_role, "known": sorted(roles)}), [], None
        content = turn.get(content_key)
        if content is None and fmt == "messages" and turn.get("tool_calls"):
            content = _calls_json(turn["tool_calls"])
        if content is None:
            return ("missing_field", {"field": f"{path}[{i}].{content_key}"}), [], None
        if not isinstance(content, str):
            return ("content_not_a_string", {"turn": i, "type": type(content).__name__}), [], None
        out.append({"role": roles[raw_role], "content": content})
    system, error = _string(record, "system", fields["system"], False) if "system" in fields else (None, None)
    if error:
        return error, [], None
    return None, out, system


def _calls_json(tool_calls: Any) -> str:
    """OpenAI `tool_calls` as the call JSON this project keeps: {"name", "arguments"} (a list for several)."""
    calls = []
    for call in tool_calls if isinstance(tool_calls, list) else [tool_calls]:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        arguments = fn.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        calls.append({"name": fn.get("name"), "arguments": arguments})
    return json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)


def _tools(record: dict, fields: dict[str, str]) -> tuple[Error | None, str | None]:
    if "tools" not in fields:
        return None, None
    tools = get_path(record, fields["tools"])
    if tools is _MISSING or tools is None or tools == "" or tools == []:
        return None, None
    if isinstance(tools, str):
        try:
            json.loads(tools)
        except ValueError:
            return ("tools_not_json", {"field": fields["tools"]}), None
        return None, tools
    return None, json.dumps(tools, ensure_ascii=False)


def check_turns(messages: list[dict]) -> Error | None:
    """Empty turns, then the role order (`schemas.chat.ROLE_ORDER`)."""
    empty = {"assistant": "empty_response", "user": "empty_prompt"}
    for i, m in enumerate(messages):
        if not m["content"].strip():
            return (empty.get(m["role"], "empty_turn"), {"turn": i, "role": m["role"]})
    problem = role_order_problem(m["role"] for m in messages)
    return None if problem is None else (problem, {"roles": [m["role"] for m in messages][:40]})


def _as_generation(messages: list[dict]) -> tuple[Error | None, dict[str, Any]]:
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    turns = messages[1:] if system is not None else messages
    roles = [m["role"] for m in turns]
    if roles != ["user", "assistant"]:
        return ("several_turns_need_chat_kind", {"roles": roles[:40]}), {}
    return None, {"prompt": turns[0]["content"], "completion": turns[1]["content"], "system": system}
