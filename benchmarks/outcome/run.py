"""Outcome benchmark: does the pipeline's version train a better model than the raw data it came from?

    python benchmarks/outcome/run.py                          # TREC and SMS, 10 % flips, seeds 1 2 3
    python benchmarks/outcome/run.py --datasets trec --flip-rates 0.05 0.1 0.2 --seeds 1 2 3 4
    python benchmarks/outcome/run.py --no-train               # publish and count planted corruptions only
    python benchmarks/outcome/run.py --quick                  # one seed, a quarter epoch: a smoke run

For each data set (see data_sets.py: TREC with its official 500-question test set; SMS with a fixed,
seeded held-out test set) and flip rate, a clean training set is corrupted (corrupt.py: flips, 15 % extra
duplicates half of them mislabelled, 5 % junk; seeded, every planted row recorded) and the *arms* are
published with the `sftpipe` CLI, each as its own dataset under `<work>/data`:

- `raw`      — the corrupted rows, nothing removed: normalization, filters, dedupe and the quality gate off;
               split 98 / 1 / 1 (`sftpipe train` needs a non-empty validation and test split; neither is
               used for the score, and with one epoch the validation split picks nothing).
- `pipeline` — `sftpipe run` with a default config: only the source mapping (`id_field: id` keeps the
               corruption's ids so planted rows can be counted), the labels and the data folder. Its train
               split is the training data, as a user's `sftpipe train` would use it (its own validation
               split, its own test split ignored). Published with `--allow-failed-gates` so that a failed
               gate shows in the table (column `gates`) instead of stopping the benchmark.
- `clean`    — the uncorrupted training set, published like `raw`.

Diagnosis arms (`--arms`): `pipeline-s98` (the default config but split 98 / 1 / 1: how much of the gap is
the split), `pipeline-balanced` (the default config's version trained with `train.class_weights: balanced`:
whether a small class the version keeps fewer rows of — TREC's ABBR — is learnt at a short budget;
`raw-balanced` and `clean-balanced` train the other two arms so, as a default of `sftpipe train` would),
`pipeline-2pass` and `pipeline-2pass-cap7` (label_noise refits once on the rows it kept and acts again; with
the per-class cap at 0.7 instead of 0.5),
`proto-fix` and `proto-fix-nodrop` (the rows experiments/prototype.py's chain of candidate fixes keeps,
with and without the label-noise drop, split 80 / 10 / 10 like the pipeline; run prototype.py first).

Every arm trains with the same budget (`sftpipe train --epochs --lr --batch-size --max-length --seed`, and
`precision: fp32` in the generated config so a GPU run differs from a CPU run only by kernels), once per
seed, and the run is scored with `sftpipe score` on the data set's test set (published once as the
dataset `<name>-test`, all rows in its test split, nothing removed). Per arm the script prints the funnel,
the planted corruptions left per kind (in the published rows and in the train split), the wrong-label and
junk shares of the training rows, and per-seed accuracy / macro-F1 with mean and range; the whole result
goes to `<work>/reports/<dataset>-<recipe>.json` and `.md`.

Caching: corrupted inputs and truth are written once per recipe; `sftpipe run` reuses unchanged stages and
publishes nothing when inputs and config are unchanged; a (version fingerprint, budget, seed, device) that
was scored before is read from `<work>/results/` instead of trained again. Model weights are deleted after
scoring (`--keep-models` keeps them).

`--train-only` skips publishing and uses the versions already under `<work>/data` (a GPU machine without
the pipeline's dependencies: see device_run.sh).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

import accounting  # noqa: E402
import data_sets  # noqa: E402
from corrupt import KINDS, Recipe, write_corrupted, write_jsonl  # noqa: E402
from stages.clean import DEFAULT_FILTERS  # noqa: E402

PASSTHROUGH_SPLIT = {"train": 0.98, "validation": 0.01, "test": 0.01}
DEFAULT_SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}  # the split stage's default


@dataclass(frozen=True)
class ArmSpec:
    source: str  # corrupted | clean | a prototype variant file written by experiments/prototype.py
    passthrough: bool  # every stage off: the source's rows are the version's rows
    split: dict | None  # None: the pipeline's default
    what: str
    train: tuple[tuple[str, str], ...] = ()  # `train:` settings of the arm's config (outside the version)
    label_noise: tuple[tuple[str, float], ...] = ()  # `label_noise:` settings other than the default's


BALANCED = (("class_weights", "balanced"),)
ARMS = {
    "raw": ArmSpec("corrupted", True, PASSTHROUGH_SPLIT, "the corrupted rows, nothing removed"),
    "pipeline": ArmSpec("corrupted", False, None, "sftpipe run, default config"),
    "clean": ArmSpec("clean", True, PASSTHROUGH_SPLIT, "the uncorrupted training set, nothing removed"),
    # diagnosis arms
    "pipeline-s98": ArmSpec("corrupted", False, PASSTHROUGH_SPLIT, "default config, but split 98 / 1 / 1"),
    "pipeline-balanced": ArmSpec("corrupted", False, None, "default config, trained with train.class_weights: balanced",
                                 train=BALANCED),
    "pipeline-2pass": ArmSpec("corrupted", False, None, "default config but label_noise.passes: 2",
                              label_noise=(("passes", 2),)),
    "pipeline-2pass-cap7": ArmSpec("corrupted", False, None,
                                   "default config but label_noise.passes: 2, max_class_share: 0.7",
                                   label_noise=(("passes", 2), ("max_class_share", 0.7))),
    # the raw and clean arms trained with the same setting: a training default applies to every arm
    "raw-balanced": ArmSpec("corrupted", True, PASSTHROUGH_SPLIT, "the raw arm trained with train.class_weights: balanced",
                            train=BALANCED),
    "clean-balanced": ArmSpec("clean", True, PASSTHROUGH_SPLIT,
                              "the clean arm trained with train.class_weights: balanced", train=BALANCED),
    "proto-fix": ArmSpec("proto-fix", True, DEFAULT_SPLIT,
                         "experiments/prototype.py's recommended chain (junk rules, dedupe w5p + majority, "
                         "label-noise drop), split 80 / 10 / 10"),
    "proto-fix-adaptive": ArmSpec("proto-fix-adaptive", True, DEFAULT_SPLIT,
                                  "the chain with adaptive word n-grams instead of w5p, split 80 / 10 / 10"),
    "proto-fix-nodrop": ArmSpec("proto-fix-nodrop", True, DEFAULT_SPLIT,
                                "the same chain without the label-noise drop, split 80 / 10 / 10"),
}
DEFAULT_ARMS = ("raw", "pipeline", "clean")
# Every rule of the clean stage's defaults, switched off (stages/clean.py DEFAULT_FILTERS).
# Every default rule off, read from the stage (a default rule added later must not remove rows from `raw`).
NO_FILTERS = {k: None for k in DEFAULT_FILTERS}
NO_NORMALIZE = {k: False for k in ("fix_mojibake", "strip_html", "nfkc", "remove_control", "collapse_whitespace")}


@dataclass(frozen=True)
class Budget:
    """The training budget every arm gets (measured on this 2-core CPU: see README.md). A field set to None
    is not passed: `sftpipe train`'s own default applies (`--defaults`: all of them)."""

    epochs: float | None = 1.0
    learning_rate: float | None = 2e-4
    batch_size: int | None = 32
    max_length: int | None = 64
    model: str | None = None  # None: sftpipe train's default (the bundled all-MiniLM-L6-v2)

    def key(self) -> str:
        model = "" if self.model is None else "-m" + hashlib.sha256(self.model.encode()).hexdigest()[:8]
        d = lambda x: "d" if x is None else f"{x:g}"  # noqa: E731
        return f"e{d(self.epochs)}-lr{d(self.learning_rate)}-b{d(self.batch_size)}-l{d(self.max_length)}{model}"

    def flags(self) -> list[str]:
        out = []
        for flag, value in (("--epochs", self.epochs), ("--lr", self.learning_rate), ("--batch-size", self.batch_size),
                            ("--max-length", self.max_length), ("--model", self.model)):
            if value is not None:
                out += [flag, value if isinstance(value, str) else f"{value:g}"]
        return out

    def describe(self) -> str:
        d = lambda x: "default" if x is None else f"{x:g}"  # noqa: E731
        return (f"{d(self.epochs)} epoch(s), lr {d(self.learning_rate)}, batch {d(self.batch_size)}, max_length "
                f"{d(self.max_length)}, fp32, model {self.model or 'default'}")


