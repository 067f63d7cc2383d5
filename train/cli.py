"""`sftpipe train`, `sftpipe score` and `sftpipe runs list`; `register(app)` adds them to the main CLI.

Kept light (no torch / transformers at import): the main CLI imports this module at start-up, and training
code is imported only when a command runs. Metrics are shown as fractions (0-1), as in metrics.json and the card.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from pipeline.errors import UserError
from pipeline.terminal import new_console
from train.config import Config

DEFAULT_RUNS_ROOT = Path("runs/train")

RunsDir = typer.Option(
    None, "--runs-dir", help=f"root of the training run folders and index.jsonl (default: {DEFAULT_RUNS_ROOT})"
)
DataDirOpt = typer.Option(None, "--data-dir", help="where published versions live (default: the config's store.data_dir)")


def Flag(*names: str, help: str):  # noqa: A002, N802 - typer's keyword; reads like typer.Option
    """An on/off option, shown in --help as a bare flag (typer would print `<bool>`, as if it took a value)."""
    return typer.Option(False, *names, help=help, metavar="")


def Override(key: str, *names: str, **kwargs):  # noqa: N802 - reads like typer.Option
    """An option overriding the `train:` config key `key` for one run. Its help is the key's description in
    train.config.Config (one place says what a key means) and the key's default. (Parentheses, not brackets:
    typer renders help as Rich markup, where `[word]` is a style tag and disappears.)"""
    field = Config.model_fields[key]
    where = f"train.{key}" if field.default is None else f"train.{key}; default: {field.default}"
    return typer.Option(None, *names, help=f"{field.description} ({where})", **kwargs)


def _overrides(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def train_command(
    config: Path = typer.Argument(..., help="the dataset's YAML config (its `train:` section holds the defaults)"),
    version: Optional[str] = typer.Option(None, "--version", "-v", help="v3, 3, a tag or latest (default: latest)"),
    model: Optional[str] = Override("model", "--model"),
    task: Optional[str] = Override("task", "--task"),
    epochs: Optional[float] = Override("epochs", "--epochs", min=0.01),
    learning_rate: Optional[float] = Override("learning_rate", "--lr", "--learning-rate"),
    batch_size: Optional[int] = Override("batch_size", "--batch-size", min=1),
    max_length: Optional[int] = Override("max_length", "--max-length", min=1),
    max_steps: Optional[int] = Override("max_steps", "--max-steps", min=1),
    max_train_samples: Optional[int] = Override("max_train_samples", "--max-train-samples", min=1),
    max_eval_samples: Optional[int] = Override("max_eval_samples", "--max-eval-samples", min=1),
    seed: Optional[int] = Override("seed", "--seed"),
    max_new_tokens: Optional[int] = Override("max_new_tokens", "--max-new-tokens", min=1),
    chat_template: Optional[str] = Override("chat_template", "--chat-template"),
    gradient_accumulation_steps: Optional[int] = Override("gradient_accumulation_steps", "--gradient-accumulation-steps",
                                                          min=1),
    packing: bool = Flag("--packing", help="causal_lm: pack each batch's examples into one row without padding; "
                         "position ids restart per example, so examples never attend to each other (train.packing)"),
    gradient_checkpointing: bool = Flag("--gradient-checkpointing", help="recompute activations in the backward "
                                        "pass: less memory, about 30% slower (train.gradient_checkpointing)"),
    cpu: bool = Flag("--cpu", help="train on the CPU even if a GPU is present (train.use_cpu)"),
    data_dir: Optional[Path] = DataDirOpt,
    runs_dir: Optional[Path] = RunsDir,
) -> None:
    """Fine-tune a model on a published version and score it on the version's test split.

    What is trained follows the version's record kind and the base model (train.task: auto): a classification
    version trains a sequence classifier (scored by accuracy and F1); a generation or chat version trains a
    decoder-only model (causal_lm: --model Qwen/Qwen2.5-0.5B-Instruct, a local folder), the loss on the answers
    only, or an encoder-decoder (seq2seq; the offline default warm-starts one from the bundled MiniLM: small and
    weak, it only makes the path run offline), scored on generated answers (ROUGE, BLEU, chrF, exact match,
    token F1).

    Writes runs/train/<dataset>/<version>/<run-id>/ (model, tokenizer, metrics.json, test_predictions.parquet,
    trainer_log.json, README.md model card; a classifier's confusion_matrix.png) and appends a line to
    runs/train/index.jsonl. A progress bar shows steps, epoch, time left and the latest validation figure.
    """
    from pydantic import ValidationError  # noqa: PLC0415

    from pipeline.config import load_config  # noqa: PLC0415
    from train.run import train_version  # noqa: PLC0415

    cfg = load_config(config, check_sources=False)
    updates = _overrides(
        model=model, task=task, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
        max_length=max_length, max_steps=max_steps, max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples, seed=seed,
        max_new_tokens=max_new_tokens, chat_template=chat_template,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
    for key, on in (("use_cpu", cpu), ("packing", packing), ("gradient_checkpointing", gradient_checkpointing)):
        if on:
            updates[key] = True
    try:
        tcfg = Config.model_validate({**cfg.train.model_dump(), **updates})
    except ValidationError as exc:
        raise UserError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    console = new_console()
    result = train_version(
        cfg.dataset,
        version,
        tcfg,
        data_dir=data_dir if data_dir is not None else Path(cfg.store.data_dir),
        runs_root=runs_dir or DEFAULT_RUNS_ROOT,
        config_file=str(config),
        echo=lambda m: console.print(f"[dim]{m}[/dim]", highlight=False),
        progress=new_console(stderr=True),  # beside the pipeline's own progress bars
    )
    t = result.metrics["test"]
    console.print(
        f"[green]done[/green] {result.run_dir}\n"
        f"test: {result.task.headline_text(t)} ({t['n']} rows); "
        f"training {result.metrics['training']['train_runtime_s']:.0f}s",
        highlight=False,
    )


def score_command(
    run_dir: Path = typer.Argument(..., help="a training run folder (runs/train/<dataset>/<version>/<run-id>)"),
    version: Optional[str] = typer.Option(None, "--version", "-v", help="version to score on (default: latest)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset to score on (default: the run's)"),
    split: str = typer.Option("test", "--split", help="which split of that version: train, validation or test"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="where published versions live (default: the run's data dir)"),
    runs_dir: Optional[Path] = RunsDir,
    cpu: bool = Flag("--cpu", help="score on the CPU even if a GPU is present"),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1,
                                              help="score the first N rows of the split only (generating is slow)"),
    as_json: bool = Flag("--json", help="print the metrics as JSON instead of a table"),
) -> None:
    """Score a trained run on a version's test split: a classifier by accuracy, macro/weighted F1, per class and
    the confusion matrix; a generative model by generating an answer for every row (greedy, the run's
    max_new_tokens) and comparing it with the row's answer: ROUGE-1/2/L, BLEU, chrF, exact match, token F1.

    Writes <run_dir>/scores/<dataset>/<version>-<split>/ (metrics.json, predictions.parquet) and appends a
    `score` line to the run index.
    """
    from train.run import read_run, score_run  # noqa: PLC0415
    from train.tasks import task_named  # noqa: PLC0415

    record = read_run(run_dir)
    if data_dir is None:
        data_dir = Path(record.get("data_dir") or "data")
    out_dir, metrics = score_run(
        run_dir, version, dataset=dataset, data_dir=data_dir, split=split, runs_root=runs_dir, use_cpu=cpu,
        max_samples=max_samples,
    )
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    from rich.table import Table  # noqa: PLC0415

    task = task_named(record.get("task"))
    m = metrics[split]
    s = metrics["scored_on"]
    console = new_console()
    console.print(
        f"run {metrics['run_id']} (trained on {metrics['trained_on']['dataset']} {metrics['trained_on']['version']}) "
        f"on {s['dataset']} {s['version']} {split}: {task.headline_text(m)} ({m['n']} rows)",
        highlight=False,
    )
    details = task.detail_table(m)
    if details is not None:
        columns, rows = details
        table = Table(*columns)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if metrics.get("labels_unknown_to_model"):
        console.print(f"[yellow]labels the model does not know (always wrong):[/yellow] {', '.join(metrics['labels_unknown_to_model'])}")
    console.print(f"written to {out_dir}")


def runs_list_command(
    dataset: Optional[str] = typer.Argument(None, help="only this dataset"),
    version: Optional[str] = typer.Option(None, "--version", "-v", help="only runs on this version"),
    scores: bool = Flag("--scores", help="list `sftpipe score` results instead of training runs"),
    runs_dir: Optional[Path] = RunsDir,
    as_json: bool = Flag("--json", help="one JSON object per line instead of a table"),
) -> None:
    """One line per training run (or scoring): dataset, version, task, base model, device, time and the test
    figures of its task (classifiers: accuracy, macro-F1, weighted-F1; generative models: ROUGE-L, BLEU, chrF,
    exact match, token F1), side by side."""
    from train import runs  # noqa: PLC0415

    root = runs_dir or DEFAULT_RUNS_ROOT
    records = runs.filter_records(runs.read_index(root), dataset, version, kind="score" if scores else "train")
    if as_json:
        for r in records:
            print(json.dumps(r))
        return
    if not records:
        raise UserError(f"no {'scores' if scores else 'training runs'} recorded in {root / runs.INDEX}")
    from rich.table import Table  # noqa: PLC0415

    from train.tasks import task_named  # noqa: PLC0415

    def f(x) -> str:
        return "" if x is None else f"{x:.4f}"

    # the figures of every task listed, in the order the tasks first appear: a run shows its own, blank elsewhere
    figures: dict[str, str] = {}
    for r in records:
        try:
            headline = task_named(r.get("task")).headline
        except UserError:  # a run of a task this version does not know: its own figures stay in --json
            headline = {}
        figures.update({k: v for k, v in headline.items() if k not in figures})
    if scores:
        table = Table("run", "task", "trained on", "scored on", "split", *figures.values(), "created")
        for r in records:
            table.add_row(r["run_id"], r.get("task", "classification"), r.get("trained_on", ""),
                          f"{r['dataset']} {r['version']}", r.get("split", "test"),
                          *(f(r.get(k)) for k in figures), r.get("created", ""))
    else:
        table = Table("run", "dataset", "version", "task", "base model", "device", "epochs", "train s",
                      *figures.values())
        for r in records:
            epochs = r.get("epochs")
            table.add_row(
                r["run_id"], r["dataset"], r["version"], r.get("task", "classification"),
                str(r.get("base_model", "")).split(" ")[0].rstrip("/").split("/")[-1],
                f"{_short_device(r.get('device', ''))} {r.get('precision', '')}".strip(), "" if epochs is None else f"{epochs:.2f}",
                "" if r.get("train_runtime_s") is None else f"{r['train_runtime_s']:.0f}",
                *(f(r.get(k)) for k in figures),
            )
    new_console().print(table)


def _short_device(name: str) -> str:
    return "cpu" if name.startswith("CPU") else name.replace("NVIDIA ", "")


def register(app: typer.Typer) -> None:
    """Add `train`, `score` and `runs list` to the `sftpipe` app."""
    app.command("train")(train_command)
    app.command("score")(score_command)
    runs_app = typer.Typer(help="List and compare training runs.", no_args_is_help=True,
                           rich_markup_mode=None)  # plain help like the rest of sftpipe (pipeline.cli.console.typer_app)
    runs_app.command("list")(runs_list_command)
    app.add_typer(runs_app, name="runs")
