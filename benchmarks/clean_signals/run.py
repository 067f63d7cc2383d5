"""What each clean signal costs, on the pipeline benchmark's corpus, in one process, side by side.

    python benchmarks/clean_signals/run.py --size 1000000

The corpus is the dedupe benchmark's (benchmarks/dedupe/generate.py: real SMS, TREC and Tatoeba text,
short and long, with planted near duplicates), made on first use and cached there. Texts are normalized
as the clean stage does (timed as "normalize"), then every registered text signal runs over the same batches
the stage would give it (`--batch`, the executor's default 10,000), on all rows. Beside
`dup_line_share` and `top_2gram_share` (whole-batch Arrow + numpy) run the per-text loops they replaced;
each pair's values are checked equal. Seconds are one core's; the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks" / "dedupe"))

import generate  # noqa: E402  (the dedupe benchmark's seeded corpus)
from pipeline.filters import SIGNALS  # noqa: E402
import stages.clean as C  # noqa: E402
from stages.clean import NORMALIZERS  # noqa: E402


def dup_line_share_loop(texts: pa.Array) -> list:
    """`dup_line_share` as it was (commit 2437180)."""
    out = []
    for text in texts.to_pylist():
        lines = [ln.strip() for ln in text.split("\n") if ln.strip()] if text.count("\n") >= 2 else []
        out.append(1.0 - len(set(lines)) / len(lines) if len(lines) >= 3 else None)
    return out


def top_2gram_share_loop(texts: pa.Array) -> list:
    """`top_2gram_share` as the stage had it until 2026-11-26 (commit 50e41f5): clean's words, a `Counter` per text."""
    out: list = [None] * len(texts)
    eligible = np.flatnonzero(C.word_counts(texts) >= C.GOPHER_MIN_WORDS)
    flat, doc = C.split_words(pc.utf8_lower(texts.take(pa.array(eligible, pa.int64()))))
    starts = np.searchsorted(doc, np.arange(len(eligible) + 1))
    tokens = flat.to_pylist()
    for k, i in enumerate(eligible):
        words = tokens[starts[k]:starts[k + 1]]
        counts = Counter(zip(words, words[1:]))
        top = max(counts.values())
        chars = max(len(a) + len(b) for (a, b), c in counts.items() if c == top)
        total = sum(map(len, words))
        out[i] = top * chars / total if total else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    path = generate.corpus_path(args.size, args.seed)
    if path.exists():
        table = pq.read_table(path, columns=["text"])
    else:
        table = generate.generate(args.size, args.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    print(f"{args.size:,} rows, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)

    seconds: Counter = Counter()
    # Text signals only: record signals (n_turns, lang_mismatch, ...) read instruction and chat records.
    signals = {sig.name: sig for sig in SIGNALS.values() if sig.reads == "text"}
    # Each signal's former implementation: the per-text loops dup_line_share and top_2gram_share replaced.
    others = {"dup_line_share": ("per-text loop, before", dup_line_share_loop),
              "top_2gram_share": ("per-text Counter loop, before", top_2gram_share_loop)}
    mismatches: Counter = Counter()
    for batch in table.select(["text"]).to_batches(args.batch):  # one batch at a time, as the stage does
        texts = batch.column(0)
        start = time.perf_counter()
        for step in NORMALIZERS.values():
            texts = step(texts)
        seconds["normalize"] += time.perf_counter() - start
        for name, sig in signals.items():
            start = time.perf_counter()
            values = sig(texts)
            seconds[name] += time.perf_counter() - start
            if name in others:
                label, other = others[name]
                start = time.perf_counter()
                other_values = other(texts)
                seconds[f"{name} ({label})"] += time.perf_counter() - start
                mismatches[name] += sum(a != b for a, b in zip(values[name].to_pylist(), other_values))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| step | seconds | rows/s |")
    print("|---|---|---|")
    for name, s in seconds.items():
        print(f"| {name} | {s:.2f} | {args.size / s:,.0f} |")
    print(f"\nvalues differing between the two implementations: {dict(mismatches)}")


if __name__ == "__main__":
    main()
