"""Should the label_noise stage hold out copies of a text together? Its drop rule with plain stratified
folds (today) against folds grouped by the text up to case, punctuation and spacing, on the rows that reach
the stage in the pipeline arm, scored against the planted truth.

    python benchmarks/outcome/experiments/grouped_folds.py [--datasets trec sms] [--flip-rates 0.1] [--work DIR]

The stage fits before dedupe. With plain folds, a row whose verbatim or case/punctuation copy sits in
another fold is predicted by a model that saw that copy's text with the copy's label: a copy that agrees
with it vouches for it, one that disagrees argues against it, and either way its "out-of-sample"
probability is not. Grouped folds (`label_noise.group_copies`) hold every copy of a text out
together; the stage does so by default since this measurement (`label_noise.group_copies`). Rows: the
pipeline arm's published rows and those the label_noise and dedupe stages rejected, in input order (ids
are in file order) — what the stage read. The fold mode the stage ran with must reproduce the stage's own
count of rows acted on (checked). The drop rule is the stage's own (`stages.label_noise.judge`: cleanlab's flag
and the suggested label's probability ≥ min_confidence, at most max_class_share of a label's rows, most
suspicious first; no action below min_kappa).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
sys.path.insert(0, str(HERE.parent))

from common import WORK, arm_version, corrupted, save  # noqa: E402

from pipeline import label_model  # noqa: E402
from stages.label_noise import Config, judge  # noqa: E402

def stage_rows(dataset: str, flip_rate: float, work: Path) -> tuple[pd.DataFrame, dict]:
    """The rows the label_noise stage read in the pipeline arm, in input order, with their truth; and the
    stage's summary from the manifest."""
    vdir = arm_version(dataset, "pipeline", flip_rate, work)
    published = pd.concat([pd.read_parquet(vdir / f"{s}.parquet", columns=["id", "text", "label"])
                           for s in ("train", "validation", "test")])
    rejected = pd.read_parquet(vdir / "rejected.parquet", columns=["id", "stage", "text", "label"])
    later = rejected[rejected["stage"].isin(["label_noise", "dedupe"])].drop(columns=["stage"])
    rows = pd.concat([published, later]).sort_values("id", kind="stable").reset_index(drop=True)
    truth = corrupted(dataset, flip_rate, work).drop(columns=["text", "label"])
    summary = json.loads((vdir / "manifest.json").read_text())["label_noise"]
    return rows.merge(truth, on="id", how="left", validate="1:1"), summary


def compare(rows: pd.DataFrame, cfg: Config) -> dict:
    texts, labels = rows["text"].tolist(), rows["label"].tolist()
    wrong = rows["wrong_label"].fillna(False).astype(bool).to_numpy()
    junk = rows["kind"].fillna("").str.startswith("junk_").to_numpy()
    out = {"rows": len(rows), "wrong_label_rows": int(wrong.sum()), "junk_rows": int(junk.sum())}
    groups = label_model.copy_groups(texts)
    out["rows_sharing_a_key"] = int(pd.Series(groups).duplicated(keep=False).sum())
    for name, grouped in (("plain", False), ("grouped", True)):
        passes = judge(texts, labels, cfg.model_copy(update={"group_copies": grouped}))
        ev, act = passes.ev, passes.acted_at(len(rows))
        kept = ~act
        out[name] = {
            "cv_accuracy": round(ev.cv_accuracy, 4), "kappa": round(ev.kappa, 4), "flagged": int(ev.issue.sum()),
            "acted": int(act.sum()), "acted_wrong_label": int((act & wrong).sum()), "acted_junk": int((act & junk).sum()),
            "acted_correct": int((act & ~wrong & ~junk).sum()),
            "precision": round(float((act & (wrong | junk)).sum() / max(act.sum(), 1)), 4),
            "wrong_label_left": int((kept & wrong).sum()),
            "wrong_label_share_left": round(float((kept & wrong).sum() / max(kept.sum(), 1)), 4),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["trec", "sms"])
    p.add_argument("--flip-rates", nargs="+", type=float, default=[0.1])
    p.add_argument("--work", type=Path, default=WORK)
    a = p.parse_args()
    cfg = Config()
    payload = {}
    print("| data set, flips | folds | cv accuracy | flagged | acted (stage's count) | wrong label / junk / correct acted on "
          "| precision | wrong-label rows left (share) |")
    print("|---|---|---|---|---|---|---|---|")
    for ds in a.datasets:
        for rate in a.flip_rates:
            rows, summary = stage_rows(ds, rate, a.work.resolve())
            r = compare(rows, cfg)
            stage_mode = "grouped" if summary.get("group_copies") else "plain"
            if r[stage_mode]["acted"] != summary["acted"]:
                raise SystemExit(f"{ds} {rate}: {stage_mode} folds act on {r[stage_mode]['acted']} rows, the stage "
                                 f"acted on {summary['acted']}: the rows read here are not the stage's")
            payload[f"{ds}/f{rate:g}"] = r
            for name in ("plain", "grouped"):
                v = r[name]
                print(f"| {ds}, {rate:.0%} | {name} | {v['cv_accuracy']:.4f} | {v['flagged']:,} | {v['acted']:,}"
                      f"{' (' + format(summary['acted'], ',') + ')' if name == stage_mode else ''} "
                      f"| {v['acted_wrong_label']} / {v['acted_junk']} / {v['acted_correct']} | {v['precision']:.3f} "
                      f"| {v['wrong_label_left']} ({v['wrong_label_share_left']:.1%}) |")
    print(f"\nwritten to {save('grouped_folds', payload)}")


if __name__ == "__main__":
    main()
