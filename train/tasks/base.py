"""The task interface: what one kind of fine-tuning supplies, and nothing that every kind shares.

`train.run` owns what every kind of fine-tuning shares: opening the version, the runtime, the run folder
(built hidden, renamed when complete), tokenization and its cache, the Trainer (arguments, progress, early
stopping), saving model and tokenizer, ONE scoring path used both at the end of training and by `sftpipe
score`, metrics.json, run.json, the run index and the frame of the model card.

A `Task` supplies the rest, in the order a run needs it:

    choose        kinds, suits_model(cfg)                    record kinds (and their columns), base models
    rows          usable_rows(table, file)                   rows trained / scored on
    set up        for_training(cfg, version, rows)            e.g. the label set; one-line error if unsuitable
                  for_scoring(cfg, run_dir, record)           the same, from a finished run
    model         load_tokenizer, build_model, load_trained_model, collator
    tokens        encoding_key, encode_examples, encode_inputs   (cached by train.run)
    train         best_metric, greater_is_better, compute_metrics, trainer(...)
    score         predict, score, predictions_table, write_figures, scoring_notes
    present       headline, facts, model_card, detail_table

A generative task (causal_lm: loss on assistant / completion tokens only, scored on generated text; seq2seq)
fits the same frame: `kinds = {"generation": ("prompt", "completion"), "chat": ("messages",)}` (the batch an
encode function gets tells which); its `encode_examples` builds input_ids with -100 outside the completion /
assistant turns, `encode_inputs` the prompt alone; `best_metric = "loss"` with `greater_is_better = False`
and no `compute_metrics` during training; `predict` generates (greedy, left padding) and returns texts;
`score` computes ROUGE / BLEU / chrF / exact match / token F1 from them; `suits_model` tells a decoder-only
base model (causal_lm) from an encoder-decoder one (seq2seq).

Adding a task: a module (or package) under `train/tasks/` with a `Task` subclass, and one line in
`train/tasks/__init__.py`'s TASKS.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import pyarrow as pa

from pipeline.errors import UserError
from train.config import Config
from train.data import PublishedVersion
from train.runtime import Runtime


@dataclass
class CardSection:
    """The task's part of the model card (README.md in a run folder); train.card writes the frame around it."""

    pipeline_tag: str  # the Hub's task tag, e.g. text-classification, text-generation
    summary: str  # one sentence under the title: what the model is
    facts: list[tuple[str, str]] = field(default_factory=list)  # extra rows of the facts table (e.g. labels)
    metrics: list[str] = field(default_factory=list)  # Markdown lines of the "## Metrics" section's body
    usage: list[str] = field(default_factory=list)  # Markdown lines of the "## Use" section's body


