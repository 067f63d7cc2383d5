"""The `preference` record kind: one prompt, a preferred and a dispreferred response — preference tuning.

Published in Hugging Face TRL's standard preference form: `prompt`, `chosen`, `rejected` (strings), the
columns `DPOTrainer` and `RewardTrainer` read as they are. `annotate.mode: compare` asks people which
response is better and swaps the two where they prefer the source's `rejected`; a tie is set aside.

Fields a rule, a dedupe key or the report can name: `prompt` (= `user`), `chosen` (= `completion`,
`assistant`, `last_assistant`), `rejected`, `all`.
"""
from __future__ import annotations

import pyarrow as pa

from schemas import views
from schemas.record import RecordKind, TextParts

_prompt, _chosen, _rejected = views.column("prompt"), views.column("chosen"), views.column("rejected")
_all = views.joined(_prompt, _chosen, _rejected)

CARD = """\
Each row is a prompt with a preferred and a dispreferred response, in Hugging Face TRL's *preference* form:

| column | type | what |
|---|---|---|
| `prompt` | string | the instruction or question |
| `chosen` | string | the response people preferred |
| `rejected` | string | the response they preferred less |

Train with TRL:

```python
from datasets import load_dataset
from trl import DPOConfig, DPOTrainer

ds = load_dataset("parquet", data_dir="{path}")
trainer = DPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", train_dataset=ds["train"], args=DPOConfig(output_dir="out"))
```
"""

PREFERENCE = RecordKind(
    name="preference",
    payload=(
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
    ),
    description="a prompt with a preferred and a dispreferred response; for preference tuning (DPO, reward models)",
    views={"prompt": _prompt, "user": _prompt, "chosen": _chosen, "completion": _chosen, "assistant": _chosen,
           "last_assistant": _chosen, "rejected": _rejected, "all": _all},
    parts=TextParts(("prompt", "chosen", "rejected"), views.rewrite_columns),
    dedupe_keys={"prompt": _prompt, "pair": _all, "conversation": _all},
    default_key="prompt",
    render=views.labelled(("prompt", _prompt), ("chosen", _chosen), ("rejected", _rejected)),
    task_categories=("text-generation",),
    card=CARD,
)
