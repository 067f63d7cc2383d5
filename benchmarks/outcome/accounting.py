"""What a published version did with the planted corruptions: read its rows by id and join the ground truth.

Everything here reads a published version folder (`train/validation/test.parquet`, `rejected.parquet`,
`manifest.json`) and the corruption's `truth.parquet` — never the pipeline's code — so it works on any
version any code produced, as long as ids were kept (`id_field: id`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SPLITS = ("train", "validation", "test")


def read_published(version_dir: Path) -> pd.DataFrame:
    """id, text, label, split of every published row."""
    frames = []
    for split in SPLITS:
        df = pd.read_parquet(Path(version_dir) / f"{split}.parquet", columns=["id", "text", "label"])
        frames.append(df.assign(split=split))
    return pd.concat(frames, ignore_index=True)


def read_rejected(version_dir: Path) -> pd.DataFrame:
    """id, text, label, stage, reason, details (parsed JSON) of every rejected row."""
    df = pd.read_parquet(Path(version_dir) / "rejected.parquet")
    df = df[[c for c in ("id", "text", "label", "stage", "reason", "details") if c in df.columns]].copy()
    df["details"] = [json.loads(d) if isinstance(d, str) and d.startswith("{") else {} for d in df.get("details", [])]
    return df


def funnel(manifest: dict) -> list[dict]:
    return [{"stage": s["name"], "rows_in": s["rows_in"], "rows_out": s["rows_out"], "dropped": s.get("dropped", {})}
            for s in manifest.get("stages", [])]


def wrong_share(rows: pd.DataFrame) -> dict:
    """Among rows (joined with truth): wrong-label share (wrong-label rows / all rows: junk counts in the
    denominator, not as wrong — the definition of issue #21's 14.6 %) and junk share."""
    n = len(rows)
    wrong = int(rows["wrong_label"].sum())
    junk = int(rows["kind"].str.startswith("junk_").sum())
    return {"rows": n, "wrong_label": wrong, "wrong_label_share": round(wrong / n, 4) if n else None,
            "junk": junk, "junk_share": round(junk / n, 4) if n else None}


def account(version_dir: Path, truth: pd.DataFrame) -> dict:
    """Planted corruptions left in a version, per kind, and what happened to duplicate groups."""
    version_dir = Path(version_dir)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    pub = read_published(version_dir).merge(truth.drop(columns=["label"]), on="id", how="left", validate="1:1")
    rej = read_rejected(version_dir).merge(truth.drop(columns=["label"]), on="id", how="left", validate="1:1")
    missing = int(pub["kind"].isna().sum() + rej["kind"].isna().sum())
    lost = len(truth) - len(pub) - len(rej)  # every input row must be somewhere

    kinds: dict[str, dict] = {}
    for kind, g in truth.groupby("kind", sort=False):
        p = pub[pub["kind"] == kind]
        r = rej[rej["kind"] == kind]
        kinds[kind] = {
            "in": int(len(g)),
            "published": int(len(p)),
            "in_train": int((p["split"] == "train").sum()),
            "removed": {k: int(v) for k, v in r["reason"].value_counts().items()},
        }
        if kind.startswith("dup_"):
            kinds[kind]["wrong_label_in"] = int(g["wrong_label"].sum())
            kinds[kind]["wrong_label_published"] = int(p["wrong_label"].sum())

    # Duplicate groups: a clean row and its planted copies (truth `group` shared by ≥ 2 rows).
    groups = truth[truth["group"] >= 0]
    sizes = groups.groupby("group").size()
    multi = sizes[sizes > 1].index
    g_pub = pub[pub["group"].isin(multi)]
    per_group = g_pub.groupby("group").agg(n=("id", "size"), wrong=("wrong_label", "sum"))
    per_group = per_group.reindex(multi, fill_value=0)
    in_group = groups[groups["group"].isin(multi)].groupby("group").agg(correct_in=("wrong_label", lambda s: int((~s).sum())))
    per_group = per_group.join(in_group)
    originals = truth[truth["kind"].isin(["original", "flip"]) & truth["group"].isin(multi)]
    orig_removed = originals[originals["id"].isin(rej["id"])]
    orig_removed_correct = orig_removed[~orig_removed["wrong_label"]]
    kept_wrong_instead = 0
    if len(orig_removed_correct):
        # the kept row a removed correct original names (duplicate_of), and whether its label is wrong
        dup_of = rej.set_index("id")["details"].map(lambda d: d.get("duplicate_of"))
        named = dup_of.reindex(orig_removed_correct["id"]).dropna()
        wrong_by_id = truth.set_index("id")["wrong_label"]
        kept_wrong_instead = int(wrong_by_id.reindex(named.values).fillna(False).sum())
    dup_groups = {
        "groups": int(len(multi)),
        "groups_published_more_than_once": int((per_group["n"] > 1).sum()),
        "extra_copies_published": int((per_group["n"] - 1).clip(lower=0).sum()),
        "groups_published_only_wrong": int(((per_group["n"] > 0) & (per_group["wrong"] == per_group["n"])
                                            & (per_group["correct_in"] > 0)).sum()),
        "groups_with_a_correct_row": int((per_group["correct_in"] > 0).sum()),
        "groups_gone": int((per_group["n"] == 0).sum()),
        "correct_originals_removed": int(len(orig_removed_correct)),
        "correct_originals_removed_for_a_wrong_label_row": kept_wrong_instead,
    }

    evaluation = manifest.get("evaluation") or {}
    noise = evaluation.get("label_noise") or {}
    return {
        "version": manifest.get("version"),
        "content_fingerprint": manifest.get("content_fingerprint"),
        "code_version": manifest.get("code_version"),
        "gates": manifest.get("gates"),
        "funnel": funnel(manifest),
        "splits": {s: int((pub["split"] == s).sum()) for s in SPLITS},
        "rows_not_in_truth": missing,
        "rows_unaccounted": int(lost),
        "input": wrong_share(truth),
        "published": wrong_share(pub),
        "train": wrong_share(pub[pub["split"] == "train"]),
        "kinds": kinds,
        "dup_groups": dup_groups,
        "label_noise_check": {k: noise.get(k) for k in ("ran", "cv_accuracy", "flagged", "share")} if noise else None,
        # The label_noise stage (before dedupe), where the code that published the version has one.
        "label_noise_stage": {k: (manifest.get("label_noise") or {}).get(k) for k in
                              ("ran", "action", "cv_accuracy", "majority_rate", "kappa", "flagged", "share",
                               "confident", "capped", "acted", "weak_model")} if manifest.get("label_noise") else None,
    }
