"""Why the pipeline's version is worse: each suspected cause of issue #21, counted in the published rows.

    python benchmarks/outcome/experiments/diagnose.py [--datasets trec sms] [--flip-rate 0.1]

Reads the pipeline arm's published version (train / validation / test / rejected.parquet, manifest.json)
and the corruption truth; nothing is recomputed with the pipeline's code except one thing: the word-5-gram
Jaccard of each planted edited copy to its clean row (the dedupe stage's shingling), to show why they are
not found. Prints one section per cause and writes results/diagnosis-f<rate>.json.
"""
from __future__ import annotations

import argparse
import json

import pandas as pd

from common import accounting, arm_version, corrupted, normalized, save


def w5_jaccard(a: str, b: str, n: int = 5) -> float:
    def sh(t):
        w = normalized(t).split()
        return {" ".join(w)} if len(w) < n else {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}
    x, y = sh(a), sh(b)
    return len(x & y) / len(x | y)


def diagnose(ds: str, flip_rate: float) -> dict:
    vdir = arm_version(ds, "pipeline", flip_rate)
    manifest = json.loads((vdir / "manifest.json").read_text())
    rows = corrupted(ds, flip_rate)  # id, text (as given), label, truth
    pub = accounting.read_published(vdir).merge(rows.drop(columns=["text", "label"]), on="id")
    rej = accounting.read_rejected(vdir).merge(rows.drop(columns=["text", "label"]), on="id")
    out: dict = {}

    # 1. dedupe keeps the wrong copy ------------------------------------------------------------------------
    ded = rej[rej["stage"] == "dedupe"].copy()
    ded["duplicate_of"] = ded["details"].map(lambda d: d.get("duplicate_of"))
    wrong_by_id = rows.set_index("id")["wrong_label"]
    ded["kept_wrong"] = wrong_by_id.reindex(ded["duplicate_of"]).to_numpy()
    reached = pd.concat([pub[["id", "wrong_label", "kind"]], ded[["id", "wrong_label", "kind"]]])
    # Conflicts the stage decided: a removed row whose label differs from the kept row it names.
    label_by_id = rows.set_index("id")["label"]
    ded["label_differs"] = label_by_id.reindex(ded["id"]).to_numpy() != label_by_id.reindex(ded["duplicate_of"]).to_numpy()
    conflict = ded[ded["label_differs"]]
    out["dedupe_keeps_wrong_copy"] = {
        "rows_removed": int(len(ded)),
        "correct_rows_removed": int((~ded["wrong_label"] & ~ded["kind"].str.startswith("junk_")).sum()),
        "correct_rows_removed_for_a_wrong_label_row": int((~ded["wrong_label"] & ded["kept_wrong"].astype(bool)).sum()),
        "removals_with_a_label_conflict": int(len(conflict)),
        "of_which_the_kept_row_has_the_wrong_label": int(conflict["kept_wrong"].astype(bool).sum()),
        "wrong_label_share_reaching_dedupe": round(float(reached["wrong_label"].mean()), 4),
        "wrong_label_share_after_dedupe": round(float(pub["wrong_label"].mean()), 4),
        "wrong_label_share_input": round(float(rows["wrong_label"].mean()), 4),
        "label_conflict_clusters_warned": manifest["evaluation"]["metrics"].get("label_conflict_clusters"),
    }

    # 2. short texts escape near-duplicate detection ----------------------------------------------------------
    originals = rows[rows["kind"].isin(["original", "flip"])].set_index("group")["text"]
    edits = rows[rows["kind"].isin(["dup_case_punct", "dup_edit1", "dup_edit2"])].copy()
    edits["words"] = edits["text"].str.split().str.len()
    edits["w5_jaccard"] = [w5_jaccard(t, originals[g]) for t, g in zip(edits["text"], edits["group"])]
    edits["published"] = edits["id"].isin(pub["id"])
    per_kind = {}
    for kind, g in edits.groupby("kind"):
        per_kind[kind] = {"planted": int(len(g)), "published": int(g["published"].sum()),
                          "wrong_label_published": int((g["published"] & g["wrong_label"]).sum()),
                          "median_words": float(g["words"].median()),
                          "median_w5_jaccard_to_clean_row": round(float(g["w5_jaccard"].median()), 3),
                          "share_w5_jaccard_ge_0.8": round(float((g["w5_jaccard"] >= 0.8).mean()), 3)}
    out["short_texts_escape_near_dup"] = per_kind

    # 3. short junk passes -----------------------------------------------------------------------------------
    junk = {}
    for kind in sorted(k for k in rows["kind"].unique() if k.startswith("junk_")):
        p = pub[pub["kind"] == kind]
        r = rej[rej["kind"] == kind]
        junk[kind] = {"planted": int((rows["kind"] == kind).sum()), "published": int(len(p)),
                      "removed": {k: int(v) for k, v in r["reason"].value_counts().items()},
                      "published_examples": p["text"].head(4).tolist()}
    out["short_junk_passes"] = junk

    # 4. label noise only warns ------------------------------------------------------------------------------
    noise = manifest["evaluation"]["label_noise"]
    issues = pd.read_parquet(vdir / "label_issues.parquet").merge(rows.drop(columns=["text", "label"]), on="id")
    bad = issues["wrong_label"] | issues["kind"].str.startswith("junk_")
    pub_bad = pub["wrong_label"] | pub["kind"].str.startswith("junk_")
    out["label_noise_only_warns"] = {
        "cv_accuracy": noise["cv_accuracy"], "flagged": noise["flagged"], "flagged_share": noise["share"],
        "flag_precision": round(float(bad.mean()), 4),
        "flag_recall_of_bad_rows": round(float(bad.sum() / pub_bad.sum()), 4),
        "flag_recall_of_wrong_labels": round(float(issues["wrong_label"].sum() / pub["wrong_label"].sum()), 4),
        "wrong_label_rows_in_train_split": int(pub[pub["split"] == "train"]["wrong_label"].sum()),
        "junk_rows_in_train_split": int(pub[pub["split"] == "train"]["kind"].str.startswith("junk_").sum()),
        "gate": [f for f in manifest["evaluation"]["failures"] if f["check"] == "label_noise"],
    }

    # 5. the split ---------------------------------------------------------------------------------------------
    raw = accounting.read_published(arm_version(ds, "raw", flip_rate))
    good = ~pub_bad
    out["split"] = {
        "raw_arm_train_rows": int((raw["split"] == "train").sum()),
        "pipeline_rows_published": int(len(pub)),
        "pipeline_train_rows": int((pub["split"] == "train").sum()),
        "pipeline_good_rows_held_out": int((good & (pub["split"] != "train")).sum()),
        "pipeline_good_rows_in_train": int((good & (pub["split"] == "train")).sum()),
        "raw_good_rows_in_train": int((raw[raw["split"] == "train"].merge(rows[["id", "wrong_label", "kind"]], on="id")
                                       .pipe(lambda d: ~d["wrong_label"] & ~d["kind"].str.startswith("junk_"))).sum()),
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["trec", "sms"])
    p.add_argument("--flip-rate", type=float, default=0.1)
    a = p.parse_args()
    payload = {ds: diagnose(ds, a.flip_rate) for ds in a.datasets}
    for section in next(iter(payload.values())):
        print(f"\n## {section.replace('_', ' ')}")
        for ds, d in payload.items():
            print(f"  {ds}: {json.dumps(d[section], ensure_ascii=False, default=str)}")
    print(f"\nwritten to {save(f'diagnosis-f{a.flip_rate:g}', payload)}")


if __name__ == "__main__":
    main()
