"""The candidate fixes chained, as the next round's pipeline would run them, on the corrupted and the clean
training sets; writes each variant's surviving rows so `run.py --arms proto-...` can train on them.

    python benchmarks/outcome/experiments/prototype.py [--datasets trec sms] [--flip-rate 0.1]

Steps (each a prototype of a stage change; none modifies pipeline/ or stages/):

1. normalize — today's clean normalizers (imported from stages/clean.py).
2. junk — the rules of junk_rules.py: placeholder, URL-only, markup share ≥ 0.5 of the original text,
   top-token share ≥ 0.5 with ≥ 4 words, and p(dominant language) < 0.01 by fastText lid.176 (the data
   set's dominant language is English in both sets).
3. dedupe — exact all-pairs similarity (dedupe_study.py) with a shingling (`w5` today, `w5p`
   punctuation-free word 5-grams, `adaptive` word n-grams), threshold 0.8, and a keep policy (`today` or
   `majority+model`: the cluster's majority label wins, a tie goes to the label the label-noise model
   gives the higher mean out-of-sample probability; `hybrid`: majority+model for texts identical under
   the shingling, a near duplicate with another label kept — see dedupe_study.py).
4. noise — the label-noise check acting (`drop`): rows cleanlab flags whose suggested label has an
   out-of-sample probability ≥ the cut-off are removed (model `tfidf` as today, or `minilm`).

Per variant and data set: rows kept, wrong-label and junk rows kept (shares), rows removed per step, and
clean rows lost (distinct clean texts of which no correctly labelled row or copy is kept). The same chain on the
uncorrupted training set gives the cost on data that has nothing planted.

Written: `<work>/inputs/<dataset>-<recipe>/<variant>.jsonl` (id, text, label) for the variants in
`TRAINED` (and `<work>/inputs/<dataset>/<variant>.jsonl` for the clean set), read by run.py's `proto-*` arms.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from common import WORK, clean_rows, corrupted, kept_summary, normalized, recipe_tag, save
from dedupe_study import apply_policy, model_probs, scheme_edges
from junk_rules import COMBINED, FastTextLid, normalize, rule_table
from label_noise import minilm_features, out_of_sample, tfidf_features


@dataclass(frozen=True)
class Variant:
    name: str
    junk: bool = True
    scheme: str | None = "w5"  # None: no dedupe
    policy: str = "today"
    noise_model: str | None = None  # None: warn only
    cutoff: float = 0.8


VARIANTS = [
    Variant("junk-only", scheme=None),
    Variant("junk+dedupe-today"),
    Variant("junk+w5p-majority", scheme="w5p", policy="majority+model"),
    Variant("junk+adaptive-majority", scheme="adaptive", policy="majority+model"),
    Variant("junk+w5p-majority+drop-tfidf-0.8", scheme="w5p", policy="majority+model", noise_model="tfidf", cutoff=0.8),
    Variant("junk+w5p-majority+drop-tfidf-0.9", scheme="w5p", policy="majority+model", noise_model="tfidf", cutoff=0.9),
    Variant("junk+adaptive-majority+drop-tfidf-0.8", scheme="adaptive", policy="majority+model", noise_model="tfidf", cutoff=0.8),
    Variant("junk+w5p-majority+drop-minilm-0.8", scheme="w5p", policy="majority+model", noise_model="minilm", cutoff=0.8),
    Variant("dedupe-today+drop-tfidf-0.8", junk=False, noise_model="tfidf", cutoff=0.8),
    Variant("junk+adaptive-hybrid", scheme="adaptive", policy="hybrid"),
    Variant("junk+adaptive-hybrid+drop-tfidf-0.8", scheme="adaptive", policy="hybrid", noise_model="tfidf", cutoff=0.8),
    Variant("junk+w5p-hybrid+drop-tfidf-0.8", scheme="w5p", policy="hybrid", noise_model="tfidf", cutoff=0.8),
]
# Variants written for training (run.py arms proto-<short name>).
TRAINED = {"junk+w5p-majority+drop-tfidf-0.8": "fix", "junk+w5p-majority": "fix-nodrop",
           "junk+adaptive-majority+drop-tfidf-0.8": "fix-adaptive"}


def noise_drop(rows: pd.DataFrame, model: str, cutoff: float) -> np.ndarray:
    """Mask of rows the check drops: flagged by cleanlab and p(suggested) ≥ cutoff."""
    from cleanlab.filter import find_label_issues  # noqa: PLC0415

    classes = sorted(rows["label"].unique())
    y = rows["label"].map({c: k for k, c in enumerate(classes)}).to_numpy()
    texts = rows["text"].tolist()
    X = tfidf_features(texts) if model == "tfidf" else minilm_features(texts)
    probs = out_of_sample(X, y, C=100.0 if model == "tfidf" else 10.0)
    flagged = np.zeros(len(y), bool)
    flagged[find_label_issues(y, probs, filter_by="prune_by_noise_rate")] = True
    return flagged & (probs.max(axis=1) >= cutoff)


def run_chain(rows: pd.DataFrame, v: Variant, lid: FastTextLid) -> tuple[np.ndarray, dict]:
    """Mask of rows kept after the chain and rows removed per step."""
    raw = rows["text"].tolist()
    norm = normalize(raw)
    rows = rows.assign(text=norm, ntext=[normalized(t) for t in norm])
    alive = np.array([bool(t) for t in norm])
    removed = {"empty_after_normalization": int((~alive).sum())}
    if v.junk:
        rules = rule_table(raw, norm, lid, with_langdetect=False)
        junk = np.logical_or.reduce([rules[r] for r in COMBINED]) & alive
        removed["junk"] = int(junk.sum())
        alive &= ~junk
    if v.scheme:
        idx = np.flatnonzero(alive)
        sub = rows.iloc[idx].reset_index(drop=True)
        edges = scheme_edges(sub["ntext"].tolist(), v.scheme)
        probs, classes = model_probs(sub) if v.policy in ("majority+model", "hybrid") else (None, None)
        kept = apply_policy(sub, edges, 0.8, v.policy, probs, classes)
        removed["dedupe"] = int((~kept).sum())
        alive[idx[~kept]] = False
    if v.noise_model:
        idx = np.flatnonzero(alive)
        drop = noise_drop(rows.iloc[idx].reset_index(drop=True), v.noise_model, v.cutoff)
        removed["label_noise"] = int(drop.sum())
        alive[idx[drop]] = False
    return alive, removed


def summarize(rows: pd.DataFrame, kept: np.ndarray) -> dict:
    return kept_summary(rows, kept)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["trec", "sms"])
    p.add_argument("--flip-rate", type=float, default=0.1)
    p.add_argument("--variants", nargs="+", default=[v.name for v in VARIANTS])
    a = p.parse_args()
    lid = FastTextLid()
    payload: dict = {}
    tag = recipe_tag(a.flip_rate)
    for ds in a.datasets:
        data = {"corrupted": corrupted(ds, a.flip_rate), "clean": clean_rows(ds)}
        print(f"\n## {ds} (flips {a.flip_rate:g}): corrupted {len(data['corrupted'])} rows, clean {len(data['clean'])}")
        base = summarize(data["corrupted"], np.ones(len(data["corrupted"]), bool))
        print(f"{'variant':>40} {'kept':>6} {'wrong':>6} {'share':>6} {'junk':>5} {'lost':>5}   removed per step"
              f"   | clean set: kept, removed")
        print(f"{'(raw)':>40} {base['kept']:>6} {base['wrong_label_kept']:>6} {base['wrong_label_share']:>6.3f} "
              f"{base['junk_kept']:>5} {base['clean_rows_lost']:>5}")
        for v in VARIANTS:
            if v.name not in a.variants:
                continue
            t0 = time.process_time()
            out = {}
            for which, rows in data.items():
                kept, removed = run_chain(rows, v, lid)
                out[which] = {**summarize(rows, kept), "removed": removed}
                if v.name in TRAINED:
                    folder = WORK / "inputs" / (f"{ds}-{tag}" if which == "corrupted" else ds)
                    path = folder / f"proto-{TRAINED[v.name]}.jsonl"
                    with path.open("w", encoding="utf-8") as f:
                        for rid, text, label in zip(rows["id"][kept], pd.Series(normalize(rows["text"].tolist()))[kept],
                                                    rows["label"][kept]):
                            f.write(json.dumps({"id": rid, "text": text, "label": label}, ensure_ascii=False) + "\n")
            out["cpu_s"] = round(time.process_time() - t0, 1)
            payload[f"{ds}/{v.name}"] = {"variant": v.__dict__, **out}
            c, k = out["corrupted"], out["clean"]
            print(f"{v.name:>40} {c['kept']:>6} {c['wrong_label_kept']:>6} {c['wrong_label_share']:>6.3f} "
                  f"{c['junk_kept']:>5} {c['clean_rows_lost']:>5}   {c['removed']}   | {k['kept']} {k['removed']}")
    print(f"\nwritten to {save(f'prototype-f{a.flip_rate:g}', payload)}")


if __name__ == "__main__":
    main()
