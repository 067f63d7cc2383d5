"""Fine-tune a sequence classifier on a published version with the Hugging Face Trainer, and score runs.

`train_version` writes `<runs_root>/<dataset>/<version>/<run-id>/` (model + tokenizer, metrics.json,
confusion_matrix.png, trainer_log.json, run.json, README.md model card) and appends a line to
`<runs_root>/index.jsonl`. The run is built in a hidden `.<run-id>.partial` folder and renamed into place when
complete, so a killed run never looks finished. `score_run` scores a finished run on any version's split.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from train import data as vdata
from train import metrics as tm
from train import runs
from train.config import DEFAULT_MODEL_NAME, Config

log = logging.getLogger("sftpipe.train")

_DEFAULT_CPU_BATCH = 32
_DEFAULT_GPU_BATCH = 128


# ---------------------------------------------------------------------------------------------------- runtime
@dataclass
class Runtime:
    """Where and how the run executes: device, precision, batch sizes, loader settings."""

    device: str  # "cuda" or "cpu"
    device_name: str
    precision: str  # fp32 | bf16 | fp16
    tf32: bool
    batch_size: int
    eval_batch_size: int
    workers: int
    pin_memory: bool
    fill_card: bool = False  # GPU + batch_size auto: the largest batch that fits (see gpu_batch_size)

    def describe(self) -> dict:
        import torch  # noqa: PLC0415
        import transformers  # noqa: PLC0415

        return {
            "device": self.device,
            "device_name": self.device_name,
            "precision": self.precision,
            "tf32": self.tf32,
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "dataloader_workers": self.workers,
            "pin_memory": self.pin_memory,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_runtime(cfg: Config) -> Runtime:
    import torch  # noqa: PLC0415

    gpu = torch.cuda.is_available() and not cfg.use_cpu
    if gpu:
        name = torch.cuda.get_device_name(0)
        major, _ = torch.cuda.get_device_capability(0)
        precision = cfg.precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        tf32 = major >= 8
        batch = _DEFAULT_GPU_BATCH if cfg.batch_size == "auto" else cfg.batch_size
        workers = min(4, os.cpu_count() or 1) if cfg.dataloader_workers == "auto" else cfg.dataloader_workers
        pin = True
    else:
        name = f"CPU: {_cpu_name()} ({os.cpu_count()} cores)"
        precision = "fp32" if cfg.precision == "auto" else cfg.precision
        if precision == "fp16":
            raise UserError("train.precision fp16 needs a GPU; use fp32 (or auto) on the CPU")
        tf32 = False
        batch = _DEFAULT_CPU_BATCH if cfg.batch_size == "auto" else cfg.batch_size
        workers = 0 if cfg.dataloader_workers == "auto" else cfg.dataloader_workers
        pin = False
    eval_batch = 4 * batch if cfg.eval_batch_size == "auto" else cfg.eval_batch_size
    return Runtime("cuda" if gpu else "cpu", name, precision, tf32, batch, eval_batch, workers, pin,
                   fill_card=gpu and cfg.batch_size == "auto")


def gpu_batch_size(train_rows: int) -> int:
    """Where the search for a batch that fills the card starts: as large as 1024, but small enough that an
    epoch still has about 50 optimizer steps (a few huge steps train a small set badly). The Trainer
    (`auto_find_batch_size`) halves it on each out-of-memory until it fits."""
    target = max(train_rows // 50, 1)
    return max(16, min(1024, 1 << (target.bit_length() - 1)))


# ---------------------------------------------------------------------------------------------------- labels
class LabelCodec:
    """label strings <-> model targets, for single-label (class index) and multi-label (multi-hot) tasks."""

    def __init__(self, labels: list[str], multi: bool, separator: str = "|", threshold: float = 0.5):
        self.labels = list(labels)
        self.multi = multi
        self.separator = separator
        self.threshold = threshold
        self.index = {label: i for i, label in enumerate(self.labels)}

    def split_label(self, value: str) -> list[str]:
        if not self.multi:
            return [value]
        return [p.strip() for p in value.split(self.separator) if p.strip()]

    def encode(self, values: list[str]):
        if not self.multi:
            return [self.index[v] for v in values]
        out = []
        for v in values:
            row = [0.0] * len(self.labels)
            for part in self.split_label(v):
                row[self.index[part]] = 1.0
            out.append(row)
        return out

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """Class indices (single-label) or a 0/1 indicator matrix (multi-label)."""
        if not self.multi:
            return np.asarray(logits).argmax(-1)
        probs = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
        return (probs >= self.threshold).astype(int)

    def score(self, label_ids: np.ndarray, predictions: np.ndarray) -> dict:
        """Full scikit-learn metrics from targets and predictions in model space."""
        if not self.multi:
            y_true = [self.labels[i] for i in np.asarray(label_ids).tolist()]
            y_pred = [self.labels[i] for i in np.asarray(predictions).tolist()]
            return tm.single_label_metrics(y_true, y_pred, self.labels)
        return tm.multi_label_metrics(np.asarray(label_ids).round().astype(int), predictions, self.labels)


def _label_set(version: vdata.VersionData, cfg: Config) -> list[str]:
    multi = cfg.problem_type == "multi_label"
    codec = LabelCodec([], multi, cfg.label_separator)
    seen: set[str] = set()
    for table in version.splits.values():
        for value in table["label"].to_pylist():
            seen.update(codec.split_label(value))
    declared = version.labels
    if declared:
        unknown = sorted(seen - set(declared))
        if unknown:
            raise UserError(
                f"{version.path}: rows carry labels outside the manifest's label set: {', '.join(unknown[:10])}"
                + (" (is train.problem_type right?)" if not multi else "")
            )
        return list(declared)
    if not seen:
        raise UserError(f"{version.path}: no labelled rows in any split; nothing to train on")
    return sorted(seen)


# ---------------------------------------------------------------------------------------------------- tokenize
def _tokenizer_identity(tokenizer, model_path: str) -> str:
    path = Path(model_path)
    stamp = ""
    if path.is_dir():
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spm.model", "sentencepiece.bpe.model"):
            f = path / name
            if f.is_file():
                stamp += f"{name}:{f.stat().st_size}:{int(f.stat().st_mtime)};"
    return f"{model_path}|{type(tokenizer).__name__}|{len(tokenizer)}|{stamp}"


def _version_identity(version: vdata.VersionData, split: str) -> str:
    if version.fingerprint:
        return f"{version.fingerprint}|{split}"
    f = version.path / f"{split}.parquet"
    return f"{f.resolve()}|{f.stat().st_size}|{int(f.stat().st_mtime)}"


def tokenize_split(
    table: pa.Table,
    tokenizer,
    codec: LabelCodec,
    max_length: int,
    cache_dir: Path | None,
    identity: str,
    pad_to_max_length: bool = False,
):
    """A `datasets.Dataset` of input_ids/attention_mask(/token_type_ids)/labels, tokenized with a batched,
    cached `map` (cache keyed by the version's content, the split, the tokenizer and the settings)."""
    import datasets  # noqa: PLC0415

    ds = datasets.Dataset(table.select(["text", "label"]))
    key = hashlib.sha256(
        json.dumps([identity, max_length, pad_to_max_length, codec.labels, codec.multi, codec.separator]).encode()
    ).hexdigest()[:24]

    def encode(batch):
        enc = tokenizer(
            batch["text"],
            truncation=True,
            max_length=max_length,
            padding="max_length" if pad_to_max_length else False,
        )
        enc["labels"] = codec.encode(batch["label"])
        return enc

    kwargs = {}
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        kwargs = {"cache_file_name": str(cache_dir / f"{key}.arrow"), "load_from_cache_file": True}
    return ds.map(
        encode,
        batched=True,
        batch_size=1000,
        remove_columns=["text", "label"],
        new_fingerprint=key,
        desc="tokenize",
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------------- trainer
def _trainer_class():
    import torch  # noqa: PLC0415
    from transformers import Trainer  # noqa: PLC0415

    class WeightedLossTrainer(Trainer):
        """Trainer with optional per-class weights in the cross-entropy loss."""

        def __init__(self, *args, class_weights=None, **kwargs):
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

    return WeightedLossTrainer


def _class_weights(cfg: Config, codec: LabelCodec, train_table: pa.Table):
    if cfg.class_weights is None:
        return None
    if codec.multi:
        raise UserError("train.class_weights is for single_label problems only")
    import torch  # noqa: PLC0415

    if cfg.class_weights == "balanced":
        from sklearn.utils.class_weight import compute_class_weight  # noqa: PLC0415

        y = train_table["label"].to_pylist()
        present = [label for label in codec.labels if label in set(y)]
        w = dict(zip(present, compute_class_weight("balanced", classes=np.array(present), y=np.array(y))))
        weights = [float(w.get(label, 1.0)) for label in codec.labels]
    else:
        unknown = sorted(set(cfg.class_weights) - set(codec.labels))
        if unknown:
            raise UserError(f"train.class_weights names unknown labels: {', '.join(unknown)} (labels: {codec.labels})")
        weights = [float(cfg.class_weights.get(label, 1.0)) for label in codec.labels]
    return torch.tensor(weights, dtype=torch.float32)


def _training_arguments(cfg: Config, rt: Runtime, output_dir: Path, *, evaluate: bool = True, **overrides):
    from transformers import TrainingArguments  # noqa: PLC0415

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
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=10,
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


def predict_in_order(model, tokenizer, cfg: Config, rt: Runtime, dataset, work_dir: Path) -> np.ndarray:
    """Logits for `dataset` in its row order. (With `group_by_length`, the Trainer also length-groups the
    *evaluation* sampler, so `trainer.predict` on the training Trainer returns rows shuffled; fine for
    metrics computed from its own label_ids, wrong for anything matched back to rows.)"""
    from transformers import DataCollatorWithPadding, Trainer  # noqa: PLC0415

    args = _training_arguments(cfg, rt, work_dir, evaluate=False, train_sampling_strategy="sequential")
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if rt.device == "cuda" else None),
        processing_class=tokenizer,
    )
    out = trainer.predict(dataset)
    logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    return np.asarray(logits, dtype=np.float32)


