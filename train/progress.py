"""What a person watching `sftpipe train` sees: one progress bar for the whole training run.

The bar shows steps done of the total, the epoch, elapsed time and an ETA, the latest training loss and the
latest validation figure of the metric that picks the best checkpoint; a second, short-lived bar follows each
evaluation pass. Each evaluation also prints one line above the bar, so a log file (where a bar does not
animate) still tells how training went. Replaces the Trainer's own tqdm bar and the loss dict it prints every
`logging_steps` (the dicts are still written to trainer_log.json).
"""
from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback


class TrainingProgress(TrainerCallback):
    """A TrainerCallback driving a rich progress display on `console`.

    `metric` is the validation metric to show (a key of the task's metrics, e.g. `macro_f1`, or `loss`) and
    `label` how to name it (`macro-F1`). Call `close()` when training ends or fails, so the display is cleared
    from the terminal state even when the Trainer raises before `on_train_end`.
    """

    def __init__(self, console: Console, metric: str, label: str):
        self.console = console
        self.metric = metric
        self.label = label
        self._progress: Progress | None = None
        self._train: TaskID | None = None
        self._eval: TaskID | None = None
        self._loss: float | None = None
        self._validation: float | None = None

    # -- the display ------------------------------------------------------------------------------------------
    def _status(self) -> str:
        parts = []
        if self._loss is not None:
            parts.append(f"loss {self._loss:.4f}")
        if self._validation is not None:
            parts.append(f"val {self.label} {self._validation:.4f}")
        return " · ".join(parts)

    def _epoch(self, state) -> str:
        total = state.num_train_epochs or 0
        return f"epoch {state.epoch or 0:.2f}/{total:g}" if total else f"epoch {state.epoch or 0:.2f}"

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # -- Trainer events ---------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.close()  # auto_find_batch_size restarts training after an out-of-memory: one display, not two
        self._progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TextColumn("{task.fields[epoch]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._train = self._progress.add_task(
            "train", total=state.max_steps, unit="steps", epoch=self._epoch(state), status=self._status()
        )
        self._eval = None

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._train, completed=state.global_step, epoch=self._epoch(state))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._progress is not None and logs and "loss" in logs:
            self._loss = float(logs["loss"])
            self._progress.update(self._train, status=self._status())

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self._progress is None:
            return
        if self._eval is None:
            total = len(eval_dataloader) if eval_dataloader is not None and hasattr(eval_dataloader, "__len__") else None
            self._eval = self._progress.add_task("validate", total=total, unit="batches", epoch="", status="")
        self._progress.advance(self._eval)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self._progress is None:
            return
        if self._eval is not None:
            self._progress.remove_task(self._eval)
            self._eval = None
        value = (metrics or {}).get(f"eval_{self.metric}")
        if value is None:
            return
        self._validation = float(value)
        self._progress.update(self._train, status=self._status())
        loss = (metrics or {}).get("eval_loss")
        tail = f", loss {loss:.4f}" if loss is not None and self.metric != "loss" else ""
        self._progress.console.print(
            f"step {state.global_step}, {self._epoch(state)}: validation {self.label} {value:.4f}{tail}",
            highlight=False,
        )

    def on_train_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._train, completed=state.global_step, epoch=self._epoch(state))
        self.close()
