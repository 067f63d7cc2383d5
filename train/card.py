"""The model card (`README.md` in a run folder): base model, data version + fingerprint, hyper-parameters,
hardware and metrics."""
from __future__ import annotations

from pathlib import Path


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def write_model_card(run_dir: Path, record: dict, metrics: dict) -> None:
    test, val, tr = metrics["test"], metrics["validation"], metrics["training"]
    rt = record["runtime"]
    cfg = record["train_config"]
    labels = record["labels"]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        f"base_model: {record['base_model_id']}",
        "tags: [sft-pipeline, text-classification]",
        "---",
        "",
        f"# {record['dataset']} {record['version']} — {record['base_model_id']} fine-tune (run {record['run_id']})",
        "",
        f"A {record['problem_type'].replace('_', '-')} text classifier fine-tuned by `sftpipe train` with the Hugging Face "
        "`Trainer`.",
        "",
        "| | |",
        "| --- | --- |",
        f"| base model | {record['base_model']} |",
        f"| dataset | {record['dataset']} |",
        f"| version | {record['version']} |",
        f"| content fingerprint | `{record['content_fingerprint']}` |",
        f"| labels | {', '.join(labels)} |",
        f"| trained | {record['created']} |",
        f"| hardware | {rt['device_name']}; {rt['precision']}{', TF32' if rt['tf32'] else ''}; "
        f"torch {rt['torch']}, transformers {rt['transformers']} |",
        f"| training time | {tr['train_runtime_s']} s ({tr['train_samples_per_second']:.1f} samples/s), "
        f"{tr['global_steps']} steps, {tr['epochs_run']:.2f} epochs{' (stopped early)' if tr['stopped_early'] else ''} |",
        "",
        "## Metrics",
        "",
        "| split | rows | accuracy | macro-F1 | weighted-F1 |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| test | {test['n']} | {_pct(test['accuracy'])} | {_pct(test['macro_f1'])} | {_pct(test['weighted_f1'])} |",
        f"| validation | {val['n']} | {_pct(val['accuracy'])} | {_pct(val['macro_f1'])} | {_pct(val['weighted_f1'])} |",
        "",
        "Per class on the test split:",
        "",
        "| label | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, m in test["per_class"].items():
        lines.append(f"| {label} | {_pct(m['precision'])} | {_pct(m['recall'])} | {_pct(m['f1'])} | {m['support']} |")
    lines += [
        "",
        "![confusion matrix on the test split](confusion_matrix.png)",
        "",
        "Computed with scikit-learn; full figures in `metrics.json`, per-row test predictions (with each label's "
        "probability) in `test_predictions.parquet`, the per-step training log in `trainer_log.json`.",
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
        "```python",
        "from transformers import pipeline",
        'classify = pipeline("text-classification", model="<this folder>")',
        'classify("your text here")',
        "```",
        "",
        "Score it on another version: `sftpipe score <this folder> --version vN`.",
        "",
    ]
    (Path(run_dir) / "README.md").write_text("\n".join(lines), encoding="utf-8")