def predictions_table(table: pa.Table, codec: LabelCodec, logits: np.ndarray) -> pa.Table:
    """One row per scored row: id, label, predicted, and the probability of each label."""
    if codec.multi:
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        pred = codec.predict(logits)
        predicted = [codec.separator.join(lab for lab, on in zip(codec.labels, row) if on) for row in pred.tolist()]
    else:
        z = logits.astype(np.float64) - logits.max(-1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        predicted = [codec.labels[i] for i in logits.argmax(-1).tolist()]
    cols = {"id": table["id"], "label": table["label"], "predicted": pa.array(predicted, pa.string())}
    for i, label in enumerate(codec.labels):
        cols[f"p_{label}"] = pa.array(probs[:, i], pa.float32())
    return pa.table(cols)


# ---------------------------------------------------------------------------------------------------- train
@dataclass
class TrainResult:
    run_dir: Path
    run_id: str
    metrics: dict  # metrics.json


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _quiet_libraries() -> None:
    import datasets  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def train_version(
    dataset: str,
    version: str | None,
    cfg: Config,
    *,
    data_dir: Path | str = "data",
    runs_root: Path | str = "runs/train",
    config_file: str | None = None,
    echo: Callable[[str], None] = lambda s: None,
    extra_callbacks: list | None = None,
) -> TrainResult:
    """Fine-tune `cfg.model_path()` on a published version and write a complete run folder."""
    import torch  # noqa: PLC0415
    from transformers import (  # noqa: PLC0415
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        set_seed,
    )

    t_start = time.time()
    data_dir, runs_root = Path(data_dir), Path(runs_root)
    _quiet_libraries()
    version_data = vdata.load_version(data_dir, dataset, version)
    version = version_data.version  # `latest`, `3` or a tag resolved to the version's name
    for split in vdata.SPLITS:
        if version_data.splits[split].num_rows == 0:
            raise UserError(f"{version_data.path}: the {split} split has no labelled rows; cannot train and score")
    labels = _label_set(version_data, cfg)
    multi = cfg.problem_type == "multi_label"
    codec = LabelCodec(labels, multi, cfg.label_separator, cfg.multi_label_threshold)
    if not multi and len(labels) < 2:
        raise UserError(f"{version_data.path}: need at least 2 labels for classification, found {labels}")
    rt = resolve_runtime(cfg)
    model_path = cfg.model_path()

    run_id = new_run_id()
    final_dir = runs_root / dataset / version / run_id
    work_dir = final_dir.parent / f".{run_id}.partial"
    work_dir.mkdir(parents=True, exist_ok=False)
    try:
        echo(f"run {run_id}: {dataset} {version} on {rt.device_name} ({rt.precision}), base model {cfg.model_label()}")

        try:
            tokenizer = AutoTokenizer.from_pretrained(model_path)
        except OSError as exc:
            raise UserError(f"cannot load tokenizer of base model {model_path!r}: {exc}".replace("\n", " ")) from None

        def take(table: pa.Table, limit: int | None) -> pa.Table:
            return table.slice(0, limit) if limit else table

        tables = {
            "train": take(version_data.splits["train"], cfg.max_train_samples),
            "validation": take(version_data.splits["validation"], cfg.max_eval_samples),
            "test": take(version_data.splits["test"], cfg.max_eval_samples),
        }
        cache = runs_root / ".cache" / "tokenized"
        tok_id = _tokenizer_identity(tokenizer, model_path)
        encoded = {
            split: tokenize_split(
                table, tokenizer, codec, cfg.max_length, cache,
                f"{_version_identity(version_data, split)}|{table.num_rows}|{tok_id}",
            )
            for split, table in tables.items()
        }

        set_seed(cfg.seed, deterministic=cfg.deterministic)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                model_path,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                problem_type="multi_label_classification" if multi else "single_label_classification",
                dtype=torch.float32,  # fp32 master weights even when the checkpoint is stored in half precision
            )
        except OSError as exc:
            raise UserError(f"cannot load base model {model_path!r}: {exc}".replace("\n", " ")) from None

        def compute_metrics(pred) -> dict:
            logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
            m = codec.score(pred.label_ids, codec.predict(logits))
            return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "weighted_f1": m["weighted_f1"]}

        callbacks = list(extra_callbacks or [])
        if cfg.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
        if rt.fill_card:
            rt.batch_size = gpu_batch_size(tables["train"].num_rows)
            rt.eval_batch_size = 4 * rt.batch_size if cfg.eval_batch_size == "auto" else rt.eval_batch_size
        args = _training_arguments(cfg, rt, work_dir / "checkpoints")
        trainer = _trainer_class()(
            model=model,
            args=args,
            data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if rt.device == "cuda" else None),
            train_dataset=encoded["train"],
            eval_dataset=encoded["validation"],
            processing_class=tokenizer,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            class_weights=_class_weights(cfg, codec, tables["train"]),
        )
        t_train = time.time()
        train_output = trainer.train()
        train_wall = time.time() - t_train
        echo(
            f"trained {trainer.state.global_step} steps in {train_wall:.0f}s "
            f"({train_output.metrics.get('train_samples_per_second', 0):.1f} samples/s); scoring"
        )

        # the best model is loaded at the end; score it on validation and test
        results = {}
        for split in ("validation", "test"):
            logits = predict_in_order(trainer.model, tokenizer, cfg, rt, encoded[split], work_dir / "predict")
            results[split] = codec.score(np.asarray(list(encoded[split]["labels"])), codec.predict(logits))
            if split == "test":
                pq.write_table(predictions_table(tables[split], codec, logits), work_dir / "test_predictions.parquet")
        best_eval = max(
            (e for e in trainer.state.log_history if "eval_macro_f1" in e), key=lambda e: e["eval_macro_f1"], default=None
        )

        trainer.save_model(str(work_dir))  # model + tokenizer (processing_class)
        tokenizer.save_pretrained(str(work_dir))
        shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(work_dir / "predict", ignore_errors=True)

        samples_per_s = train_output.metrics.get("train_samples_per_second")
        metrics = {
            "dataset": dataset,
            "version": version,
            "content_fingerprint": version_data.fingerprint,
            "problem_type": cfg.problem_type,
            "labels": labels,
            "test": results["test"],
            "validation": results["validation"],
            "training": {
                "global_steps": trainer.state.global_step,
                "epochs_run": trainer.state.epoch,
                "train_rows": tables["train"].num_rows,
                "train_runtime_s": round(train_output.metrics.get("train_runtime", train_wall), 2),
                "train_samples_per_second": samples_per_s,
                "best_checkpoint": Path(trainer.state.best_model_checkpoint).name if trainer.state.best_model_checkpoint else None,
                "best_validation_macro_f1": best_eval["eval_macro_f1"] if best_eval else None,
                "best_epoch": best_eval.get("epoch") if best_eval else None,
                "stopped_early": bool(
                    cfg.early_stopping_patience
                    and trainer.state.epoch is not None
                    and not cfg.max_steps
                    and trainer.state.epoch < cfg.epochs - 1e-6
                ),
                "total_wall_s": None,  # filled below
            },
            "rows": {
                split: {"scored": tables[split].num_rows, "unlabelled_skipped": version_data.unlabelled[split]}
                for split in vdata.SPLITS
            },
        }
        (work_dir / "trainer_log.json").write_text(json.dumps(trainer.state.log_history, indent=2) + "\n")
        tm.plot_confusion_matrix(
            results["test"], work_dir / "confusion_matrix.png", f"{dataset} {version} test — run {run_id}"
        )
        metrics["training"]["total_wall_s"] = round(time.time() - t_start, 2)
        (work_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

        record = {
            "run_id": run_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
            "dataset": dataset,
            "version": version,
            "content_fingerprint": version_data.fingerprint,
            "version_path": str(version_data.path.resolve()),
            "data_dir": str(data_dir.resolve()),
            "config_file": config_file,
            "base_model": cfg.model_label(),
            "base_model_id": cfg.model or DEFAULT_MODEL_NAME,
            "base_model_path": model_path,
            "labels": labels,
            "problem_type": cfg.problem_type,
            "train_config": cfg.model_dump(mode="json"),
            "runtime": rt.describe(),
            "command": " ".join(sys.argv) if sys.argv else None,
        }
        (work_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
        from train.card import write_model_card  # noqa: PLC0415

        write_model_card(work_dir, record, metrics)

        os.replace(work_dir, final_dir)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)  # a failed run leaves nothing behind
        raise
    runs.append_index(
        runs_root,
        {
            "kind": "train",
            "run_id": run_id,
            "created": record["created"],
            "dataset": dataset,
            "version": version,
            "content_fingerprint": version_data.fingerprint,
            "base_model": cfg.model_label(),
            "device": rt.device_name,
            "precision": rt.precision,
            "epochs": metrics["training"]["epochs_run"],
            "train_runtime_s": metrics["training"]["train_runtime_s"],
            "accuracy": results["test"]["accuracy"],
            "macro_f1": results["test"]["macro_f1"],
            "weighted_f1": results["test"]["weighted_f1"],
            "run_dir": str(final_dir.resolve()),
        },
    )
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return TrainResult(final_dir, run_id, metrics)


# ---------------------------------------------------------------------------------------------------- score
def read_run(run_dir: Path) -> dict:
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


def score_run(
    run_dir: Path | str,
    version: str,
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
    (metrics.json, confusion_matrix.png) and returns (that folder, metrics)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415

    run_dir = Path(run_dir)
    record = read_run(run_dir)
    dataset = dataset or record["dataset"]
    _quiet_libraries()
    if split not in vdata.SPLITS:
        raise UserError(f"unknown split {split!r} (one of {', '.join(vdata.SPLITS)})")
    version_data = vdata.load_version(Path(data_dir), dataset, version, splits=(split,))
    version = version_data.version
    table = version_data.splits[split]
    if max_samples:
        table = table.slice(0, max_samples)
    if table.num_rows == 0:
        raise UserError(f"{version_data.path}: the {split} split has no labelled rows to score")

    model = AutoModelForSequenceClassification.from_pretrained(str(run_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    multi = model.config.problem_type == "multi_label_classification"
    tcfg = Config.model_validate(record.get("train_config", {}))
    cfg = tcfg.model_copy(update={"use_cpu": use_cpu or tcfg.use_cpu})
    codec = LabelCodec(labels, multi, cfg.label_separator, cfg.multi_label_threshold)

    # rows whose label the model does not know can never be right; they are scored (as misses), and reported
    seen = set()
    for value in table["label"].to_pylist():
        seen.update(codec.split_label(value))
    unknown = sorted(seen - set(labels))
    if unknown and multi:
        raise UserError(f"{version_data.path}: labels unknown to the model: {', '.join(unknown)}")
    rt = resolve_runtime(cfg)
    texts = table["text"].to_pylist()
    y_true = table["label"].to_pylist()
    known = pa.table({"text": texts, "label": [v if v in codec.index else labels[0] for v in y_true]}) if unknown and not multi else table
    encoded = tokenize_split(known, tokenizer, codec, cfg.max_length, None, "score")

    out_dir = run_dir / "scores" / dataset / f"{version}-{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    logits = predict_in_order(model, tokenizer, cfg, rt, encoded, out_dir / "tmp")
    predictions = codec.predict(logits)
    if multi:
        result = codec.score(np.asarray(list(encoded["labels"])), predictions)
    else:
        result = tm.single_label_metrics(y_true, [labels[i] for i in predictions.tolist()], labels)
    pq.write_table(predictions_table(table, codec, logits), out_dir / "predictions.parquet")
    shutil.rmtree(out_dir / "tmp", ignore_errors=True)
    metrics = {
        "run_id": record.get("run_id"),
        "trained_on": {"dataset": record.get("dataset"), "version": record.get("version"),
                       "content_fingerprint": record.get("content_fingerprint")},
        "scored_on": {"dataset": dataset, "version": version, "split": split,
                      "content_fingerprint": version_data.fingerprint,
                      "unlabelled_skipped": version_data.unlabelled[split]},
        "labels_unknown_to_model": unknown,
        "seconds": round(time.time() - t0, 2),
        split: result,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    tm.plot_confusion_matrix(result, out_dir / "confusion_matrix.png", f"run {record.get('run_id')} on {dataset} {version} {split}")
    root = Path(runs_root) if runs_root is not None else run_dir.resolve().parents[2]
    runs.append_index(
        root,
        {
            "kind": "score",
            "run_id": record.get("run_id"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
            "dataset": dataset,
            "version": version,
            "split": split,
            "content_fingerprint": version_data.fingerprint,
            "trained_on": f"{record.get('dataset')} {record.get('version')}",
            "base_model": record.get("base_model"),
            "accuracy": result["accuracy"],
            "macro_f1": result["macro_f1"],
            "weighted_f1": result["weighted_f1"],
            "run_dir": str(run_dir.resolve()),
            "scores_dir": str(out_dir.resolve()),
        },
    )
    echo(f"scored {result['n']} rows of {dataset} {version} {split}")
    return out_dir, metrics
