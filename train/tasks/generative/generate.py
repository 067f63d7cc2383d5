"""Answers generated for a split, in its row order: `model.generate` over length-sorted batches.

Greedy by default (`train.num_beams` > 1: beam search), at most `train.max_new_tokens` new tokens. A decoder-only
model's prompts are padded on the LEFT, so every row's answer starts right after its own prompt; an encoder's
inputs on the right. Rows are batched longest first (similar lengths waste little padding, and an out-of-memory
shows on the first batch, not the last), then put back in row order. On a GPU the model runs in the run's half
precision (autocast). A progress bar shows on a terminal.
"""
from __future__ import annotations

import sys

from train.config import Config
from train.runtime import Runtime


def generate_texts(model, tokenizer, encoded, cfg: Config, rt: Runtime, *, decoder_only: bool,
                   eos_token_ids: list[int] | None = None) -> list[str]:
    """The decoded answer for every row of `encoded` (a datasets.Dataset of input_ids / attention_mask), in order;
    special tokens dropped, surrounding white space stripped."""
    import torch  # noqa: PLC0415

    device = torch.device("cuda" if rt.device == "cuda" else "cpu")
    model.to(device)
    model.eval()
    ids = encoded["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    texts: list[str | None] = [None] * len(ids)
    batch_size = max(1, rt.eval_batch_size)
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(rt.precision) if rt.device == "cuda" else None
    kwargs = dict(max_new_tokens=cfg.max_new_tokens, num_beams=cfg.num_beams, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id)
    if eos_token_ids:
        kwargs["eos_token_id"] = eos_token_ids
    with _progress(len(ids)) as advance:
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            features = [{"input_ids": ids[i], "attention_mask": [1] * len(ids[i])} for i in chosen]
            batch = tokenizer.pad(features, padding=True, return_tensors="pt",
                                  padding_side="left" if decoder_only else "right").to(device)
            with torch.inference_mode(), torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                out = model.generate(**batch, **kwargs)
            new = out[:, batch["input_ids"].shape[1]:] if decoder_only else out
            for i, text in zip(chosen, tokenizer.batch_decode(new, skip_special_tokens=True)):
                texts[i] = text.strip()
            advance(len(chosen))
    return texts  # type: ignore[return-value]


class _progress:
    """A transient rich progress bar on stderr when it is a terminal; nothing otherwise (a log file)."""

    def __init__(self, total: int):
        self.total = total
        self.bar = None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.console import Console  # noqa: PLC0415
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

            self.bar = Progress(TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TextColumn("rows ETA"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            task = self.bar.add_task("generate", total=self.total)
            return lambda n: self.bar.advance(task, n)
        return lambda n: None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
