"""The registry of fine-tuning tasks. Adding a task: its own module under `train/tasks/` and one line in TASKS.

A training run takes the task `train.task` names, or (`auto`) the first task that trains the version's record
kind and can train the base model (`Task.model_problem`, from the model's config: `train.models`): a
classification version → classification; a generation or chat version → causal_lm on a decoder-only model, and
a generation version → seq2seq on an encoder-decoder (or an encoder, warm-started as both halves). `sftpipe
score` takes the task a run was trained as, by the name in its run.json.
"""
from __future__ import annotations

from pipeline.errors import UserError
from train.config import Config
from train.data import PublishedVersion
from train.models import base_model
from train.tasks.base import CardSection, Task
from train.tasks.causal_lm import CausalLMTask
from train.tasks.classification import ClassificationTask
from train.tasks.seq2seq import Seq2SeqTask

TASKS: tuple[type[Task], ...] = (
    ClassificationTask,
    CausalLMTask,
    Seq2SeqTask,
)

# Runs recorded before run.json named their task were all classifiers.
DEFAULT_TASK = ClassificationTask.name

__all__ = ["TASKS", "CardSection", "CausalLMTask", "ClassificationTask", "Seq2SeqTask", "Task", "task_for_version",
           "task_named"]


def task_for_version(version: PublishedVersion, cfg: Config) -> type[Task]:
    """The task that trains `version` with `cfg`'s base model; one-line UserError if none does (or the task the
    config names cannot)."""
    if cfg.task != "auto":
        task = task_named(cfg.task)
        task.check_kind(version)
        base = base_model(cfg.model_path())
        problem = task.model_problem(base, explicit=True)
        if problem:
            raise UserError(f"train.task {task.name}: base model {cfg.model_label()} ({base.describe()}): {problem}")
        return task
    trains_kind = [task for task in TASKS if version.kind in task.kinds]
    if not trains_kind:
        known = "; ".join(f"{task.name}: {', '.join(task.kinds)}" for task in TASKS)
        raise UserError(f"{version.path}: no training task for record kind {version.kind!r} (tasks and the kinds "
                        f"they train: {known})")
    base = base_model(cfg.model_path())
    problems = []
    for task in trains_kind:
        problem = task.model_problem(base)
        if problem is None:
            return task
        problems.append(problem)
    raise UserError(f"base model {cfg.model_label()} ({base.describe()}) cannot train a {version.kind!r} version: "
                    + "; ".join(problems))


def task_named(name: str | None) -> type[Task]:
    """The registered task called `name` (None: the default, for runs recorded before tasks were named)."""
    name = name or DEFAULT_TASK
    for task in TASKS:
        if task.name == name:
            return task
    raise UserError(f"unknown training task {name!r} (tasks: {', '.join(task.name for task in TASKS)})")
