"""Should the label_noise stage refit on the rows it kept and act again (`label_noise.passes`), and with which
per-class cap? Each setting's drops on the rows the stage read in the pipeline arm, scored against the planted
truth, and its cost on the uncorrupted training set (nothing planted: every drop is a correct row).

    python benchmarks/outcome/experiments/label_noise_passes.py [--datasets trec sms] [--flip-rates 0.1 0.2]

A model fit on data with wrong labels learns some of them, and is then less sure of the rows those wrong
labels resemble; refit on the rows the first pass kept, it finds some of them. The per-class cap
(`max_class_share`) holds over all passes together. Rows read: as `grouped_folds.py` (the pipeline arm's
published rows and the rows its label_noise and dedupe stages rejected, in input order); the one-pass
default must reproduce the stage's own count (checked).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import WORK, clean_rows, save  # noqa: E402  (common puts the repository on sys.path)
from grouped_folds import stage_rows  # noqa: E402

from stages.label_noise import Config, judge  # noqa: E402

SETTINGS = [(1, 0.5), (2, 0.5), (3, 0.5), (1, 0.7), (2, 0.7)]  # (passes, max_class_share); (1, 0.5) is the default


def drops(texts: list, labels: list, cfg: Config) -> tuple[np.ndarray, list[int]]:
    passes = judge(texts, labels, cfg)
    if isinstance(passes, str):
        return np.zeros(len(texts), dtype=bool), []
    return passes.acted_at(len(texts)), passes.acted_per_pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["trec", "sms"])
    p.add_argument("--flip-rates", nargs="+", type=float, default=[0.1, 0.2])
    p.add_argument("--work", type=Path, default=WORK)
    a = p.parse_args()
    work = a.work.resolve()
    payload: dict = {}
    print("| data set | passes, cap | acted (per pass) | wrong label / junk / correct acted on | precision "
          "| wrong-label rows left | correct rows dropped from the uncorrupted set |")
    print("|---|---|---|---|---|---|---|")
    for ds in a.datasets:
        clean = clean_rows(ds, work)
        clean_cost = {s: int(drops(clean["text"].tolist(), clean["label"].tolist(),
                                   Config(passes=s[0], max_class_share=s[1]))[0].sum()) for s in SETTINGS}
        for rate in a.flip_rates:
            rows, summary = stage_rows(ds, rate, work)
            texts, labels = rows["text"].tolist(), rows["label"].tolist()
            wrong = rows["wrong_label"].fillna(False).astype(bool).to_numpy()
            junk = rows["kind"].fillna("").str.startswith("junk_").to_numpy()
            for passes, cap in SETTINGS:
                act, per_pass = drops(texts, labels, Config(passes=passes, max_class_share=cap))
                if (passes, cap) == (1, 0.5) and int(act.sum()) != summary["acted"]:
                    raise SystemExit(f"{ds} {rate}: the default acts on {int(act.sum())} rows, the stage acted on "
                                     f"{summary['acted']}: the rows read here are not the stage's")
                r = {"rows": len(rows), "acted": int(act.sum()), "acted_per_pass": per_pass,
                     "acted_wrong_label": int((act & wrong).sum()), "acted_junk": int((act & junk).sum()),
                     "acted_correct": int((act & ~wrong & ~junk).sum()),
                     "precision": round(float((act & (wrong | junk)).sum() / max(act.sum(), 1)), 4),
                     "wrong_label_left": int((~act & wrong).sum()),
                     "clean_rows": len(clean), "clean_dropped": clean_cost[(passes, cap)]}
                payload[f"{ds}/f{rate:g}/passes{passes}/cap{cap:g}"] = r
                print(f"| {ds}, {rate:.0%} | {passes}, {cap:g} | {r['acted']:,} ({' + '.join(map(str, per_pass))}) "
                      f"| {r['acted_wrong_label']} / {r['acted_junk']} / {r['acted_correct']} | {r['precision']:.3f} "
                      f"| {r['wrong_label_left']} | {r['clean_dropped']} of {len(clean):,} |", flush=True)
    print(f"\nwritten to {save('label_noise_passes', payload)}")


if __name__ == "__main__":
    main()
