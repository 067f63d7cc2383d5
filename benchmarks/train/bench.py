"""Training throughput and time-to-target: our training path against a plain `Trainer` baseline.

Both arms fine-tune the same base model on the same published version with the same seed, learning rate,
batch size and schedule; they differ only where our path differs from a plain Trainer:

| | ours (`train/run.py` + the classification task) | baseline |
| --- | --- | --- |
| padding | dynamic (`DataCollatorWithPadding`), to a multiple of 8 on GPU | fixed `padding="max_length"` |
| order | `group_by_length` | random |
| precision | bf16 (fp16 where bf16 is missing) + TF32 on GPU; fp32 on CPU | fp32 |
| loader | workers + pinned memory on GPU | defaults |

Reported per arm: train samples/s (optimizer time only: evaluation excluded), and the training time until
the validation macro-F1 first reaches the target (evaluated every `--eval-steps` steps; eval time excluded).

    python benchmarks/train/bench.py --data-dir data --dataset sms_spam --version v1 --out results.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers import TrainerCallback  # noqa: E402


class Clock(TrainerCallback):
    """Training time excluding evaluation (wall, and CPU seconds of this process: a fairer figure on a shared
    CPU box), the eval curve, and when the target was first reached."""

    def __init__(self, target: float):
        self.target = target
        self.curve: list[dict] = []
        self.reached_at: dict | None = None
        self.eval_time = 0.0
        self.eval_cpu = 0.0

    def _sync(self):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def _now(self):
        return time.perf_counter(), time.process_time()

    def on_train_begin(self, args, state, control, **kw):
        self._sync()
        self.t0, self.c0 = self._now()
        self.last_step_end, self.last_step_cpu = self.t0, self.c0

    def on_step_end(self, args, state, control, **kw):
        self._sync()
        self.last_step_end, self.last_step_cpu = self._now()

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        now, cpu = self._now()
        train_s = self.last_step_end - self.t0 - self.eval_time
        train_cpu = self.last_step_cpu - self.c0 - self.eval_cpu
        self.eval_time += now - self.last_step_end
        self.eval_cpu += cpu - self.last_step_cpu
        f1 = (metrics or {}).get("eval_macro_f1")
        point = {"step": state.global_step, "train_s": round(train_s, 3), "train_cpu_s": round(train_cpu, 2),
                 "val_macro_f1": f1}
        self.curve.append(point)
        if self.reached_at is None and f1 is not None and f1 >= self.target:
            self.reached_at = point
        self.last_step_end, self.last_step_cpu = self._now()  # the next eval gap starts after this eval

    def on_train_end(self, args, state, control, **kw):
        self._sync()
        now, cpu = self._now()
        self.total_train_s = now - self.t0 - self.eval_time
        self.total_train_cpu = cpu - self.c0 - self.eval_cpu


def run_arm(arm: str, version, rows: dict, cfg, args, rt, max_steps: int | None = None) -> dict:
    from functools import partial

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, set_seed

    from train.tasks.classification import ClassificationTask, LabelCodec
    from train.tasks.classification.labels import label_set
    from train.tokenization import tokenize
    from train.trainer import training_arguments

    model_path = cfg.model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    labels = label_set(version, rows, cfg)
    codec = LabelCodec(labels, False)
    base, *mods = arm.split("+")  # ablations of our path: ours+fp32, ours+w0 (no loader workers), ours+random
    ours = base == "ours"
    if not ours and mods:
        raise SystemExit(f"modifiers apply to ours only: {arm}")
    import dataclasses

    if "fp32" in mods:
        rt = dataclasses.replace(rt, precision="fp32", tf32=False)
    if "w0" in mods:
        rt = dataclasses.replace(rt, workers=0)
    if "random" in mods:
        cfg = cfg.model_copy(update={"group_by_length": False})
    tables = {
        "train": rows["train"].slice(0, args.max_train_samples) if args.max_train_samples else rows["train"],
        "validation": rows["validation"],
    }
    task = ClassificationTask(cfg, codec, pad_to_max_length=not ours)  # the baseline pads every row to max_length
    enc = {
        s: tokenize(t.drop_columns(["id"]), partial(task.encode_examples, tokenizer),
                    key=[f"bench|{s}", task.encoding_key()], cache_dir=None)
        for s, t in tables.items()
    }
    set_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={x: i for i, x in enumerate(labels)}, dtype=torch.float32,
    )

    def compute_metrics(pred):
        m = codec.score(pred.label_ids, codec.predict(pred.predictions))
        return {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"]}

    if ours:
        targs = training_arguments(
            cfg, rt, Path(args.work) / arm, best_metric=task.best_metric, eval_strategy="steps",
            eval_steps=args.eval_steps, save_strategy="no", load_best_model_at_end=False, logging_steps=50,
            disable_tqdm=True, max_steps=max_steps or -1,
        )
        collator = task.collator(tokenizer, rt)
    else:
        from transformers import TrainingArguments, default_data_collator

        targs = TrainingArguments(
            output_dir=str(Path(args.work) / arm), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio,
            per_device_train_batch_size=rt.batch_size, per_device_eval_batch_size=rt.eval_batch_size,
            eval_strategy="steps", eval_steps=args.eval_steps, save_strategy="no", logging_steps=50,
            report_to="none", seed=cfg.seed, data_seed=cfg.seed, use_cpu=rt.device == "cpu", disable_tqdm=True,
            max_steps=max_steps or -1,
        )
        collator = default_data_collator
    clock = Clock(args.target)
    trainer = Trainer(model=model, args=targs, data_collator=collator, train_dataset=enc["train"],
                      eval_dataset=enc["validation"], processing_class=tokenizer, compute_metrics=compute_metrics,
                      callbacks=[clock])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    out = trainer.train()
    if max_steps:  # warm-up pass: nothing recorded
        return {}
    final = trainer.evaluate()
    samples = len(enc["train"]) * cfg.epochs
    result = {
        "arm": arm,
        "precision": (rt.precision + ("+tf32" if rt.tf32 else "")) if ours else "fp32",
        "padding": "dynamic" if ours else f"max_length={cfg.max_length}",
        "sampler": "group_by_length" if ours and cfg.group_by_length else "random",
        "workers": rt.workers if ours else 0,
        "batch_size": rt.batch_size,
        "steps": trainer.state.global_step,
        "train_s": round(clock.total_train_s, 2),
        "samples_per_s": round(samples / clock.total_train_s, 1),
        "trainer_samples_per_s": out.metrics.get("train_samples_per_second"),
        "train_cpu_s": round(clock.total_train_cpu, 1),
        "time_to_target_s": clock.reached_at["train_s"] if clock.reached_at else None,
        "cpu_s_to_target": clock.reached_at["train_cpu_s"] if clock.reached_at else None,
        "step_to_target": clock.reached_at["step"] if clock.reached_at else None,
        "final_val_macro_f1": round(final["eval_macro_f1"], 4),
        "final_val_accuracy": round(final["eval_accuracy"], 4),
        "curve": clock.curve,
    }
    if torch.cuda.is_available():
        result["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del trainer, model
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--dataset", default="sms_spam")
    ap.add_argument("--version", default="latest")
    ap.add_argument("--model", default=None, help="default: the bundled all-MiniLM-L6-v2")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", default="auto")
    ap.add_argument("--max-train-samples", type=int, default=None)
    ap.add_argument("--eval-steps", type=int, default=20)
    ap.add_argument("--target", type=float, default=0.95, help="validation macro-F1 to reach")
    ap.add_argument("--arms", default="ours,baseline")
    ap.add_argument("--warmup-steps", type=int, default=0,
                    help="first run each arm this many steps untimed (CUDA context, cuBLAS, allocator warm-up)")
    ap.add_argument("--work", default="/tmp/sftpipe-bench")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch
    import transformers

    from train.config import Config
    from train.data import open_version
    from train.run import usable_split
    from train.runtime import resolve_runtime
    from train.tasks import ClassificationTask
    from train.trainer import quiet_libraries

    quiet_libraries()
    cfg = Config(model=args.model, epochs=args.epochs, learning_rate=args.lr, max_length=args.max_length,
                 batch_size=args.batch_size if args.batch_size == "auto" else int(args.batch_size))
    rt = resolve_runtime(cfg)
    version = open_version(Path(args.data_dir), args.dataset, args.version)
    rows = {s: usable_split(ClassificationTask, version, s)[0] for s in ("train", "validation")}
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_start": __import__("os").getloadavg(),
        "hardware": rt.device_name,
        "cpu_count": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "dataset": f"{args.dataset} {version.version}",
        "train_rows": min(rows["train"].num_rows, args.max_train_samples or 10**12),
        "validation_rows": rows["validation"].num_rows,
        "model": cfg.model_label(),
        "epochs": args.epochs, "lr": args.lr, "max_length": args.max_length, "target_val_macro_f1": args.target,
        "eval_steps": args.eval_steps,
        "arms": [],
    }
    if args.warmup_steps:
        for arm in args.arms.split(","):
            run_arm(arm, version, rows, cfg, args, rt, max_steps=args.warmup_steps)
    report["warmup_steps"] = args.warmup_steps
    for arm in args.arms.split(","):
        t = time.time()
        res = run_arm(arm, version, rows, cfg, args, rt)
        res["wall_s"] = round(time.time() - t, 1)
        res["load_average_after"] = [round(x, 2) for x in __import__("os").getloadavg()]
        report["arms"].append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "curve"}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
