"""Generative training throughput and peak memory: our causal_lm / seq2seq path against a plain `Trainer`.

Two models, neither downloaded:

    decoder     a decoder-only model built from a config (Llama architecture: hidden 768, 12 layers, 12 heads,
                MLP 2048, the MiniLM tokenizer's 30,522-token vocabulary, tied embeddings: 110M parameters),
                random weights, saved once and loaded by every arm
    bert2bert   the offline default: an EncoderDecoderModel warm-started from the bundled all-MiniLM-L6-v2

and, for each, arms that differ only where our path differs from a plain Trainer (same examples, model, seed,
learning rate, batch size, max_length and number of steps):

    ours             the task's encoding and collator and train.trainer's arguments, as `sftpipe train` runs
                     them: dynamic padding (to a multiple of 8 on a GPU), length grouping, bf16 + TF32 on a GPU
                     (fp16 where bf16 is missing), loader workers and pinned memory on a GPU, loss on the answers
    ours+packing     (decoder) the same with train.packing: a batch's examples in one row, no padding
    ours+checkpointing  (decoder) the same with gradient checkpointing (memory for time)
    baseline         a plain Trainer: every example padded to max_length, random order, fp32, default loader,
                     no packing (the same rendered texts and answer-only labels)

Each arm runs in its own process (its own CUDA context and peak memory) for --warmup-steps untimed steps, then
--steps timed ones. Reported per arm: input tokens/s (non-padding input tokens the model trained on, per second
of the timed steps: the same useful work in every arm, so the ratio is the speed-up; for bert2bert, the
encoder's input tokens), samples/s, peak memory
(GPU: torch.cuda.max_memory_allocated; CPU: the process's peak RSS), the last training loss, and the process's
CPU seconds over the timed steps (on a shared CPU box, input tokens per CPU second is the figure to compare:
wall time there mostly measures the neighbours). One JSON line per
arm on stdout, a table at the end, everything in --out.

    python benchmarks/train/gen_bench.py --data-dir /tmp/d --dataset alpaca_en --out gen.json            # GPU
    python benchmarks/train/gen_bench.py --data-dir /tmp/d --dataset alpaca_en --tiny --out cpu.json     # CPU
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DECODER = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12,
               intermediate_size=2048)
TINY_DECODER = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                    intermediate_size=256)
ARMS = ("decoder:ours", "decoder:ours+packing", "decoder:ours+checkpointing", "decoder:baseline", "bert2bert:ours",
        "bert2bert:baseline")


def build_decoder(folder: Path, minilm: str, shape: dict) -> int:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, set_seed

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    set_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=1024,
                                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, **shape))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


class Clock:
    """A TrainerCallback: wall time and input tokens of the steps after the warm-up."""

    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        clock = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                import torch

                if state.global_step == warmup:
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    clock.t0, clock.tokens0 = time.perf_counter(), state.num_input_tokens_seen
                    clock.cpu0 = time.process_time()

            def on_train_end(self, args, state, control, **kw):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                clock.seconds = time.perf_counter() - clock.t0
                clock.cpu_seconds = time.process_time() - clock.cpu0
                clock.tokens = state.num_input_tokens_seen - clock.tokens0
                clock.steps = state.global_step - warmup
                losses = [e["loss"] for e in state.log_history if "loss" in e]
                clock.loss = losses[-1] if losses else None

        self.callback = _Callback()


def run_arm(arm: str, args) -> dict:
    """One arm, in this process."""
    from functools import partial

    import torch
    from transformers import Trainer, TrainingArguments, default_data_collator, set_seed

    from train.config import Config
    from train.data import open_version
    from train.run import usable_split
    from train.runtime import resolve_runtime
    from train.tasks import task_for_version
    from train.tokenization import tokenize
    from train.trainer import quiet_libraries, training_arguments, without_log_printing

    quiet_libraries()
    model_kind, variant = arm.split(":")
    base, *mods = variant.split("+")
    model_path = str(args.decoder_dir) if model_kind == "decoder" else args.minilm
    cfg = Config(model=model_path, max_length=args.max_length, batch_size=args.batch_size, learning_rate=args.lr,
                 max_steps=args.warmup_steps + args.steps, warmup_ratio=0.0, seed=0, packing="packing" in mods,
                 gradient_checkpointing="checkpointing" in mods)
    version = open_version(Path(args.data_dir), args.dataset, args.version)
    task_cls = task_for_version(version, cfg)
    rows = {s: usable_split(task_cls, version, s)[0] for s in ("train", "validation", "test")}
    task = task_cls.for_training(cfg, version, rows)
    rt = resolve_runtime(cfg)
    tokenizer = task.load_tokenizer(model_path)
    examples = tokenize(rows["train"].drop_columns(["id"]), partial(task.encode_examples, tokenizer),
                        key=["gen-bench", arm], cache_dir=None)
    set_seed(cfg.seed)
    model = task.build_model(model_path)
    clock = Clock(args.warmup_steps)
    out_dir = Path(args.work) / arm.replace(":", "-")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if base == "ours":
        targs = training_arguments(cfg, rt, out_dir, best_metric=None, disable_tqdm=True, logging_steps=5,
                                   **task.training_overrides())
        trainer = task.trainer(rows["train"], model=model, args=targs, data_collator=task.collator(tokenizer, rt),
                               train_dataset=examples, processing_class=tokenizer, callbacks=[clock.callback])
        precision = rt.precision + ("+tf32" if rt.tf32 else "")
    else:
        # the same examples, padded to max_length (labels with -100) and fed in random order in fp32
        def pad(batch):
            out = {"input_ids": [], "attention_mask": [], "labels": []}
            for ids, labels in zip(batch["input_ids"], batch["labels"]):
                n = args.max_length - len(ids)
                out["input_ids"].append(ids + [tokenizer.pad_token_id] * n)
                out["attention_mask"].append([1] * len(ids) + [0] * n)
                out["labels"].append(labels + [-100] * (args.max_length - len(labels)))
            return out

        padded = examples.map(pad, batched=True, remove_columns=examples.column_names)
        targs = TrainingArguments(
            output_dir=str(out_dir), max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
            per_device_train_batch_size=cfg.batch_size, logging_steps=5, report_to="none", seed=cfg.seed,
            save_strategy="no", eval_strategy="no", disable_tqdm=True, use_cpu=rt.device == "cpu",
            include_num_input_tokens_seen="non_padding",
        )
        trainer = Trainer(model=model, args=targs, data_collator=default_data_collator, train_dataset=padded,
                          processing_class=tokenizer, callbacks=[clock.callback])
        precision = "fp32"
    trainer = without_log_printing(trainer)
    trainer.train()
    result = {
        "arm": arm, "task": task.name, "device": rt.device_name, "precision": precision,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "batch_size": cfg.batch_size, "max_length": cfg.max_length, "timed_steps": clock.steps,
        "seconds": round(clock.seconds, 2),
        "input_tokens_per_s": round(clock.tokens / clock.seconds, 1),
        "cpu_s": round(clock.cpu_seconds, 2),
        "input_tokens_per_cpu_s": round(clock.tokens / clock.cpu_seconds, 1),
        "samples_per_s": round(clock.steps * cfg.batch_size / clock.seconds, 2),
        "last_loss": round(clock.loss, 4) if clock.loss is not None else None,
    }
    if torch.cuda.is_available():
        result["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--dataset", default="alpaca_en")
    ap.add_argument("--version", default="v1")
    ap.add_argument("--minilm", default=None, help="the MiniLM folder (default: the bundled package's)")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--tiny", action="store_true", help="a 2-layer, 128-wide decoder (CPU scale)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=40, help="timed steps per arm")
    ap.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first (CUDA and allocator start-up)")
    ap.add_argument("--work", default="/tmp/sftpipe-gen-bench")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one arm in this process
    ap.add_argument("--decoder-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.minilm is None:
        from train.config import default_model_path

        args.minilm = str(default_model_path())
    if args.child:
        print("RESULT " + json.dumps(run_arm(args.child, args)), flush=True)
        return

    import torch
    import transformers

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    decoder_dir = work / ("decoder-tiny" if args.tiny else "decoder-110m")
    if not (decoder_dir / "config.json").is_file():
        build_decoder(decoder_dir, args.minilm, TINY_DECODER if args.tiny else DECODER)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_start": os.getloadavg(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "dataset": f"{args.dataset} {args.version}", "decoder": "tiny" if args.tiny else "110M",
        "batch_size": args.batch_size, "max_length": args.max_length, "steps": args.steps,
        "warmup_steps": args.warmup_steps, "arms": [],
    }
    passed = [a for a in sys.argv[1:]]
    for arm in args.arms.split(","):
        t = time.time()
        proc = subprocess.run([sys.executable, __file__, *passed, "--child", arm, "--decoder-dir", str(decoder_dir),
                               "--minilm", args.minilm], capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            result = {"arm": arm, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
        else:
            result = json.loads(line[len("RESULT "):])
        result["wall_s"] = round(time.time() - t, 1)
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        report["arms"].append(result)
        print(json.dumps(result), flush=True)
    print_table(report["arms"])
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


def print_table(arms: list[dict]) -> None:
    cols = ("arm", "precision", "timed_steps", "seconds", "input_tokens_per_s", "cpu_s", "input_tokens_per_cpu_s",
            "samples_per_s", "peak_gpu_mem_gib", "peak_rss_gib", "last_loss")
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for a in arms:
        print("| " + " | ".join(str(a.get(c, "")) for c in cols) + " |")


if __name__ == "__main__":
    main()
