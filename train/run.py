"""Fine-tune a model on a published version (`train_version`) and score a finished run (`score_run`): the one
path every task goes through. What differs between tasks comes from the `Task` (train/tasks/).

`train_version` writes `<runs_root>/<dataset>/<version>/<run-id>/` (model + tokenizer, metrics.json, the task's
figures such as confusion_matrix.png, test_predictions.parquet, trainer_log.json, run.json, README.md model card)
and appends a line to `<runs_root>/index.jsonl`. The run is built in a hidden `.<run-id>.partial` folder and
renamed into place when complete, so a killed run never looks finished. `score_run` scores a finished run on any
version's split into `<run_dir>/scores/`. Both score through `score_rows`, so a run's test metrics and a later
`sftpipe score` of the same rows agree.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from train import runs
from train.card import write_model_card
from train.config import DEFAULT_MODEL_NAME, Config
from train.data import SPLITS, PublishedVersion, open_version
from train.runtime import Runtime, resolve_runtime, size_batches_for
from train.tasks import Task, task_for_version, task_named
from train.tokenization import split_identity, tokenize, tokenizer_identity

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class TrainResult:
    run_dir: Path
    run_id: str
    metrics: dict  # metrics.json
    task: Task


@dataclass
class Scored:
    metrics: dict  # the task's metrics (fractions), with the row count under `n`
    predictions: pa.Table  # one row per scored row


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def read_run(run_dir: Path | str) -> dict:
    """A finished run's run.json; UserError when the folder is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    file = run_dir / "run.json"
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{run_dir} is not a finished training run (no run.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{file}: unreadable: {exc}".replace("\n", " ")) from None
    return record


def usable_split(task: type[Task], version: PublishedVersion, split: str) -> tuple[pa.Table, int]:
    """(rows of `split` the task trains or scores on: `id` and the payload columns it reads from a version of
    this kind, rows it leaves out)."""
    task.check_kind(version)
    return task.usable_rows(version.read_split(split, task.kinds[version.kind]), version.split_file(split))


def _payload(rows: pa.Table) -> pa.Table:
    return rows.drop_columns(["id"])  # what encode_* read; ids stay with the rows for the predictions table


def score_rows(task: Task, model, tokenizer, rows: pa.Table, rt: Runtime, work_dir: Path, *, key: list,
               cache_dir: Path | None) -> Scored:
    """THE scoring path: the task's inputs for `rows` (tokenized, cached under `key`), its predictions, its
    metrics and per-row predictions. Used at the end of training and by `sftpipe score`."""
    encoded = tokenize(_payload(rows), partial(task.encode_inputs, tokenizer),
                       key=[*key, task.name, "inputs", task.encoding_key()], cache_dir=cache_dir)
    predictions = task.predict(model, tokenizer, encoded, rt, work_dir)
    return Scored(task.score(rows, predictions), task.predictions_table(rows, predictions))


# ---------------------------------------------------------------------------------------------------- train
def train_version(
    dataset: str,
    version: str | None,
    cfg: Config,
    *,
    data_dir: Path | str = "data",
    runs_root: Path | str = "runs/train",
    config_file: str | None = None,
    echo: Callable[[str], None] = lambda s: None,
    progress: Console | None = None,
    extra_callbacks: list | None = None,
) -> TrainResult:
    """Fine-tune `cfg.model_path()` on a published version and write a complete run folder. `echo` gets one
    line per phase; with `progress` (a rich Console), training shows a progress bar on it (train.progress)."""
    import torch  # noqa: PLC0415

    from train.trainer import quiet_libraries  # noqa: PLC0415

    t_start = time.time()
    data_dir, runs_root = Path(data_dir), Path(runs_root)
    quiet_libraries()
    published = open_version(data_dir, dataset, version)
    version = published.version  # `latest`, `3` or a tag resolved to the version's name
    task_cls = task_for_version(published, cfg)
    rows, skipped = _rows_to_train_on(task_cls, published)
    task = task_cls.for_training(cfg, published, rows)
    rt = resolve_runtime(cfg)
    model_path = cfg.model_path()

    run_id = new_run_id()
    final_dir = runs_root / dataset / version / run_id
    work_dir = final_dir.parent / f".{run_id}.partial"
    work_dir.mkdir(parents=True, exist_ok=False)
    try:
        echo(f"run {run_id}: {dataset} {version} on {rt.device_name} ({rt.precision}), base model {cfg.model_label()}")
        tokenizer = task.load_tokenizer(model_path)
        tables = {
            "train": _first(rows["train"], cfg.max_train_samples),
            "validation": _first(rows["validation"], cfg.max_eval_samples),
            "test": _first(rows["test"], cfg.max_eval_samples),
        }
        cache = runs_root / ".cache" / "tokenized"
        tok_id = tokenizer_identity(tokenizer, model_path)
        keys = {split: [split_identity(published, split, table.num_rows), tok_id] for split, table in tables.items()}

        trainer, train_output, train_wall = _fit(task, cfg, rt, tokenizer, model_path, tables, keys, cache,
                                                 work_dir / "checkpoints", progress, extra_callbacks)
        echo(
            f"trained {trainer.state.global_step} steps in {train_wall:.0f}s "
            f"({train_output.metrics.get('train_samples_per_second', 0):.1f} samples/s); scoring"
        )
        # the best model is loaded at the end; score it on validation and test
        results = {}
        for split in ("validation", "test"):
            scored = score_rows(task, trainer.model, tokenizer, tables[split], rt, work_dir / "predict",
                                key=keys[split], cache_dir=cache)
            results[split] = scored.metrics
            if split == "test":
                pq.write_table(scored.predictions, work_dir / "test_predictions.parquet")

        trainer.save_model(str(work_dir))  # model + tokenizer (processing_class)
        tokenizer.save_pretrained(str(work_dir))
        shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(work_dir / "predict", ignore_errors=True)

        metrics = {
            "dataset": dataset,
            "version": version,
            "content_fingerprint": published.fingerprint,
            **task.facts(),
            "test": results["test"],
            "validation": results["validation"],
            "training": _training_facts(cfg, task, trainer, train_output, train_wall, tables["train"].num_rows),
            "rows": {split: {"scored": tables[split].num_rows, "unlabelled_skipped": skipped[split]} for split in SPLITS},
        }
        (work_dir / "trainer_log.json").write_text(json.dumps(trainer.state.log_history, indent=2) + "\n")
        task.write_figures(results["test"], work_dir, f"{dataset} {version} test — run {run_id}")
        metrics["training"]["total_wall_s"] = round(time.time() - t_start, 2)
        (work_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

        record = {
            "run_id": run_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
            "dataset": dataset,
            "version": version,
            "content_fingerprint": published.fingerprint,
            "version_path": str(published.path.resolve()),
            "data_dir": str(data_dir.resolve()),
            "config_file": config_file,
            "base_model": cfg.model_label(),
            "base_model_id": cfg.model or DEFAULT_MODEL_NAME,
            "base_model_path": model_path,
            "task": task.name,
            **task.facts(),
            "train_config": cfg.model_dump(mode="json"),
            "runtime": rt.describe(),
            "command": " ".join(sys.argv) if sys.argv else None,
        }
        (work_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
        write_model_card(work_dir, record, metrics, task.model_card(record, metrics))

        os.replace(work_dir, final_dir)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)  # a failed run leaves nothing behind
        raise
    runs.append_index(runs_root, {
        "kind": "train",
        "task": task.name,
        "run_id": run_id,
        "created": record["created"],
        "dataset": dataset,
        "version": version,
        "content_fingerprint": published.fingerprint,
        "base_model": cfg.model_label(),
        "device": rt.device_name,
        "precision": rt.precision,
        "epochs": metrics["training"]["epochs_run"],
        "train_runtime_s": metrics["training"]["train_runtime_s"],
        **{key: results["test"].get(key) for key in task.headline},
        "run_dir": str(final_dir.resolve()),
    })
    del trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return TrainResult(final_dir, run_id, metrics, task)


def _rows_to_train_on(task: type[Task], version: PublishedVersion) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """(usable rows per split, rows left out per split); UserError when a split has none: a run needs all three."""
    rows, skipped = {}, {}
    for split in SPLITS:
        rows[split], skipped[split] = usable_split(task, version, split)
        if rows[split].num_rows == 0:
            raise UserError(f"{version.path}: the {split} split has no {task.usable_rows_are}; cannot train and score")
    return rows, skipped


def _first(table: pa.Table, limit: int | None) -> pa.Table:
    return table.slice(0, limit) if limit else table


def _fit(task: Task, cfg: Config, rt: Runtime, tokenizer, model_path: str, tables: dict[str, pa.Table],
         keys: dict[str, list], cache: Path, checkpoints: Path, progress: Console | None, extra_callbacks: list | None):
    """Tokenize train and validation, build the model and train it: (trainer holding the best model, the
    Trainer's TrainOutput, training wall seconds)."""
    from transformers import EarlyStoppingCallback, set_seed  # noqa: PLC0415

    from train.progress import TrainingProgress  # noqa: PLC0415
    from train.trainer import training_arguments, without_log_printing  # noqa: PLC0415

    examples = {
        split: tokenize(_payload(tables[split]), partial(task.encode_examples, tokenizer),
                        key=[*keys[split], task.name, "examples", task.encoding_key()], cache_dir=cache)
        for split in ("train", "validation")
    }
    set_seed(cfg.seed, deterministic=cfg.deterministic)
    model = task.build_model(model_path)
    callbacks = list(extra_callbacks or [])
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    bar = None
    if progress is not None:
        bar = TrainingProgress(progress, task.best_metric, task.headline.get(task.best_metric, task.best_metric))
        callbacks.append(bar)
    size_batches_for(rt, cfg, tables["train"].num_rows)
    args = training_arguments(
        cfg, rt, checkpoints, best_metric=task.best_metric, greater_is_better=task.greater_is_better,
        disable_tqdm=True,  # train.progress shows progress instead
    )
    trainer = without_log_printing(task.trainer(
        tables["train"],
        model=model,
        args=args,
        data_collator=task.collator(tokenizer, rt),
        train_dataset=examples["train"],
        eval_dataset=examples["validation"],
        processing_class=tokenizer,
        compute_metrics=task.compute_metrics,
        callbacks=callbacks,
    ))
    t_train = time.time()
    try:
        train_output = trainer.train()
    finally:
        if bar is not None:
            bar.close()
    return trainer, train_output, time.time() - t_train


def _training_facts(cfg: Config, task: Task, trainer, train_output, train_wall: float, train_rows: int) -> dict:
    """metrics.json's `training` section: steps, epochs, time, the best checkpoint and its validation figure."""
    state = trainer.state
    best_key = f"eval_{task.best_metric}"
    pick = max if task.greater_is_better else min
    best_eval = pick((e for e in state.log_history if best_key in e), key=lambda e: e[best_key], default=None)
    return {
        "global_steps": state.global_step,
        "epochs_run": state.epoch,
        "train_rows": train_rows,
        "train_runtime_s": round(train_output.metrics.get("train_runtime", train_wall), 2),
        "train_samples_per_second": train_output.metrics.get("train_samples_per_second"),
        "best_checkpoint": Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
        f"best_validation_{task.best_metric}": best_eval[best_key] if best_eval else None,
        "best_epoch": best_eval.get("epoch") if best_eval else None,
        "stopped_early": bool(
            cfg.early_stopping_patience
            and state.epoch is not None
            and not cfg.max_steps
            and state.epoch < cfg.epochs - 1e-6
        ),
        "total_wall_s": None,  # filled when the run folder is complete
    }


# ---------------------------------------------------------------------------------------------------- score
def score_run(
    run_dir: Path | str,
    version: str | None,
    *,
    dataset: str | None = None,
    data_dir: Path | str = "data",
    split: str = "test",
    runs_root: Path | str | None = None,
    use_cpu: bool = False,
    max_samples: int | None = None,
    echo: Callable[[str], None] = lambda s: None,
) -> tuple[Path, dict]:
    """Score a trained run on `split` of (`dataset`, `version`); writes `<run_dir>/scores/<dataset>/<version>-<split>/`
    (metrics.json, predictions.parquet, the task's figures) and returns (that folder, metrics)."""
    from train.trainer import quiet_libraries  # noqa: PLC0415

    run_dir = Path(run_dir)
    record = read_run(run_dir)
    dataset = dataset or record["dataset"]
    quiet_libraries()
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
    published = open_version(Path(data_dir), dataset, version)
    version = published.version
    task_cls = task_named(record.get("task"))
    rows, skipped = usable_split(task_cls, published, split)  # e.g. a classifier asked to score a chat version: error
    if max_samples:
        rows = rows.slice(0, max_samples)
    if rows.num_rows == 0:
        raise UserError(f"{published.path}: the {split} split has no {task_cls.usable_rows_are} to score")

    tcfg = Config.model_validate(record.get("train_config", {}))
    cfg = tcfg.model_copy(update={"use_cpu": use_cpu or tcfg.use_cpu})
    task = task_cls.for_scoring(cfg, run_dir, record)
    notes = task.scoring_notes(rows, published)
    rt = resolve_runtime(cfg)
    model = task.load_trained_model(run_dir)
    tokenizer = task.load_tokenizer(str(run_dir))

    out_dir = run_dir / "scores" / dataset / f"{version}-{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    key = [split_identity(published, split, rows.num_rows), tokenizer_identity(tokenizer, str(run_dir))]
    scored = score_rows(task, model, tokenizer, rows, rt, out_dir / "tmp", key=key, cache_dir=None)
    pq.write_table(scored.predictions, out_dir / "predictions.parquet")
    shutil.rmtree(out_dir / "tmp", ignore_errors=True)
    metrics: dict[str, Any] = {
        "run_id": record.get("run_id"),
        "trained_on": {"dataset": record.get("dataset"), "version": record.get("version"),
                       "content_fingerprint": record.get("content_fingerprint")},
        "scored_on": {"dataset": dataset, "version": version, "split": split,
                      "content_fingerprint": published.fingerprint, "unlabelled_skipped": skipped},
        **notes,
        "seconds": round(time.time() - t0, 2),
        split: scored.metrics,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    task.write_figures(scored.metrics, out_dir, f"run {record.get('run_id')} on {dataset} {version} {split}")
    root = Path(runs_root) if runs_root is not None else run_dir.resolve().parents[2]
    runs.append_index(
        root,
        {
            "kind": "score",
            "task": task.name,
            "run_id": record.get("run_id"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
            "dataset": dataset,
            "version": version,
            "split": split,
            "content_fingerprint": published.fingerprint,
            "trained_on": f"{record.get('dataset')} {record.get('version')}",
            "base_model": record.get("base_model"),
            **{key: scored.metrics.get(key) for key in task.headline},
            "run_dir": str(run_dir.resolve()),
            "scores_dir": str(out_dir.resolve()),
        },
    )
    echo(f"scored {scored.metrics['n']} rows of {dataset} {version} {split}")
    return out_dir, metrics