class Task(ABC):
    """One kind of fine-tuning. An instance is set up for one run (`for_training` / `for_scoring`) and holds
    what that run learnt about the task (a label set, a template, ...)."""

    name: ClassVar[str]  # recorded in run.json; `sftpipe score` finds the task of a run by it
    # The record kinds it trains on, each with the payload columns it reads from such a version's split files
    # (`id` comes too). One task may train several kinds: a causal LM trains `generation` and `chat` versions.
    kinds: ClassVar[dict[str, tuple[str, ...]]]
    usable_rows_are: ClassVar[str]  # what a usable row is called in messages: "labelled rows"

    best_metric: ClassVar[str]  # the validation metric (a key of compute_metrics' result, or `loss`)
    greater_is_better: ClassVar[bool] = True
    headline: ClassVar[dict[str, str]]  # metric key -> its name on screen: the figures shown in one line

    # Validation metrics computed by the Trainer each evaluation (from EvalPrediction), or None to evaluate by
    # loss alone (generative tasks: generating during training is too slow).
    compute_metrics: Callable[[Any], dict] | None = None

    def __init__(self, cfg: Config):
        self.cfg = cfg

    # -- choosing a task --------------------------------------------------------------------------------------
    @classmethod
    def suits_model(cls, cfg: Config) -> bool:
        """Whether this task trains `cfg`'s base model, when several tasks train one record kind (causal_lm
        for decoder-only models, seq2seq for encoder-decoder ones)."""
        return True

    @classmethod
    def check_kind(cls, version: PublishedVersion) -> None:
        """UserError unless `version` holds records this task trains on."""
        if version.kind not in cls.kinds:
            raise UserError(
                f"{version.path}: a {version.kind!r} version, but this is a {cls.name} model "
                f"(it trains on {', '.join(repr(k) for k in cls.kinds)} versions)"
            )

    # -- rows ---------------------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def usable_rows(cls, table: pa.Table, file: Path) -> tuple[pa.Table, int]:
        """(the rows of `table` to train or score on, how many were left out): e.g. classification leaves out
        rows without a label. UserError (naming `file`) when a column has the wrong type."""

    # -- set-up -------------------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def for_training(cls, cfg: Config, version: PublishedVersion, rows: dict[str, pa.Table]) -> Task:
        """The task set up to train on `version` (usable rows per split); a one-line UserError when the
        version does not suit it."""

    @classmethod
    @abstractmethod
    def for_scoring(cls, cfg: Config, run_dir: Path, record: dict) -> Task:
        """The task a finished run was trained as, set up from what the run saved: its model's config, and
        `record` (its run.json, holding what `facts()` returned, e.g. a chat template's name)."""

    # -- model --------------------------------------------------------------------------------------------------
    def load_tokenizer(self, model_path: str):
        from transformers import AutoTokenizer  # noqa: PLC0415

        try:
            return AutoTokenizer.from_pretrained(model_path)
        except OSError as exc:
            raise UserError(f"cannot load tokenizer of base model {model_path!r}: {exc}".replace("\n", " ")) from None

    @abstractmethod
    def build_model(self, model_path: str):
        """The base model with what the task needs on top (a classification head sized to the labels, ...), in
        fp32 master weights. UserError when it cannot be loaded."""

    @abstractmethod
    def load_trained_model(self, run_dir: Path):
        """A finished run's model, to score it."""

    def collator(self, tokenizer, rt: Runtime):
        """Batches for training, evaluation and prediction: dynamic padding (to a multiple of 8 on a GPU)."""
        from transformers import DataCollatorWithPadding  # noqa: PLC0415

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if rt.device == "cuda" else None)

    # -- tokens -------------------------------------------------------------------------------------------------
    def encoding_key(self) -> list:
        """Every setting of this task that changes what encode_* return (part of the tokenization cache key)."""
        return [self.cfg.max_length]

    @abstractmethod
    def encode_examples(self, tokenizer, batch: dict[str, list]) -> dict[str, list]:
        """A batch of the version's payload columns (`kinds[version.kind]`) -> training examples: model inputs
        and `labels` (train and validation splits)."""

    @abstractmethod
    def encode_inputs(self, tokenizer, batch: dict[str, list]) -> dict[str, list]:
        """A batch of payload columns -> what `predict` consumes (no targets: a scored row's answer may be unknown to
        the model, and a generative model must not see it)."""

    # -- training -----------------------------------------------------------------------------------------------
    def trainer(self, train_rows: pa.Table, **kwargs):
        """The Trainer to train with, from the Trainer keyword arguments train.run prepared (model, args,
        datasets, collator, callbacks, compute_metrics). A task needing its own loss returns a subclass."""
        from transformers import Trainer  # noqa: PLC0415

        return Trainer(**kwargs)

    # -- scoring ------------------------------------------------------------------------------------------------
    def scoring_notes(self, rows: pa.Table, version: PublishedVersion) -> dict:
        """Facts about rows about to be scored that the score's metrics.json records (e.g. labels the model
        does not know); UserError when they cannot be scored at all."""
        return {}

    @abstractmethod
    def predict(self, model, tokenizer, encoded, rt: Runtime, work_dir: Path) -> Any:
        """The model's predictions for `encoded` (from encode_inputs), in row order: logits, generated texts, ..."""

    @abstractmethod
    def score(self, rows: pa.Table, predictions: Any) -> dict:
        """Metrics of `predictions` against `rows`, as fractions in 0-1, with the row count under `n`."""

    @abstractmethod
    def predictions_table(self, rows: pa.Table, predictions: Any) -> pa.Table:
        """One row per scored row, starting with `id`: what a person reads to see where the model is wrong."""

    def write_figures(self, metrics: dict, folder: Path, title: str) -> None:
        """Plots of `metrics` into `folder` (e.g. confusion_matrix.png); none by default."""

    # -- presenting ---------------------------------------------------------------------------------------------
    def facts(self) -> dict:
        """What run.json and metrics.json record about the task beyond its name (labels, problem type, ...)."""
        return {}

    @abstractmethod
    def model_card(self, record: dict, metrics: dict) -> CardSection:
        """The task's part of the model card, from run.json's record and metrics.json."""

    @classmethod
    def headline_text(cls, metrics: dict) -> str:
        """The headline figures in one line: `accuracy 0.9583, macro-F1 0.9164, ...` (fractions, 4 decimals)."""
        return ", ".join(f"{label} {metrics[key]:.4f}" for key, label in cls.headline.items() if metrics.get(key) is not None)

    @classmethod
    def detail_table(cls, metrics: dict) -> tuple[list[str], list[list[str]]] | None:
        """(column names, rows) of a table `sftpipe score` prints under the headline (e.g. per class), or None."""
        return None
