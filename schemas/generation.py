"""The `generation` record kind: one prompt, one response — instruction tuning, QA, summarization,
translation (seq2seq).

Published with TRL's prompt–completion column names, `prompt` and `completion` (strings), and an optional
`system` string (null where the source has none). A row loads with `datasets` as
`{"prompt": str, "completion": str, "system": str | None}`: TRL's `SFTTrainer` takes `prompt` /
`completion` as they are (the loss on the completion only); LLaMA-Factory and Axolotl read the JSONL that
`sftpipe export --format alpaca` writes.

Fields a rule, a dedupe key or the report can name: `prompt`, `completion`, `system`, `user` (= the
prompt), `assistant` and `last_assistant` (= the completion), `all` (system, prompt and completion).
"""
from __future__ import annotations

import pyarrow as pa

from schemas import views
from schemas.record import RecordKind, TextParts

_prompt, _completion, _system = views.column("prompt"), views.column("completion"), views.column("system")
_pair = views.joined(_prompt, _completion)
_all = views.joined(_system, _prompt, _completion)

CARD = """\
Each row is one prompt and one response, in Hugging Face TRL's *prompt–completion* form:

| column | type | what |
|---|---|---|
| `prompt` | string | the instruction or input (Alpaca's `instruction` and `input` joined by a blank line) |
| `completion` | string | the response to learn |
| `system` | string, null | a system prompt, where the source has one |

Train with TRL (the loss covers the completion only):

```python
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

ds = load_dataset("parquet", data_dir="{path}")
trainer = SFTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=ds["train"], eval_dataset=ds["validation"],
                     args=SFTConfig(output_dir="out"))
```

`sftpipe export {dataset} {version} --format alpaca` writes the same rows as Alpaca JSONL
(LLaMA-Factory, Axolotl); `--format messages` as OpenAI-style conversations.
"""

GENERATION = RecordKind(
    name="generation",
    payload=(
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("completion", pa.string(), nullable=False),
        pa.field("system", pa.string()),  # null: no system prompt
    ),
    description="a prompt and its completion (optional system prompt); trained as a causal or seq2seq LM",
    views={"prompt": _prompt, "completion": _completion, "system": _system, "user": _prompt,
           "assistant": _completion, "last_assistant": _completion, "all": _all},
    parts=TextParts(("prompt", "completion", "system"), views.rewrite_columns),
    dedupe_keys={"prompt": _prompt, "completion": _completion, "pair": _pair, "conversation": _all},
    default_key="prompt",
    render=views.labelled(("system", _system), ("prompt", _prompt), ("completion", _completion)),
    task_categories=("text-generation",),
    card=CARD,
)
