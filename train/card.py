"""The model card (`README.md` in a run folder): base model, data version + fingerprint, hardware, training,
the task's metrics section, hyper-parameters and how to use the model.

The frame is the same for every task; what is task-specific (pipeline tag, summary, metrics, usage) comes from
`Task.model_card` as a `CardSection`. Metrics are fractions in 0-1, as in metrics.json and the CLI.
"""
from __future__ import annotations

from pathlib import Path

from train.tasks.base import CardSection


def write_model_card(run_dir: Path, record: dict, metrics: dict, section: CardSection) -> None:
    tr = metrics["training"]
    rt = record["runtime"]
    cfg = record["train_config"]
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {section.pipeline_tag}",
        f"base_model: {record['base_model_id']}",
        f"tags: [sft-pipeline, {section.pipeline_tag}]",
        "---",
        "",
        f"# {record['dataset']} {record['version']} — {record['base_model_id']} fine-tune (run {record['run_id']})",
        "",
        section.summary,
        "",
        "| | |",
        "| --- | --- |",
        f"| base model | {record['base_model']} |",
        f"| dataset | {record['dataset']} |",
        f"| version | {record['version']} |",
        f"| content fingerprint | `{record['content_fingerprint']}` |",
        *(f"| {key} | {value} |" for key, value in section.facts),
        f"| trained | {record['created']} |",
        f"| hardware | {rt['device_name']}; {rt['precision']}{', TF32' if rt['tf32'] else ''}; "
        f"torch {rt['torch']}, transformers {rt['transformers']} |",
        f"| training time | {tr['train_runtime_s']} s ({tr['train_samples_per_second']:.1f} samples/s), "
        f"{tr['global_steps']} steps, {tr['epochs_run']:.2f} epochs{' (stopped early)' if tr['stopped_early'] else ''} |",
        "",
        "## Metrics",
        "",
        *section.metrics,
        "",
        "## Hyper-parameters",
        "",
        "| key | value |",
        "| --- | --- |",
    ]
    effective = {
        **cfg,
        "batch_size (effective)": rt["batch_size"],
        "eval_batch_size (effective)": rt["eval_batch_size"],
        "precision (effective)": rt["precision"],
    }
    for key, value in effective.items():
        shown = "(bundled default)" if key == "model" and value is None else str(value).replace("|", "\\|")
        lines.append(f"| {key} | `{shown}` |")
    lines += [
        "",
        "## Use",
        "",
        *section.usage,
        "",
        "Score it on another version: `sftpipe score <this folder> --version vN`.",
        "",
    ]
    (Path(run_dir) / "README.md").write_text("\n".join(lines), encoding="utf-8")