# ---------------------------------------------------------------------------------------------------------
# sftpipe through subprocesses


def sftpipe(args: list[str], log: Path) -> tuple[float, float]:
    """Run `sftpipe ARGS` (this checkout's code first on PYTHONPATH), output to `log`; (wall s, CPU s)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "COLUMNS": "200", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"$ sftpipe {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"sftpipe {' '.join(args[:2])} failed (exit {proc.returncode}); log {log}:\n" + "\n".join(tail))
    return time.time() - t0, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def write_config(path: Path, dataset: str, labels: list[str], source: Path, passthrough: bool,
                 split: dict | None = None, description: str = "", train: tuple = (), label_noise: tuple = ()) -> Path:
    cfg: dict = {
        "dataset": dataset,
        "description": description or f"outcome benchmark arm {dataset}",
        "labels": labels,
        "sources": [{"name": "rows", "path": str(source), "format": "jsonl", "text_field": "text",
                     "label_field": "label", "id_field": "id"}],
    }
    if passthrough:
        cfg["clean"] = {"normalize": NO_NORMALIZE, "filters": NO_FILTERS, "signals": []}
        cfg["label_noise"] = {"enabled": False}
        cfg["dedupe"] = {"exact": False, "near": False}
        cfg["split"] = {"ratios": split or PASSTHROUGH_SPLIT}
        cfg["evaluate"] = {"enabled": False}
    else:
        if label_noise:
            cfg["label_noise"] = dict(label_noise)
        if split:
            cfg["split"] = {"ratios": split}
    cfg["train"] = {"precision": "fp32", **dict(train)}  # training settings are outside the version's fingerprint
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def latest_version(data_dir: Path, dataset: str) -> Path:
    root = data_dir / "versions" / dataset
    versions = sorted((p for p in root.glob("v*") if p.name[1:].isdigit()), key=lambda p: int(p.name[1:])) if root.is_dir() else []
    if not versions:
        raise SystemExit(f"no published version of {dataset} under {root}")
    return versions[-1]


def publish(config: Path, dataset: str, work: Path, train_only: bool) -> tuple[Path, dict]:
    """Publish (or find the identical) version of `config`; (version folder, timing)."""
    data_dir = work / "data"
    timing = {}
    if not train_only:
        wall, cpu = sftpipe(["run", str(config), "--data-dir", str(data_dir), "--allow-failed-gates"],
                            work / "logs" / f"{dataset}.run.log")
        timing = {"run_wall_s": round(wall, 1), "run_cpu_s": round(cpu, 1)}
    return latest_version(data_dir, dataset), timing


def device_kind() -> str:
    try:
        import torch  # noqa: PLC0415

        if torch.cuda.is_available():
            return "cuda-" + torch.cuda.get_device_name(0).replace(" ", "_")
    except ImportError:
        pass
    return "cpu"


def train_and_score(config: Path, dataset: str, version_dir: Path, test_dataset: str, seed: int, budget: Budget,
                    work: Path, device: str, keep_models: bool, cached_only: bool = False) -> dict | None:
    manifest = json.loads((version_dir / "manifest.json").read_text())
    fp = manifest["content_fingerprint"][:16]
    train = {k: v for k, v in (yaml.safe_load(config.read_text()).get("train") or {}).items() if k != "precision"}
    settings = "".join(f"-{k}={v}" for k, v in sorted(train.items()))  # the arm's own training settings, if any
    cache = work / "results" / dataset / f"{fp}-{budget.key()}{settings}-{device}" / f"seed{seed}.json"
    if cache.is_file():
        return {**json.loads(cache.read_text()), "cached": True}
    if cached_only:
        return None
    runs_dir = work / "runs" / f"seed{seed}"  # one folder per seed: parallel jobs never share a parent
    parent = runs_dir / dataset / version_dir.name
    before = set(parent.iterdir()) if parent.is_dir() else set()
    log = work / "logs" / f"{dataset}.train.log"
    wall, cpu = sftpipe(["train", str(config), "--version", version_dir.name, "--data-dir", str(work / "data"),
                         "--runs-dir", str(runs_dir), "--seed", str(seed), *budget.flags()], log)
    new = [p for p in parent.iterdir() if p not in before and p.is_dir() and not p.name.startswith(".")]
    if len(new) != 1:
        raise SystemExit(f"cannot tell which run folder `sftpipe train` wrote under {parent}: {new}")
    run_dir = new[0]
    test_version = latest_version(work / "data", test_dataset)
    score_wall, score_cpu = sftpipe(["score", str(run_dir), "--dataset", test_dataset, "--version", test_version.name,
                                     "--data-dir", str(work / "data"), "--runs-dir", str(runs_dir)], log)
    scored = json.loads((run_dir / "scores" / test_dataset / f"{test_version.name}-test" / "metrics.json").read_text())
    trained = json.loads((run_dir / "metrics.json").read_text())
    t = scored["test"]
    result = {
        "dataset": dataset, "version": version_dir.name, "content_fingerprint": manifest["content_fingerprint"],
        "seed": seed, "budget": asdict(budget), "device": device, "run_dir": str(run_dir),
        "accuracy": t["accuracy"], "macro_f1": t["macro_f1"], "weighted_f1": t["weighted_f1"], "test_rows": t["n"],
        "per_class_f1": {k: v["f1"] for k, v in t.get("per_class", {}).items()},
        "train_rows": trained.get("training", {}).get("train_rows") or trained.get("data", {}).get("train_rows"),
        "train_runtime_s": trained.get("training", {}).get("train_runtime_s"),
        "wall_s": round(wall + score_wall, 1), "cpu_s": round(cpu + score_cpu, 1),
    }
    if not keep_models:
        for f in run_dir.glob("*.safetensors"):
            f.unlink()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---------------------------------------------------------------------------------------------------------
# inputs


def prepare_inputs(name: str, work: Path, train_only: bool = False) -> tuple[Path, Path, Path]:
    """clean.jsonl + clean_truth.parquet (every row an `original`) and test.jsonl, written once (with
    `train_only`, only their paths: the versions are already published)."""
    spec = data_sets.DATASETS[name]
    folder = work / "inputs" / name
    clean_file, truth_file, test_file = folder / "clean.jsonl", folder / "clean_truth.parquet", folder / "test.jsonl"
    if not train_only and not (clean_file.is_file() and truth_file.is_file() and test_file.is_file()):
        train, test = spec.load()
        ids = [f"c{i:06d}" for i in range(train.num_rows)]
        write_jsonl(pa.table({"id": ids, "text": train["text"], "label": train["label"]}), clean_file)
        pq.write_table(pa.table({
            "id": ids, "kind": ["original"] * train.num_rows, "group": pa.array(range(train.num_rows), pa.int64()),
            "true_label": train["label"], "label": train["label"], "wrong_label": [False] * train.num_rows,
            "detail": [""] * train.num_rows}), truth_file)
        write_jsonl(pa.table({"id": [f"t{i:05d}" for i in range(test.num_rows)], "text": test["text"],
                              "label": test["label"]}), test_file)
    return clean_file, truth_file, test_file


def corrupted_inputs(name: str, recipe: Recipe, work: Path) -> tuple[Path, Path, dict]:
    spec = data_sets.DATASETS[name]
    folder = work / "inputs" / f"{name}-{recipe.tag()}"
    if not (folder / "recipe.json").is_file():
        train, _ = spec.load()
        write_corrupted(train, spec.labels, data_sets.foreign_sentences(), recipe, folder)
    info = json.loads((folder / "recipe.json").read_text())
    return folder / "corrupted.jsonl", folder / "truth.parquet", info


# ---------------------------------------------------------------------------------------------------------
# report


def _stats(values: list[float]) -> str:
    if not values:
        return "—"
    mean = sum(values) / len(values)
    return f"{mean:.4f} ({min(values):.4f}–{max(values):.4f})" if len(values) > 1 else f"{mean:.4f}"


def _funnel_line(funnel: list[dict]) -> str:
    parts = []
    for s in funnel:
        drops = ", ".join(f"{k} {v}" for k, v in s["dropped"].items())
        parts.append(f"{s['stage']} {s['rows_in']}→{s['rows_out']}" + (f" ({drops})" if drops else ""))
    return "; ".join(parts)


def render(report: dict) -> str:
    arms = report["arms"]
    lines = [
        f"### {report['dataset']}, flips {report['recipe']['flip_rate'] * 100:g} % "
        f"(recipe `{report['recipe_tag']}`)",
        "",
        f"Test set: {report['test_set']}. Budget: {Budget(**report['budget']).describe()}; seeds {', '.join(map(str, report['seeds']))}; device "
        f"{report['device']}; code {report['code_version']} (commit {report.get('git_commit', '?')}); load average "
        f"{' '.join(f'{x:.1f}' for x in report['load_average'])} at the end.",
        "",
        "| arm | gates | train rows | wrong-label share (train) | junk share (train) | accuracy mean (range) "
        "| macro-F1 mean (range) | accuracy per seed | macro-F1 per seed |",
        "|---|---|---:|---:|---:|---|---|---|---|",
    ]
    for name, arm in arms.items():
        res = arm["results"]
        acc = [r["accuracy"] for r in res]
        f1 = [r["macro_f1"] for r in res]
        tr = arm["accounting"]["train"]
        lines.append(
            f"| {name} | {arm['accounting'].get('gates') or '—'} | {tr['rows']:,} | {tr['wrong_label_share']:.3f} "
            f"| {tr['junk_share']:.3f} | {_stats(acc)} | {_stats(f1)} | {' '.join(f'{a:.4f}' for a in acc) or '—'} "
            f"| {' '.join(f'{a:.4f}' for a in f1) or '—'} |"
        )
    # A small class decides the means when some seeds never predict it (TREC's ABBR: 9 of 500 test questions).
    classes = sorted({c for arm in arms.values() for r in arm["results"] for c in r.get("per_class_f1", {})})
    if classes:
        lines += ["", "Per-class F1, mean over seeds (in brackets: seeds that never got the class right):", "",
                  "| arm | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
        for name, arm in arms.items():
            res = arm["results"]
            if res:
                cells = []
                for c in classes:
                    f1s = [r["per_class_f1"].get(c, 0.0) for r in res]
                    zero = sum(f == 0 for f in f1s)
                    cells.append(f"{sum(f1s) / len(f1s):.3f}" + (f" ({zero})" if zero else ""))
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Funnel:", ""]
    for name, arm in arms.items():
        lines.append(f"- **{name}**: {_funnel_line(arm['accounting']['funnel'])}")
    planted = [a for a in arms if ARMS[a].source != "clean"]  # the clean arms have nothing planted
    lines += ["", "Planted rows left — published (all splits) / in the train split, of those planted:", "",
              "| kind | planted | " + " | ".join(planted) + " |", "|---|---:|" + "---:|" * len(planted)]
    for kind in KINDS:
        ref = arms[planted[0]]["accounting"]["kinds"].get(kind) if planted else None
        if not ref:
            continue
        cells = []
        for a in planted:
            k = arms[a]["accounting"]["kinds"][kind]
            cell = f"{k['published']} / {k['in_train']}"
            if "wrong_label_in" in k:
                cell += f" (wrong label: {k['wrong_label_published']} of {k['wrong_label_in']})"
            cells.append(cell)
        lines.append(f"| {kind} | {ref['in']} | " + " | ".join(cells) + " |")
    lines += ["", "Duplicate groups (a clean row and its planted copies):", "",
              "| | " + " | ".join(planted) + " |", "|---|" + "---:|" * len(planted)]
    for key in ("groups", "groups_published_more_than_once", "extra_copies_published", "groups_published_only_wrong",
                "correct_originals_removed", "correct_originals_removed_for_a_wrong_label_row"):
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(str(arms[a]["accounting"]["dup_groups"][key]) for a in planted) + " |")
    stage = arms.get("pipeline", {}).get("accounting", {}).get("label_noise_stage")
    if stage and stage.get("ran"):
        acted = (f"nothing acted on ({stage['weak_model']})" if stage.get("weak_model") else
                 f"{stage['acted']} acted on (action {stage['action']}; {stage['capped']} left by the per-class cap)")
        lines += ["", f"label_noise stage on the pipeline arm (before dedupe): flagged {stage['flagged']} rows "
                      f"({stage['share']:.1%}) at cross-validated accuracy {stage['cv_accuracy']} (majority-class rate "
                      f"{stage['majority_rate']}, kappa {stage['kappa']}); {stage['confident']} confident, {acted}."]
    noise = arms.get("pipeline", {}).get("accounting", {}).get("label_noise_check")
    if noise:
        lines += ["", f"The gate's label-noise check on the published pipeline arm: flagged {noise['flagged']} rows "
                      f"({noise['share']:.1%}) at cross-validated accuracy {noise['cv_accuracy']} (a warning)."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------


@dataclass
class Arm:
    dataset: str  # the data set (trec, sms)
    flip_rate: float | None  # None: the clean arm, shared by every flip rate
    arm: str
    name: str  # the sftpipe dataset name
    config: Path
    truth: Path
    version_dir: Path | None = None
    timing: dict | None = None
    accounting: dict | None = None


def publish_arms(name: str, flip_rate: float, args, published: dict[str, Arm]) -> tuple[list[Arm], dict, str]:
    """Corrupt (cached), write the configs and publish the test set and every arm of (name, flip_rate)."""
    spec = data_sets.DATASETS[name]
    work: Path = args.work
    clean_file, clean_truth, test_file = prepare_inputs(name, work, args.train_only)
    recipe = Recipe(flip_rate=flip_rate, seed=args.corruption_seed)
    corrupted, truth_file, recipe_info = corrupted_inputs(name, recipe, work)
    tag = recipe.tag()
    cfg_dir = work / "configs"
    test_ds = f"{name}-test"
    if test_ds not in published:
        test_cfg = write_config(cfg_dir / f"{test_ds}.yaml", test_ds, spec.labels, test_file, True,
                                split={"test": 1.0}, description=f"test set of {name}: {spec.test_note}")
        publish(test_cfg, test_ds, work, args.train_only)
        published[test_ds] = Arm(name, None, "test", test_ds, test_cfg, clean_truth)
    arms = []
    for arm in args.arms:
        a_spec = ARMS[arm]
        if a_spec.source == "clean":
            ds, source, truth, rate = f"{name}-{arm}", clean_file, clean_truth, None
        else:
            ds, truth, rate = f"{name}-{arm}-{tag}", truth_file, flip_rate
            source = corrupted if a_spec.source == "corrupted" else corrupted.parent / f"{a_spec.source}.jsonl"
            if not source.is_file() and not args.train_only:
                raise SystemExit(f"{source} missing: run `python benchmarks/outcome/experiments/prototype.py "
                                 f"--datasets {name} --flip-rate {flip_rate:g}` first")
        if ds not in published:
            cfg = write_config(cfg_dir / f"{ds}.yaml", ds, spec.labels, source, a_spec.passthrough, split=a_spec.split,
                               description=f"outcome benchmark arm {arm}: {a_spec.what}", train=a_spec.train,
                               label_noise=a_spec.label_noise)
            print(f"[{name}] {'using' if args.train_only else 'publishing'} {ds}", flush=True)
            a = Arm(name, rate, arm, ds, cfg, truth)
            a.version_dir, a.timing = publish(cfg, ds, work, args.train_only)
            a.accounting = accounting.account(a.version_dir, pd.read_parquet(truth))
            published[ds] = a
        arms.append(published[ds])
    return arms, recipe_info, tag


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "?"
    except OSError:
        return "?"


def report_for(name: str, arms: list[Arm], recipe_info: dict, tag: str, results: dict, args, budget: Budget,
               device: str) -> dict:
    spec = data_sets.DATASETS[name]
    code = next((a.accounting["code_version"] for a in arms if a.accounting.get("code_version")), "?")
    report = {
        "dataset": name, "test_set": spec.test_note, "recipe": recipe_info["recipe"], "recipe_tag": tag,
        "corruption": recipe_info, "budget": asdict(budget), "seeds": [] if args.no_train else args.seeds,
        "device": device, "code_version": code, "git_commit": _git_commit(),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "arms": {a.arm: {"dataset": a.name, "version_dir": str(a.version_dir), "publish": a.timing,
                         "accounting": a.accounting,
                         "results": [results[(a.name, s)] for s in args.seeds if (a.name, s) in results]}
                 for a in arms},
    }
    suffix = "" if budget == Budget(model=budget.model) else f"-{budget.key()}"
    out = args.work / "reports" / f"{name}-{tag}{suffix}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = render(report)
    out.with_suffix(".md").write_text(text)
    print("\n" + text, flush=True)
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["trec", "sms"], choices=sorted(data_sets.DATASETS))
    p.add_argument("--flip-rates", nargs="+", type=float, default=[0.1], help="label flip rates (default 0.1)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="training seeds (default 1 2 3)")
    p.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=list(ARMS),
                   help="arms to build and train (default: raw pipeline clean; diagnosis arms: "
                        + ", ".join(a for a in ARMS if a not in DEFAULT_ARMS) + ")")
    p.add_argument("--corruption-seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=Budget.epochs)
    p.add_argument("--lr", type=float, default=Budget.learning_rate)
    p.add_argument("--batch-size", type=int, default=Budget.batch_size)
    p.add_argument("--max-length", type=int, default=Budget.max_length)
    p.add_argument("--defaults", action="store_true",
                   help="sftpipe train's own defaults (3 epochs, lr 5e-5, max_length 128, batch auto) instead")
    p.add_argument("--model", default=None, help="base model for every arm (default: sftpipe train's default)")
    p.add_argument("--jobs", type=int, default=1, help="training runs at a time (1 on a 2-core CPU; 4-6 on a GPU)")
    p.add_argument("--work", type=Path, default=HERE / "work", help="scratch folder (default benchmarks/outcome/work, git-ignored)")
    p.add_argument("--quick", action="store_true", help="one seed and a quarter epoch: every step runs, figures are a smoke check")
    p.add_argument("--no-train", action="store_true", help="publish the arms and count planted corruptions; no training")
    p.add_argument("--train-only", action="store_true", help="use the versions already under <work>/data; run no pipeline")
    p.add_argument("--keep-models", action="store_true", help="keep model weights of the training runs")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: report the runs already scored (e.g. after a time limit cut a run short)")
    p.add_argument("--device", default=None,
                   help="with --cached-only: report the runs scored on this device instead of this machine's, e.g. "
                        "cuda-NVIDIA_H100_80GB_HBM3 for a GPU machine's <work>/results copied back")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
        args.epochs = 0.25
    args.work = args.work.resolve()
    budget = Budget(args.epochs, args.lr, args.batch_size, args.max_length, args.model)
    if args.defaults:
        budget = Budget(None, None, None, None, args.model)
    if args.device and not args.cached_only:
        p.error("--device needs --cached-only (runs are trained on this machine's device)")
    device = "none" if args.no_train else args.device or device_kind()

    published: dict[str, Arm] = {}
    tables = []
    for name in args.datasets:
        for rate in args.flip_rates:
            tables.append((name, *publish_arms(name, rate, args, published)))

    # Every (arm, seed) once, seeds outermost, then arms in the order given, then data sets: with a time
    # limit, every arm of every data set gets its first seed first.
    jobs = []
    trained = sorted((a for a in published.values() if a.arm != "test"),
                     key=lambda a: (args.arms.index(a.arm), args.datasets.index(a.dataset), a.flip_rate or 0))
    for seed in ([] if args.no_train else args.seeds):
        jobs += [(a, seed) for a in trained]
    results: dict[tuple[str, int], dict] = {}

    def one(job):
        a, seed = job
        r = train_and_score(a.config, a.name, a.version_dir, f"{a.dataset}-test", seed, budget, args.work, device,
                            args.keep_models, args.cached_only)
        if r is None:
            return job, None
        cost = "cached" if r.get("cached") else f"{r['cpu_s']:.0f} CPU s, {r['wall_s']:.0f} s wall"
        print(f"[{a.name} seed {seed}] accuracy {r['accuracy']:.4f} macro-F1 {r['macro_f1']:.4f} ({cost})", flush=True)
        return job, r

    if jobs:
        print(f"{len(jobs)} training runs{' (only those already scored are read)' if args.cached_only else ''} "
              f"({args.jobs} at a time), budget {budget.key()}, device {device}", flush=True)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for (a, seed), r in pool.map(one, jobs):
            if r is not None:
                results[(a.name, seed)] = r
    for name, arms, recipe_info, tag in tables:
        report_for(name, arms, recipe_info, tag, results, args, budget, device)


if __name__ == "__main__":
    main()
