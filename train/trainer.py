"""The Hugging Face `Trainer` as every task uses it: its arguments, a Trainer that weights classes, in-order
prediction, and library noise turned down.

Task-neutral: a task passes in what differs (the metric that picks the best checkpoint, class weights, its
collator); `train.run` drives it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from transformers import PrinterCallback, Trainer, TrainingArguments

from train.config import Config
from train.runtime import Runtime


def quiet_libraries() -> None:
    """transformers' and datasets' own logging and progress bars off: a run shows one progress display of its
    own (train.progress) and one line per step of the run."""
    import datasets  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def training_arguments(
    cfg: Config,
    rt: Runtime,
    output_dir: Path,
    *,
    best_metric: str | None,
    greater_is_better: bool = True,
    **overrides,
) -> TrainingArguments:
    """TrainingArguments from the `train:` config and the runtime. With `best_metric` (a key of the task's
    validation metrics, or `loss`), the Trainer evaluates and checkpoints every epoch and ends on the best
    checkpoint by that metric; without it, it neither evaluates nor saves (prediction only)."""
    evaluate = best_metric is not None
    args = dict(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps else -1,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        per_device_train_batch_size=rt.batch_size,
        per_device_eval_batch_size=rt.eval_batch_size,
        auto_find_batch_size=rt.fill_card,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="epoch" if evaluate else "no",
        save_only_model=True,
        save_total_limit=2,
        load_best_model_at_end=evaluate,
        metric_for_best_model=best_metric,
        greater_is_better=greater_is_better if evaluate else None,
        logging_strategy="steps",
        logging_steps=10,  # the granularity of trainer_log.json (the progress bar shows the latest loss)
        logging_first_step=True,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        full_determinism=cfg.deterministic,
        bf16=rt.precision == "bf16",
        fp16=rt.precision == "fp16",
        tf32=True if rt.tf32 else None,
        use_cpu=rt.device == "cpu",
        dataloader_num_workers=rt.workers,
        dataloader_pin_memory=rt.pin_memory,
        dataloader_persistent_workers=rt.workers > 0,
        disable_tqdm=not sys.stderr.isatty(),
    )
    args.update(overrides)
    return TrainingArguments(**args)


def without_log_printing(trainer: Trainer) -> Trainer:
    """With its tqdm bar disabled the Trainer prints every log dict to stdout (PrinterCallback); a run shows
    train.progress instead, and the dicts are kept in trainer_log.json."""
    trainer.remove_callback(PrinterCallback)
    return trainer


class WeightedLossTrainer(Trainer):
    """A Trainer with optional per-class weights in the cross-entropy loss (single-label classification on
    imbalanced labels). Without weights it is the plain Trainer."""

    def __init__(self, *args, class_weights: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._class_weights = class_weights
        if class_weights is not None:
            # our loss is a per-batch mean: let the Trainer scale it for gradient accumulation
            self.loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._class_weights is None or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"]
        weight = self._class_weights.to(device=logits.device, dtype=torch.float32)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=weight)
        return (loss, outputs) if return_outputs else loss


def predict_in_order(model, tokenizer, collator, cfg: Config, rt: Runtime, dataset, work_dir: Path) -> np.ndarray:
    """The model's outputs (logits) for `dataset` in its row order. (With `group_by_length`, the Trainer also
    length-groups the *evaluation* sampler, so `trainer.predict` on the training Trainer returns rows shuffled;
    fine for metrics computed from its own label_ids, wrong for anything matched back to rows.)"""
    args = training_arguments(cfg, rt, work_dir, best_metric=None, train_sampling_strategy="sequential")
    trainer = Trainer(model=model, args=args, data_collator=collator, processing_class=tokenizer)
    out = trainer.predict(dataset)
    logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    return np.asarray(logits, dtype=np.float32)
