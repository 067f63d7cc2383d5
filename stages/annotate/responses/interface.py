"""What an annotator sees: the labelling config of each review mode and the task data of a row.

The conversation before the response is shown turn by turn with its roles (`Paragraphs`, dialogue layout,
`role` / `content` keys — Label Studio Community has no `Chat` tag); the response with the `Text` tag.
Both render their values as text, never as HTML (checked in a real browser by the tests). Every value in
the config is XML-escaped.
"""
from __future__ import annotations

import hashlib
from typing import Any
from xml.sax.saxutils import quoteattr

CONTEXT, RESPONSE = "context", "response"  # object tags (task data keys)
RESPONSE_A, RESPONSE_B = "response_a", "response_b"
RATING, FLAGS, EDITED, PREFERENCE = "rating", "flags", "edited", "preference"  # control tags
PREFERENCE_CHOICES = ("A", "B", "tie")

# A View around each object tag: its text keeps line breaks and code indentation. (The `<Style>.htx-text {...}`
# rule Label Studio's docs give does not reach the Text tag's element in 1.23; an inherited style does.)
PRE = 'style="white-space: pre-wrap;"'


def _header(instructions: str) -> str:
    return f"  <Header value={quoteattr(instructions)}/>\n" if instructions.strip() else ""


def _context() -> str:
    return (
        '  <Header value="Conversation"/>\n'
        f'  <View {PRE}><Paragraphs name="{CONTEXT}" value="${CONTEXT}" layout="dialogue" nameKey="role" textKey="content" '
        'saveTextResult="no"/></View>\n'
    )


def label_config(mode: str, *, flags: list[str] = (), max_rating: int = 5, instructions: str = "") -> str:
    """The labelling config of `mode` (rate, edit, compare)."""
    head = "<View>\n" + _header(instructions) + _context()
    if mode == "compare":
        return (
            head
            + '  <View style="display: flex; gap: 1em;">\n'
            f'    <View style="flex: 50%;"><Header value="Response A"/><View {PRE}><Text name="{RESPONSE_A}" value="${RESPONSE_A}" saveTextResult="no"/></View></View>\n'
            f'    <View style="flex: 50%;"><Header value="Response B"/><View {PRE}><Text name="{RESPONSE_B}" value="${RESPONSE_B}" saveTextResult="no"/></View></View>\n'
            "  </View>\n"
            '  <Header value="Which response is better?"/>\n'
            f'  <Choices name="{PREFERENCE}" toName="{RESPONSE_A}" choice="single-radio" showInline="true" required="true">\n'
            + "".join(f"    <Choice value={quoteattr(c)}/>\n" for c in PREFERENCE_CHOICES)
            + "  </Choices>\n</View>\n"
        )
    response = f'  <Header value="Response"/>\n  <View {PRE}><Text name="{RESPONSE}" value="${RESPONSE}" saveTextResult="no"/></View>\n'
    if mode == "edit":
        return (
            head + response
            + '  <Header value="Corrected response (edit the text; submit unchanged if it is right)"/>\n'
            f'  <View {PRE}><TextArea name="{EDITED}" toName="{RESPONSE}" editable="true" maxSubmissions="1" rows="12"/></View>\n'
            "</View>\n"
        )
    if mode == "rate":
        options = "".join(f"    <Choice value={quoteattr(f)}/>\n" for f in flags)
        flag_block = (
            '  <Header value="Problems (tick all that apply)"/>\n'
            f'  <Choices name="{FLAGS}" toName="{RESPONSE}" choice="multiple" showInline="true">\n{options}  </Choices>\n'
            if flags else ""
        )
        return (
            head + response
            + f'  <Header value="Rating (1 = unusable … {max_rating} = excellent)"/>\n'
            f'  <Rating name="{RATING}" toName="{RESPONSE}" maxRating="{max_rating}" required="true"/>\n'
            + flag_block + "</View>\n"
        )
    raise ValueError(f"no labelling config for mode {mode!r}")


def a_is_chosen(row_id: str) -> bool:
    """Whether the source's `chosen` response is shown as A: a coin flip per row, stable across runs (so the
    position tells the annotator nothing, and a task is the same every time it is built)."""
    return hashlib.sha256(f"preference-order:{row_id}".encode()).digest()[0] % 2 == 0


def turns(role_content: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": str(t["role"]), "content": str(t["content"] or "")} for t in role_content]


def conversation_and_response(kind: str, row: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """A row's conversation before the response, and the response (generation: system + prompt →
    completion; chat: every turn before the last assistant turn → that turn)."""
    if kind == "chat":
        messages = turns(row["messages"])
        last = max((i for i, t in enumerate(messages) if t["role"] == "assistant"), default=None)
        if last is None:
            return messages, ""
        return messages[:last], messages[last]["content"]
    context = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    context.append({"role": "user", "content": row["prompt"]})
    return context, row.get("completion") or ""


def task_data(kind: str, mode: str, row: dict[str, Any]) -> dict[str, Any]:
    """The task's data: the row id (how a task is found again), the conversation and the response(s)."""
    if mode == "compare":
        context = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        context.append({"role": "user", "content": row["prompt"]})
        a, b = (row["chosen"], row["rejected"]) if a_is_chosen(row["id"]) else (row["rejected"], row["chosen"])
        return {"row_id": row["id"], CONTEXT: context, RESPONSE_A: a, RESPONSE_B: b}
    context, response = conversation_and_response(kind, row)
    return {"row_id": row["id"], CONTEXT: context, RESPONSE: response}


PREFILL_VERSION = "original-response"  # model_version of edit mode's pre-annotations


def prefill(response: str, model_version: str = PREFILL_VERSION) -> dict[str, Any]:
    """edit: the response as a pre-annotation of the text area, so the annotator edits it in place."""
    return {"model_version": model_version,
            "result": [{"from_name": EDITED, "to_name": RESPONSE, "type": "textarea", "value": {"text": [response]}}]}
