"""Sequence-to-sequence fine-tuning on generation versions (`task`)."""
from train.tasks.seq2seq.task import Seq2SeqTask

__all__ = ["Seq2SeqTask"]
