"""Causal LM fine-tuning: the task (`task`), its chat template (`template`), the loss mask (`masking`) and packing
(`packing`)."""
from train.tasks.causal_lm.task import CausalLMTask

__all__ = ["CausalLMTask"]
