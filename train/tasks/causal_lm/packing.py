"""Packing (`train.packing`): the examples of a batch concatenated into one row, without padding and without
one example attending to another.

transformers' `DataCollatorWithFlattening` concatenates the batch's examples and restarts `position_ids` at 0
for each; it sends no attention mask, and the model's masking (transformers' `masking_utils`, used by Llama,
Qwen, Mistral, GPT-2, ... with the sdpa, eager and flash attention kernels) reads each restart as the start of
a new sequence and lets tokens attend only within their own example (a block-diagonal causal mask; flash
attention gets the sequence boundaries instead). The first label of each example is -100, so no example
learns to predict the next one's first token.

A model whose attention ignores position ids would silently mix examples, so before training the model is
probed: two short sequences packed into one row must give the same logits as each on its own, or the run
stops with a one-line error. The probe needs the KV cache off, as in training (a model with a cache does not
look for packed sequences), which `CausalLMTask.build_model` sets.
"""
from __future__ import annotations

from pipeline.errors import UserError


def collator():
    from transformers import DataCollatorWithFlattening  # noqa: PLC0415

    return DataCollatorWithFlattening(return_position_ids=True)


def check_model_keeps_examples_apart(model, label: str) -> None:
    """UserError unless two examples packed into one row give the logits each gives alone."""
    import torch  # noqa: PLC0415

    vocab = model.get_input_embeddings().num_embeddings
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(0, vocab, (7,), generator=generator).tolist()
    second = torch.randint(0, vocab, (5,), generator=generator).tolist()
    batch = collator()([{"input_ids": first}, {"input_ids": second}])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device),
                           use_cache=False).logits[0].float()
            alone = [model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0].float()
                     for ids in (first, second)]
    finally:
        model.train(was_training)
    together = torch.cat(alone)
    if not torch.allclose(packed, together, atol=1e-3, rtol=1e-3):
        worst = (packed - together).abs().max().item()
        raise UserError(f"train.packing: base model {label} lets packed examples attend to each other (its logits "
                        f"change by up to {worst:.3g} when two examples share a row): train without packing")
