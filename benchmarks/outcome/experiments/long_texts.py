"""Do the short-text shingling changes leave long-text dedupe as it is? Checked on the dedupe benchmark's
corpus (benchmarks/dedupe/generate.py: real texts short and long, median 39 words, with planted near /
case / space / punctuation / exact derivatives and their `base` recorded).

    python benchmarks/dedupe/generate.py --size 20000 --out /tmp/corpus_20k.parquet
    python benchmarks/outcome/experiments/long_texts.py /tmp/corpus_20k.parquet

For `w5` (today), `w5p` (punctuation dropped) and `adaptive` (word n-grams, n = clamp(⌊(W+1)/10⌋, 1, 5)):
every pair at Jaccard ≥ 0.8, exactly (dedupe_study.py's all-pairs product); a pair is *planted* when both
rows descend from the same original through `base` links. Reported per scheme, separately for pairs whose
shorter text has ≥ 49 words (long: where `adaptive` is today's shingling by construction) and < 49 words:
pairs, planted pairs, precision, and pairs gained / lost against `w5`.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import pyarrow.parquet as pq

from common import normalized, save
from dedupe_study import scheme_edges

LONG_WORDS = 49


def family(ids: list[str], metas: list[str]) -> np.ndarray:
    base = {}
    for i, m in zip(ids, metas):
        meta = json.loads(m)
        if meta.get("base"):
            base[i] = meta["base"]

    def root(x: str) -> str:
        seen = 0
        while x in base and seen < 1000:
            x, seen = base[x], seen + 1
        return x

    roots = {r: k for k, r in enumerate(sorted({root(i) for i in ids}))}
    return np.array([roots[root(i)] for i in ids])


def main() -> None:
    path = sys.argv[1]
    t = pq.read_table(path, columns=["id", "text", "meta"]).to_pydict()
    texts = [normalized(x) for x in t["text"]]
    fam = family(t["id"], t["meta"])
    words = np.array([len(x.split()) for x in texts])
    payload = {"corpus": path, "rows": len(texts)}
    pairs = {}
    print(f"{len(texts)} rows; {int((words >= LONG_WORDS).sum())} with ≥ {LONG_WORDS} words")
    print(f"{'scheme':>9} {'part':>6} {'pairs':>7} {'planted':>7} {'precision':>9} {'gained':>7} {'lost':>6} {'cpu s':>6}")
    for scheme in ("w5", "w5p", "adaptive"):
        t0 = time.process_time()
        le, ri, wt = scheme_edges(texts, scheme)
        cpu = time.process_time() - t0
        ok = wt >= 0.8 - 1e-9
        le, ri = le[ok], ri[ok]
        pairs[scheme] = set(zip(le.tolist(), ri.tolist()))
        longp = np.minimum(words[le], words[ri]) >= LONG_WORDS
        for part, mask in (("long", longp), ("short", ~longp)):
            sel = set(zip(le[mask].tolist(), ri[mask].tolist()))
            base = {p for p in pairs["w5"] if (min(words[p[0]], words[p[1]]) >= LONG_WORDS) == (part == "long")}
            planted = int((fam[le[mask]] == fam[ri[mask]]).sum())
            r = {"pairs": len(sel), "planted": planted, "precision": round(planted / len(sel), 4) if sel else None,
                 "gained_vs_w5": len(sel - base), "lost_vs_w5": len(base - sel), "cpu_s": round(cpu, 1)}
            payload[f"{scheme}/{part}"] = r
            print(f"{scheme:>9} {part:>6} {r['pairs']:>7} {planted:>7} {r['precision'] or 0:>9.4f} "
                  f"{r['gained_vs_w5']:>7} {r['lost_vs_w5']:>6} {cpu:>6.1f}")
    print(f"written to {save('long_texts', payload)}")


if __name__ == "__main__":
    main()
