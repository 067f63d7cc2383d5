"""What each clean signal costs, on the pipeline benchmark's corpus, in one process, side by side.

    python benchmarks/clean_signals/run.py --size 1000000

The corpus is the dedupe benchmark's (benchmarks/dedupe/generate.py: real SMS, TREC and Tatoeba text,
short and long, with planted near duplicates), made on first use and cached there. Texts are normalized
as the clean stage does (timed as "normalize"), then every registered text signal runs over the same batches
the stage would give it (`--batch`, the executor's default 10,000), on all rows. Beside
`dup_line_share` runs the per-text loop it replaced, beside `top_2gram_share` (a per-text Counter loop)
a whole-batch Arrow + numpy version; each pair's values are checked equal. Seconds are one core's; the load average is printed before and after.
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
    """`top_2gram_share` as it was (commit 2437180) and is, with str.split()'s words for the 50-word test."""
    out = []
    for text in texts.to_pylist():
        words = text.lower().split()
        if len(words) < 50:
            out.append(None)
            continue
        counts = Counter(zip(words, words[1:]))
        top = max(counts.values())
        chars = max(len(a) + len(b) for (a, b), c in counts.items() if c == top)
        total = sum(map(len, words))
        out.append(top * chars / total if total else None)
    return out


def top_2gram_share_arrow(texts: pa.Array) -> list:
    """`top_2gram_share` over the whole batch with Arrow's hash kernels and numpy: equal values, measured
    no faster than the Counter loop the stage keeps (benchmarks/README.md), so it lives here."""
    out = np.full(len(texts), np.nan)
    flat, doc = C.split_words(pc.utf8_lower(texts))  # clean's words (stages/clean/words.py), lower-cased as the signal reads them
    eligible = np.flatnonzero(np.bincount(doc, minlength=len(texts)) >= C.GOPHER_MIN_WORDS)
    if len(eligible):
        keep = np.zeros(len(texts), bool)
        keep[eligible] = True
        keep = keep[doc]
        flat, doc = pc.utf8_lower(flat.filter(pa.array(keep))), doc[keep]
        length = pc.utf8_length(flat).to_numpy(zero_copy_only=False).astype(np.int64)
        word = C._codes(flat)
        n_words = int(word.max()) + 1
        total = np.bincount(doc, weights=length, minlength=len(texts))[eligible]
        pair = doc[1:] == doc[:-1]  # word i and i+1 of the same text form a bigram
        first, second, bigram_doc = word[:-1][pair], word[1:][pair], doc[1:][pair]
        # One group per (text, bigram): one integer for the three codes, when it fits in 63 bits.
        if (int(bigram_doc[-1]) + 1) * n_words * n_words < 2**62:
            group, distinct = C._first_seen_groups((bigram_doc * n_words + first) * n_words + second)
            group_doc = distinct // (n_words * n_words)
        else:
            bigram, _ = C._first_seen_groups(first * n_words + second)
            group, distinct = C._first_seen_groups(bigram_doc * (int(bigram.max()) + 1) + bigram)
            group_doc = distinct // (int(bigram.max()) + 1)
        # Texts come in order, so each text's groups are contiguous (numbered by first appearance).
        counts = np.bincount(group)
        chars = np.zeros(len(counts), np.int64)
        chars[group] = (length[:-1] + length[1:])[pair]  # equal within a group: same two words
        starts = np.flatnonzero(np.r_[True, group_doc[1:] != group_doc[:-1]])
        top = np.maximum.reduceat(counts, starts)
        top_chars = np.maximum.reduceat(np.where(counts == np.repeat(top, np.diff(np.r_[starts, len(counts)])),
                                                 chars, 0), starts)
        # Every eligible text has 50+ words, so 49+ bigrams: one `top` per eligible text, in order.
        out[eligible] = top * top_chars / total
    return pa.array(out, pa.float64(), mask=np.isnan(out)).to_pylist()


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
    # Each signal's other implementation: the loop dup_line_share replaced, the Arrow version top_2gram_share did not take.
    others = {"dup_line_share": ("per-text loop, before", dup_line_share_loop),
              "top_2gram_share": ("Arrow + numpy, not taken", top_2gram_share_arrow)}
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
