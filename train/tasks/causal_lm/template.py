"""The chat template a causal LM's records are rendered with: which one (`train.chat_template`), the documented
default for tokenizers without one, and the checks that it can render what the version holds.

Which template:

    unset          the tokenizer's own chat template; the default below when it has none (base models, GPT-2,
                   a model built from a config)
    default        always the default below
    a file path    the Jinja template in that file (e.g. a model family's template for a base checkpoint)
    template text  the value itself, when it contains `{{` or `{%`

The default renders every turn as a `### Role:` header line and the turn's text, an assistant turn ending
with the tokenizer's end-of-sequence token (BERT-style tokenizers, which have none, get their `[SEP]` as it),
turns separated by a blank line, tools (when a chat version has them) first as JSON:

    ### System:
    You are terse.

    ### User:
    Name a colour.

    ### Assistant:
    Blue.</s>

It needs no new tokens (no embedding grows), so any tokenizer renders it; a model starts an answer after
`### Assistant:` and ends it with the end-of-sequence token.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UserError

DEFAULT_NAME = "sftpipe default"
DEFAULT_TEMPLATE = (
    "{%- if tools %}{{- '### Tools:\\n' + (tools | tojson) + '\\n\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{{- '### ' + (message['role'] | capitalize) + ':\\n' + message['content'] }}"
    "{%- if message['role'] == 'assistant' %}{{- eos_token }}{%- endif %}"
    "{{- '\\n\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '### Assistant:\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class ChatTemplate:
    source: str  # where it came from, for run.json and the card: "the tokenizer's", "sftpipe default", a path
    text: str  # the Jinja source

    @property
    def renders_tool_calls(self) -> bool:
        """Whether the template reads Hugging Face's `tool_calls` (else a call stays an assistant turn of JSON)."""
        return "tool_calls" in self.text

    @property
    def reads_tools(self) -> bool:
        return "tools" in self.text


def choose(setting: str | None, tokenizer) -> ChatTemplate:
    """The template `train.chat_template` names for this tokenizer (see the module docstring)."""
    if setting is None:
        own = tokenizer.chat_template
        if isinstance(own, dict):  # named templates: the default one
            own = own.get("default") or next(iter(own.values()), None)
        return ChatTemplate("the tokenizer's", own) if own else ChatTemplate(DEFAULT_NAME, DEFAULT_TEMPLATE)
    if setting == "default":
        return ChatTemplate(DEFAULT_NAME, DEFAULT_TEMPLATE)
    if "{{" in setting or "{%" in setting:
        return ChatTemplate("train.chat_template", setting)
    path = Path(setting).expanduser()
    try:
        return ChatTemplate(str(path), path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"train.chat_template: cannot read template file {setting}: {exc.strerror or exc}") from None


def render(tokenizer, template: ChatTemplate, turns: list[dict[str, Any]], tools: list | None = None, *,
           add_generation_prompt: bool = False) -> str:
    """The text of `turns` under `template` (exceptions of the template pass through: callers say which row)."""
    return tokenizer.apply_chat_template(
        turns, tools=tools if template.reads_tools else None, chat_template=template.text, tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )


def check(tokenizer, template: ChatTemplate, *, model: str, system_rows: int) -> None:
    """One-line UserError unless `template` renders a user and an assistant turn, a generation prompt and, when
    `system_rows` rows of the version have a system prompt, a system turn (raising or silently dropping it are
    both failures: the model would never see what the data says)."""
    where = f"the chat template ({template.source}) of base model {model}"
    probe = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    try:
        rendered = render(tokenizer, template, probe)
        render(tokenizer, template, probe[:1], add_generation_prompt=True)
    except Exception as exc:  # noqa: BLE001 - a template raises anything (TemplateError, TypeError, ...)
        raise UserError(f"{where} cannot render a user turn and its answer: {_one_line(exc)}") from None
    if "Blue." not in rendered:
        raise UserError(f"{where} drops the assistant's text (rendered: {rendered[:120]!r})")
    if not system_rows:
        return
    marker = "Answer in one word."
    fix = ("set train.chat_template to a template that renders system turns (`default`, or a file), or publish "
           "the version without system prompts")
    try:
        rendered = render(tokenizer, template, [{"role": "system", "content": marker}, *probe])
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{where} cannot render a system turn ({_one_line(exc)}), and {system_rows} rows have a "
                        f"system prompt: {fix}") from None
    if marker not in rendered:
        raise UserError(f"{where} drops system turns, and {system_rows} rows have a system prompt: {fix}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
