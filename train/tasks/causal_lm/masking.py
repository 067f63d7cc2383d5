"""Training examples of a causal LM with the loss on the answers only, the mask taken from the rendered turns.

For each assistant turn i of a conversation, the template renders two prefixes of it:

    P_i = render(turns[:i], add_generation_prompt=True)   everything up to where the answer starts
    S_i = render(turns[:i + 1])                            everything up to the end of that answer

and the whole conversation F = render(turns). The answer's characters in F are [|P_i ∩ F|, |S_i ∩ F|), where
|X ∩ F| is the length of the longest common prefix of X and F (= len(X) for the usual template, where each
prefix renders as the start of the whole; shorter, never wrong, for a template that renders the last turn
differently). F is tokenized once with character offsets; a token is trained (its label is its id) when it
overlaps an answer's characters, every other label is -100. Within an answer, tokens after its last special
token are not trained: the template's separator after the end-of-turn token (ChatML's newline after
`<|im_end|>`, Gemma's after `<end_of_turn>`) is formatting between turns, and generation stops at the
end-of-turn token anyway. So the trained tokens decode to exactly each answer plus its end-of-turn token
(tested for the default template, a ChatML template like Qwen's, a Llama-3 template, multi-turn and
tool-calling conversations).

This needs no `{% generation %}` marker in the template (which most stock templates lack, and which breaks
transformers' `return_assistant_tokens_mask` on them) and works for any template whose renders of prefixes
agree with the whole, i.e. every common one.

Examples longer than `max_length` tokens are cut at the end; one whose answers all fall beyond the cut has
nothing to learn and is left out (counted: `GenerativeTask.encoding_notes`).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from pipeline.errors import UserError
from train.tasks.causal_lm.template import ChatTemplate, render

IGNORE = -100
MASKING = "assistant turns (+ end-of-turn token), from the rendered turns' character offsets"


def special_token_ids(tokenizer) -> set[int]:
    """Ids of the tokenizer's special tokens (end-of-turn tokens among them), except the unknown token (which
    stands for text, not for a template's markup)."""
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, token in tokenizer.added_tokens_decoder.items() if getattr(token, "special", False)}
    ids.discard(tokenizer.unk_token_id)
    return ids


def answer_spans(tokenizer, template: ChatTemplate, turns: list[dict[str, Any]], tools: list | None
                 ) -> tuple[str, list[tuple[int, int]]]:
    """(the rendered conversation, the character span of each assistant turn in it)."""
    full = render(tokenizer, template, turns, tools)
    spans: list[tuple[int, int]] = []
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        start = _common_prefix(render(tokenizer, template, turns[:i], tools, add_generation_prompt=True), full) if i else 0
        end = _common_prefix(render(tokenizer, template, turns[: i + 1], tools), full)
        if spans and start < spans[-1][1]:
            start = spans[-1][1]
        if end > start:
            spans.append((start, end))
    return full, spans


def _common_prefix(prefix: str, full: str) -> int:
    return len(prefix) if full.startswith(prefix) else len(os.path.commonprefix([prefix, full]))


def encode(tokenizer, template: ChatTemplate, conversations: list[list[dict[str, Any]]],
           tools: list[list | None], max_length: int) -> dict[str, list]:
    """input_ids, attention_mask, labels (-100 outside the answers) and answer_cut (max_length cut an answer
    token) for every conversation that keeps at least one answer token within max_length."""
    texts, spans = [], []
    for turns, row_tools in zip(conversations, tools):
        try:
            text, row_spans = answer_spans(tokenizer, template, turns, row_tools)
        except Exception as exc:  # noqa: BLE001 - the template raised on this row
            raise UserError(f"the chat template ({template.source}) cannot render a record "
                            f"(roles {[t['role'] for t in turns]}): {' '.join(str(exc).split())}") from None
        texts.append(text)
        spans.append(row_spans)
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    special = np.array(sorted(special_token_ids(tokenizer)), dtype=np.int64)
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "answer_cut": []}
    for ids, offsets, row_spans in zip(enc["input_ids"], enc["offset_mapping"], spans):
        ids = np.asarray(ids, dtype=np.int64)
        labels = answer_labels(ids, np.asarray(offsets, dtype=np.int64).reshape(-1, 2), row_spans, special)
        cut = bool((labels[max_length:] != IGNORE).any())
        ids, labels = ids[:max_length], labels[:max_length]
        if not (labels != IGNORE).any():
            continue  # nothing to learn within max_length
        out["input_ids"].append(ids.tolist())
        out["attention_mask"].append([1] * len(ids))
        out["labels"].append(labels.tolist())
        out["answer_cut"].append(cut)
    return out


def answer_labels(ids: np.ndarray, offsets: np.ndarray, spans: list[tuple[int, int]], special: np.ndarray
                  ) -> np.ndarray:
    """Labels of one tokenized conversation: the id of every token overlapping an answer span, up to the span's
    last special token; -100 elsewhere."""
    labels = np.full(len(ids), IGNORE, dtype=np.int64)
    for start, end in spans:
        inside = np.flatnonzero((offsets[:, 1] > start) & (offsets[:, 0] < end))
        if not len(inside):
            continue
        is_special = np.isin(ids[inside], special)
        if is_special.any():
            inside = inside[: np.flatnonzero(is_special)[-1] + 1]
        labels[inside] = ids[inside]
    return labels


def end_of_turn_token(tokenizer, template: ChatTemplate) -> int | None:
    """The token that ends an assistant turn under `template` (the last special token of a rendered answer), or
    None when the template ends answers with plain text."""
    probe = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    text, spans = answer_spans(tokenizer, template, probe, None)
    if not spans:
        return None
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    special = np.array(sorted(special_token_ids(tokenizer)), dtype=np.int64)
    labels = answer_labels(ids, offsets, spans[-1:], special)
    trained = ids[labels != IGNORE]
    return int(trained[-1]) if len(trained) and trained[-1] in special else None


def prompt_ids(tokenizer, template: ChatTemplate, turns: list[dict[str, Any]], tools: list | None,
               max_length: int) -> list[int]:
    """The tokens a model is shown to answer the turns' last question: the turns with the generation prompt,
    cut at the START when longer than max_length (the question and the generation prompt are at the end)."""
    text = render(tokenizer, template, turns, tools, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:]
