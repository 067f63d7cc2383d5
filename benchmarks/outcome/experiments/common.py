"""What the experiments share: the corrupted inputs and published arms that `run.py` left under its work
folder (run `python benchmarks/outcome/run.py --no-train` first: it is cheap), joined with the ground truth.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUTCOME = HERE.parent
REPO = OUTCOME.parents[1]
for p in (str(OUTCOME), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

import accounting  # noqa: E402
import data_sets  # noqa: E402,F401  (re-exported for the experiments)
from corrupt import Recipe  # noqa: E402

WORK = OUTCOME / "work"
RESULTS = OUTCOME / "results"


def recipe_tag(flip_rate: float = 0.1, seed: int = 0) -> str:
    return Recipe(flip_rate=flip_rate, seed=seed).tag()


def corrupted(dataset: str, flip_rate: float = 0.1, work: Path = WORK) -> pd.DataFrame:
    """The corrupted input rows (id, text, label as given) joined with their truth."""
    folder = work / "inputs" / f"{dataset}-{recipe_tag(flip_rate)}"
    if not (folder / "truth.parquet").is_file():
        raise SystemExit(f"{folder} missing: run `python benchmarks/outcome/run.py --datasets {dataset} "
                         f"--flip-rates {flip_rate} --no-train` first")
    rows = pd.read_json(folder / "corrupted.jsonl", lines=True, dtype={"id": str, "text": str, "label": str})
    truth = pd.read_parquet(folder / "truth.parquet").drop(columns=["label"])
    return rows.merge(truth, on="id", validate="1:1")


def clean_rows(dataset: str, work: Path = WORK) -> pd.DataFrame:
    """The uncorrupted training set as the clean arm reads it (id, text, label, truth columns)."""
    folder = work / "inputs" / dataset
    rows = pd.read_json(folder / "clean.jsonl", lines=True, dtype={"id": str, "text": str, "label": str})
    truth = pd.read_parquet(folder / "clean_truth.parquet").drop(columns=["label"])
    return rows.merge(truth, on="id", validate="1:1")


def arm_version(dataset: str, arm: str, flip_rate: float = 0.1, work: Path = WORK) -> Path:
    name = f"{dataset}-clean" if arm == "clean" else f"{dataset}-{arm}-{recipe_tag(flip_rate)}"
    root = work / "data" / "versions" / name
    versions = sorted((p for p in root.glob("v*") if p.name[1:].isdigit()), key=lambda p: int(p.name[1:]))
    if not versions:
        raise SystemExit(f"no published version of {name}: run benchmarks/outcome/run.py --no-train first")
    return versions[-1]


def published(dataset: str, arm: str = "pipeline", flip_rate: float = 0.1, work: Path = WORK) -> pd.DataFrame:
    """Published rows of an arm (with the clean stage's signal columns) joined with the truth."""
    vdir = arm_version(dataset, arm, flip_rate, work)
    frames = [pd.read_parquet(vdir / f"{s}.parquet").assign(split=s) for s in accounting.SPLITS]
    rows = pd.concat(frames, ignore_index=True)
    truth = (clean_rows(dataset, work) if arm == "clean" else corrupted(dataset, flip_rate, work)).drop(
        columns=["text", "label"])
    return rows.merge(truth, on="id", how="left", validate="1:1")


def normalized(text: str) -> str:
    """The dedupe stage's normalization (stages/dedupe.py): casefold, whitespace collapsed."""
    return " ".join(text.casefold().split())


def kept_summary(rows: pd.DataFrame, kept: np.ndarray) -> dict:
    """What a kept-row mask leaves of a corrupted set (rows joined with the truth, `text` as given).

    A clean row is *lost* when no correctly labelled row of its group is kept, nor of another group whose
    clean row has the same text up to case and spacing: the collection's own duplicates are not a loss."""
    wrong = rows["wrong_label"].to_numpy().astype(bool)
    junk = rows["kind"].str.startswith("junk_").to_numpy()
    group = rows["group"].to_numpy()
    originals = rows[rows["kind"].isin(["original", "flip"])]
    key_of = dict(zip(originals["group"], (normalized(t) for t in originals["text"])))
    correct = ~wrong & (group >= 0)
    needed = {key_of[g] for g in group[correct].tolist()}
    covered = {key_of[g] for g in group[kept & correct].tolist()}
    k = int(kept.sum())
    return {"kept": k, "wrong_label_kept": int((kept & wrong).sum()), "junk_kept": int((kept & junk).sum()),
            "wrong_label_share": round(float((kept & wrong).sum() / max(k, 1)), 4),
            "junk_share": round(float((kept & junk).sum() / max(k, 1)), 4),
            "clean_rows_lost": len(needed - covered),
            "extra_copies_kept": int(pd.Series(group[kept & (group >= 0)]).value_counts().sub(1).sum())}


def save(name: str, payload: dict) -> Path:
    """Write results/<name>.json; keys already there and not in `payload` are kept (a run over a subset of
    data sets or variants updates its part)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**old, **payload}, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x))
