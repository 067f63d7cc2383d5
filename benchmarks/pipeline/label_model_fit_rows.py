"""How many rows must each fold's label model be fit on? Time against drop quality at scale (issue #18).

    python benchmarks/pipeline/label_model_fit_rows.py [--size 230000] [--flip-rate 0.05] [--fit-rows 50000 20000 10000]

The label_noise stage fits one logistic regression per fold on at most `max_fit_rows` rows of the other
folds (`pipeline.label_model.MAX_FIT_ROWS`); every row is still predicted out of sample. Below
5 × max_fit_rows / 4 rows the cap never applies (the outcome benchmark's sets are unaffected), above it
the fits are most of the stage's time (the 230k Tatoeba corpus: 64 s of a 200 s run). This plants label
flips (seeded, uniform over the other labels) into the pipeline benchmark's Tatoeba corpus
(`tatoeba_corpus.py`, 17 languages, written by `run.py --corpus tatoeba`) and runs the stage's evidence and
drop rule (`stages.label_noise`: grouped folds, min_confidence, per-class cap, kappa guard) at each cap:
wall and CPU seconds of the evidence, then the drops scored against the planted truth.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from pipeline import label_model  # noqa: E402
from stages.label_noise import Config, acted_rows  # noqa: E402


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=230_000, help="rows of the Tatoeba corpus (its file must exist)")
    p.add_argument("--flip-rate", type=float, default=0.05)
    p.add_argument("--fit-rows", type=int, nargs="+", default=[50_000, 20_000, 10_000])
    p.add_argument("--workers", type=int, default=2, help="folds fit at a time (the stage: its --workers)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    path = HERE / "data" / f"tatoeba_{a.size}_0_g2.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found: python benchmarks/pipeline/run.py --corpus tatoeba --size {a.size} writes it")
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    texts = [r["text"] for r in rows]
    true = np.array([r["label"] for r in rows], dtype=object)
    classes = sorted(set(true))
    rng = np.random.default_rng(a.seed)
    flipped = rng.random(len(rows)) < a.flip_rate
    given = true.copy()
    for i in np.flatnonzero(flipped):
        given[i] = rng.choice([c for c in classes if c != true[i]])
    labels = given.tolist()
    cfg = Config()
    print(f"{len(rows):,} rows, {len(classes)} labels, {int(flipped.sum()):,} planted flips ({a.flip_rate:.0%}), "
          f"workers {a.workers}\n")
    print("| max_fit_rows | evidence wall s | CPU s | kappa | flagged | acted | precision | recall of flips |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cap in a.fit_rows:
        t0, c0 = time.perf_counter(), cpu_s()
        ev = label_model.evidence(texts, labels, cfg, max_fit_rows=cap, workers=a.workers)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        acted = acted_rows(ev, cfg)[1] if ev.strong_enough(cfg.min_kappa) else np.zeros(len(ev.y), dtype=bool)
        act = np.zeros(len(rows), dtype=bool)
        act[ev.rows[acted]] = True
        precision = (act & flipped).sum() / max(act.sum(), 1)
        recall = (act & flipped).sum() / max(flipped.sum(), 1)
        print(f"| {cap:,} | {wall:.1f} | {cpu:.1f} | {ev.kappa:.4f} | {int(ev.issue.sum()):,} | {int(act.sum()):,} "
              f"| {precision:.3f} | {recall:.3f} |", flush=True)


if __name__ == "__main__":
    main()
