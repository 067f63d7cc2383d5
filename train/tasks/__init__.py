"""The registry of fine-tuning tasks. Adding a task: its own module under `train/tasks/` and one line in TASKS.

A training run takes the first task that trains the version's record kind and suits the base model
(`Task.suits_model`); `sftpipe score` takes the task a run was trained as, by the name in its run.json.
"""
from __future__ import annotations

from pipeline.errors import UserError
from train.config import Config
from train.data import PublishedVersion
from train.tasks.base import CardSection, Task
from train.tasks.classification import ClassificationTask

TASKS: tuple[type[Task], ...] = (
    ClassificationTask,
)

# Runs recorded before run.json named their task were all classifiers.
DEFAULT_TASK = ClassificationTask.name

__all__ = ["TASKS", "CardSection", "ClassificationTask", "Task", "task_for_version", "task_named"]


def task_for_version(version: PublishedVersion, cfg: Config) -> type[Task]:
    """The task that trains `version`'s record kind with `cfg`'s base model; one-line UserError if none does."""
    trains_kind = [task for task in TASKS if version.kind in task.kinds]
    if not trains_kind:
        known = "; ".join(f"{task.name}: {', '.join(task.kinds)}" for task in TASKS)
        raise UserError(f"{version.path}: no training task for record kind {version.kind!r} (tasks and the kinds "
                        f"they train: {known})")
    for task in trains_kind:
        if task.suits_model(cfg):
            return task
    raise UserError(f"base model {cfg.model_label()} suits none of the tasks that train {version.kind!r} "
                    f"versions ({', '.join(task.name for task in trains_kind)})")


def task_named(name: str | None) -> type[Task]:
    """The registered task called `name` (None: the default, for runs recorded before tasks were named)."""
    name = name or DEFAULT_TASK
    for task in TASKS:
        if task.name == name:
            return task
    raise UserError(f"unknown training task {name!r} (tasks: {', '.join(task.name for task in TASKS)})")
