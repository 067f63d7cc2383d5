"""The `chat` record kind: a conversation, as TRL's conversational `messages` column.

`messages` is a list of `{role, content}` (both strings) with roles `system`, `user`, `assistant` and
`tool`; `tools` is the JSON text of the functions the assistant may call, as the source gave it (null where
it gave none). A message holds exactly these two keys: `datasets` gives a struct field that a message
lacks the value None, and chat templates that test `'tool_calls' in message` (Llama 3.1's) then fail —
so no optional keys ride along.

Function calling, as real function-calling data has it (ShareGPT's `function_call` / `observation`, the
OpenAI `tool_calls`): the call is an assistant turn whose content is the call's JSON
(`{"name": ..., "arguments": {...}}`, a list of them for parallel calls), and each result is a `tool` turn
right after it. `hf_messages` gives a conversation back in Hugging Face's tool-calling form (`tool_calls`
on the assistant turn) for templates that render tools; `ROLE_ORDER` is the order every stage checks.

Fields a rule, a dedupe key or the report can name: `system`, `user`, `assistant`, `tool` (the turns of that
role, joined), `last_assistant`, `prompt` (every turn before the last assistant turn), `completion`
(= `last_assistant`), `all` (every turn).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import pyarrow as pa

from schemas import views
from schemas.record import RecordKind, TextParts

ROLES = ("system", "user", "assistant", "tool")
MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)

ROLE_ORDER = (
    "an optional system turn first; then user turns, each answered by an assistant turn; between a user "
    "turn and the answer, any number of tool calls (an assistant turn) each followed by its tool result(s); "
    "the conversation ends on an assistant turn"
)


def role_order_problem(roles: Iterable[str]) -> str | None:
    """Why a conversation's sequence of roles breaks `ROLE_ORDER` (a rejection reason), or None."""
    roles = list(roles)
    if roles and roles[0] == "system":
        roles = roles[1:]
    if not roles:
        return "no_turns"
    previous = None
    for role in roles:
        if role == "system":
            return "system_turn_not_first"
        if previous is None and role == "assistant":
            return "assistant_before_user"
        if role == "tool" and previous not in ("assistant", "tool"):
            return "tool_result_without_call"
        if role == "user" and previous == "user":
            return "consecutive_user_turns"
        if role == "user" and previous == "tool":
            return "tool_result_without_answer"
        if role == "assistant" and previous == "assistant":
            return "consecutive_assistant_turns"
        previous = role
    if previous == "user":
        return "ends_on_user_turn"
    if previous == "tool":
        return "ends_on_tool_result"
    return None


def hf_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A conversation in Hugging Face's tool-calling form: an assistant turn followed by tool turns becomes
    `{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name", "arguments"}}]}`
    (its content parsed as one call or a list of calls); every other turn is copied. Turns whose content is
    not such JSON stay as they are."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        following = messages[i + 1]["role"] if i + 1 < len(messages) else None
        if m["role"] == "assistant" and following == "tool":
            try:
                calls = json.loads(m["content"])
            except (TypeError, ValueError):
                calls = None
            calls = [calls] if isinstance(calls, dict) else calls
            if isinstance(calls, list) and calls and all(isinstance(c, dict) and "name" in c for c in calls):
                out.append({"role": "assistant", "content": "",
                            "tool_calls": [{"type": "function", "function": {"name": c["name"],
                                                                             "arguments": c.get("arguments", {})}}
                                           for c in calls]})
                continue
        out.append({"role": m["role"], "content": m["content"]})
    return out


_turns = {role: views.turns("messages", [role]) for role in ROLES}
_last = views.turns("messages", where=views.last_assistant)
_prompt = views.turns("messages", where=views.before_last_assistant)
_all = views.turns("messages")

CARD = """\
Each row is a conversation, in Hugging Face TRL's *conversational* form:

| column | type | what |
|---|---|---|
| `messages` | list of `{{role: string, content: string}}` | roles `system`, `user`, `assistant`, `tool`; ends on an assistant turn |
| `tools` | string, null | the functions the assistant may call (JSON), where the source has them |

A tool call is an assistant turn whose content is the call's JSON, followed by its `tool` result turn(s).
Train with TRL (the tokenizer's chat template renders the turns):

```python
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

ds = load_dataset("parquet", data_dir="{path}")
trainer = SFTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=ds["train"], eval_dataset=ds["validation"],
                     args=SFTConfig(output_dir="out"))
```

For templates that render tool calls, `schemas.chat.hf_messages(row["messages"])` gives the turns in
Hugging Face's `tool_calls` form, and `json.loads(row["tools"])` the `tools=` argument of
`tokenizer.apply_chat_template`. `sftpipe export {dataset} {version} --format sharegpt` writes ShareGPT
JSONL (LLaMA-Factory, Axolotl); `--format messages` OpenAI-style JSONL.
"""

CHAT = RecordKind(
    name="chat",
    payload=(
        pa.field("messages", MESSAGES, nullable=False),
        pa.field("tools", pa.string()),  # JSON text of the callable functions; null: none
    ),
    description="a conversation of system / user / assistant / tool turns; trained as a causal LM",
    views={**_turns, "last_assistant": _last, "prompt": _prompt, "completion": _last, "all": _all},
    parts=TextParts(ROLES, views.rewrite_turns("messages")),
    dedupe_keys={"prompt": _prompt, "completion": _last, "pair": _all, "conversation": _all},
    default_key="conversation",
    render=views.rendered_turns("messages"),
    task_categories=("text-generation",),
    card=CARD,
)
