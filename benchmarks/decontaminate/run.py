"""Decontamination benchmark: time the n-gram engine (and the MinHash near mode) on our records against an
evaluation set, per phase, with peak memory; score it on the planted contamination and against the
reference implementation (truth.py).

    python benchmarks/decontaminate/run.py --records 100000 --items 10000
    python benchmarks/decontaminate/run.py --records 1000000 --items 50000 --truth-rows 100000
    python benchmarks/decontaminate/run.py --records 100000 --items 10000 --workers 2 --no-near

Data are made on first use by generate.py (cached under data/). The measured part runs in a child
process — reading the eval Parquet, building the index, streaming the records' Parquet in batches through
the scan, then the near mode — so its peak RSS is its own (plus its workers'). `--workers N` scans on a
pool of N processes (pipeline.stage.worker_pool, the executors' fork server) that map the saved index.

Scores: per planted kind, the share of planted rows flagged (recall; for near_miss, flagged is wrong
unless another item explains it); rows flagged that were not planted (every one is a verified shared
n-gram between two different real texts: the examples say which); and agreement with truth.py on the
first `--truth-rows` records (every row: same item, same rule, same text).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402
import truth as truth_mod  # noqa: E402

from pipeline import decontamination as dc  # noqa: E402
from pipeline import decontamination_near as near_mode  # noqa: E402


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def _scan_job(folder: str, texts: pa.Array, first_row: int) -> tuple[dc.NgramMatches, float]:
    """Worker job: the engine's, plus the CPU seconds it took in the worker."""
    cpu = time.process_time()
    return dc.find_ngram_overlaps_saved(folder, texts, first_row), time.process_time() - cpu


def child(args: argparse.Namespace) -> None:
    """The measured run: writes matches, wall and CPU seconds per phase to args.out."""
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    items = pq.read_table(args.eval, columns=["text"]).column("text")
    index = dc.NgramIndex.build(items, dc.NgramParams(ngram=args.ngram))
    timings["index build"] = time.perf_counter() - started
    cpu["index build"] = time.process_time() - cpu_started
    parts = []
    # pre_buffer=False: with the default, pyarrow keeps every column chunk read so far until the iteration
    # ends (the whole file by the last batch).
    reader = pq.ParquetFile(args.records, pre_buffer=False)
    batches = (b.column(0) for b in reader.iter_batches(batch_size=args.batch_size, columns=["text"]))
    if args.workers > 1:
        from pipeline.stage import start_worker_server, worker_pool

        with tempfile.TemporaryDirectory() as folder:
            # Started before the clock, as the executors start the fork server when a run starts; each
            # worker maps the saved index and builds its NFKC character class on warm-up jobs.
            mark = time.perf_counter()
            start_worker_server()
            pool = worker_pool(args.workers)
            index.save(folder)
            for warm in [pool.submit(_scan_job, folder, pa.array(["warm-up é"], pa.string()), 0) for _ in range(args.workers)]:
                warm.result()
            timings["pool start, index save and map"] = time.perf_counter() - mark
            cpu["pool start, index save and map"] = 0.0  # not measured: the fork server is not our child
            mark, cpu_mark, worker_cpu = time.perf_counter(), time.process_time(), 0.0
            with pool:
                pending, first_row = [], 0
                for texts in batches:
                    pending.append(pool.submit(_scan_job, folder, texts, first_row))
                    first_row += len(texts)
                    while len(pending) > 2 * args.workers:  # bounded read-ahead, results in order
                        part, seconds = pending.pop(0).result()
                        parts.append(part)
                        worker_cpu += seconds
                for p in pending:
                    part, seconds = p.result()
                    parts.append(part)
                    worker_cpu += seconds
    else:
        mark, cpu_mark, worker_cpu = time.perf_counter(), time.process_time(), 0.0
        parts = list(dc.scan(index, batches))
    found = dc.NgramMatches.concat(parts)
    timings["scan"] = time.perf_counter() - mark
    cpu["scan"] = time.process_time() - cpu_mark + worker_cpu
    timings["n-gram total"] = time.perf_counter() - started
    cpu["n-gram total"] = sum(cpu.values())
    rss_ngram = peak_rss_mb()
    near = {}
    if args.near:
        mark, cpu_mark = time.perf_counter(), time.process_time()
        near_params = near_mode.NearParams(ngram=args.near_ngram, threshold=args.near_threshold,
                                    lsh_threshold=min(args.near_threshold, args.near_lsh_threshold))
        near_index = near_mode.NearIndex.build(items, near_params)
        timings["near index build"] = time.perf_counter() - mark
        cpu["near index build"] = time.process_time() - cpu_mark
        mark, cpu_mark = time.perf_counter(), time.process_time()
        near_parts, first_row = [], 0
        for b in reader.iter_batches(batch_size=args.batch_size, columns=["text"]):
            near_parts.append(near_mode.find_near_copies(near_index, b.column(0), first_row))
            first_row += b.num_rows
        timings["near scan"] = time.perf_counter() - mark
        cpu["near scan"] = time.process_time() - cpu_mark
        near = {"near_row": np.concatenate([p.row for p in near_parts]),
                "near_item": np.concatenate([p.item for p in near_parts]),
                "near_jaccard": np.concatenate([p.jaccard for p in near_parts])}
    np.savez(args.out, row=found.row, item=found.item, how=np.array(found.how, dtype=object),
             ngram=np.array(found.ngram, dtype=object), timings=json.dumps(timings), cpu=json.dumps(cpu),
             summary=json.dumps(index.summary()), rss_ngram=rss_ngram, rss=peak_rss_mb(), **near)


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def score(result, records: pa.Table, items: list[str], truth_rows: int, lengths) -> list[str]:
    lines = []
    meta = [json.loads(m) for m in records.column("meta").to_pylist()]
    kinds = np.array([m["kind"] for m in meta])
    planted_item = np.array([m["item"] for m in meta])
    flagged = np.zeros(len(meta), dtype=bool)
    flagged[result["row"]] = True
    near_flagged = np.zeros(len(meta), dtype=bool)
    if "near_row" in result:
        near_flagged[result["near_row"]] = True
    index = dc.NgramIndex.build(pa.array(items, pa.string()), dc.NgramParams(ngram=lengths["word"][0]))
    compared = np.array(dc.COMPARED_AS)[index.compared_as]
    lines.append("| planted kind | rows | n-gram mode flagged | near mode flagged | either |")
    lines.append("|---|---|---|---|---|")
    for kind in [*generate.PLANTED_KINDS, "original"]:
        mine = kinds == kind
        n = int(mine.sum())
        if not n:
            continue
        cells = [f"{int(f[mine].sum()):,} ({f[mine].mean():.1%})" for f in (flagged, near_flagged, flagged | near_flagged)]
        lines.append(f"| {kind} | {n:,} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Planted rows missed by the n-gram mode, by how their item is compared: " + ", ".join(
        f"{kind}: {dict(Counter(compared[planted_item[(kinds == kind) & ~flagged]]))}"
        for kind in ("verbatim", "case_punct", "embedded")))
    original = np.flatnonzero((kinds == "original") & flagged)
    how = dict(zip(result["row"].tolist(), zip(result["item"].tolist(), result["how"].tolist(), result["ngram"].tolist())))
    lines.append(f"Unplanted rows flagged (originals sharing text with an item): {len(original):,} "
                 f"({len(original) / max((kinds == 'original').sum(), 1):.2%} of originals), by rule "
                 f"{dict(Counter(how[r][1] for r in original))}; distinct items involved "
                 f"{len({how[r][0] for r in original}):,}. Examples (matched text):")
    for r in original[:: max(1, len(original) // 5)][:5]:
        lines.append(f"  - row {r}: {how[r][1]} \"{how[r][2][:110]}\"")
    if "near_row" in result:
        near = dict(zip(result["near_row"].tolist(), zip(result["near_item"].tolist(), result["near_jaccard"].tolist())))
        unplanted = [r for r in near if kinds[r] == "original"]
        texts = records.column("text")
        lines.append(f"Near mode, unplanted rows flagged: {len(unplanted):,}, of them {sum(not flagged[r] for r in unplanted):,} "
                     "not flagged by the n-gram mode. Examples (Jaccard: row | item):")
        for r in unplanted[:: max(1, len(unplanted) // 5)][:5]:
            item, jaccard = near[r]
            lines.append(f"  - row {r}, J = {jaccard:.2f}: \"{texts[r].as_py()[:70]}\" | \"{items[item][:70]}\"")
    near_miss = np.flatnonzero((kinds == "near_miss") & flagged)
    if len(near_miss):
        lines.append(f"near_miss rows flagged: {len(near_miss):,}, by rule {dict(Counter(how[r][1] for r in near_miss))}, "
                     f"by the item they were cut from: {sum(how[r][0] == planted_item[r] for r in near_miss):,} "
                     "(the others match another item whole, or through a neighbouring record unit). Examples:")
        for r in near_miss[:5]:
            lines.append(f"  - row {r}: item {how[r][0]} (cut from {planted_item[r]}), {how[r][1]} \"{how[r][2][:90]}\"")
    if truth_rows:
        texts = records.column("text").to_pylist()[:truth_rows]
        started = time.perf_counter()
        reference = truth_mod.Reference(items, lengths)
        expected = {}
        for r, t in enumerate(texts):
            m = reference.match(t)
            if m is not None:
                expected[r] = m
        seconds = time.perf_counter() - started
        got = {r: v for r, v in how.items() if r < truth_rows}
        differ = [r for r in set(got) | set(expected) if got.get(r) != expected.get(r)]
        lines.append(f"Against truth.py on the first {len(texts):,} records ({seconds:.0f} s in Python): "
                     f"{len(expected):,} rows matched by the reference, {len(got):,} by the engine, "
                     f"{len(differ)} differ" + (f" (e.g. row {differ[0]}: {got.get(differ[0])} vs {expected.get(differ[0])})" if differ else ""))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--planted", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ngram", type=int, default=13)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--near", action=argparse.BooleanOptionalAction, default=True, help="also run the MinHash near mode")
    parser.add_argument("--near-ngram", type=int, default=near_mode.NearParams.ngram)
    parser.add_argument("--near-threshold", type=float, default=near_mode.NearParams.threshold)
    parser.add_argument("--near-lsh-threshold", type=float, default=near_mode.NearParams.lsh_threshold)
    parser.add_argument("--truth-rows", type=int, default=100_000, help="records checked against truth.py (0: none)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--eval", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--records-path", dest="records_file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.records = args.records_file
        child(args)
        return
    eval_path, records_path = generate.ensure(args.records, args.items, args.planted, args.seed)
    out = HERE / "out" / f"result_{args.records}_{args.items}_w{args.workers}.npz"
    out.parent.mkdir(exist_ok=True)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}")
    print(f"records {records_path.name}, eval {eval_path.name}, workers {args.workers}, batch {args.batch_size}; "
          f"load average before: {load_avg()}")
    cmd = [sys.executable, __file__, "--child", "--eval", str(eval_path), "--records-path", str(records_path),
           "--out", str(out), "--ngram", str(args.ngram), "--workers", str(args.workers),
           "--batch-size", str(args.batch_size), "--near-ngram", str(args.near_ngram),
           "--near-threshold", str(args.near_threshold), "--near-lsh-threshold", str(args.near_lsh_threshold),
           "--near" if args.near else "--no-near"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    whole = time.perf_counter() - started
    result = dict(np.load(out, allow_pickle=True))
    timings, cpu = json.loads(str(result["timings"])), json.loads(str(result["cpu"]))
    print(f"index: {json.loads(str(result['summary']))}")
    print("| phase | wall s | CPU s (all processes) |\n|---|---|---|")
    for phase, seconds in timings.items():
        print(f"| {phase} | {seconds:.2f} | {cpu[phase]:.2f} |")
    print(f"| whole process (interpreter start, imports, {'both modes' if args.near else 'n-gram mode'}) | {whole:.2f} | |")
    print(f"peak RSS: {float(result['rss_ngram']):,.0f} MB after the n-gram mode, {float(result['rss']):,.0f} MB in all; "
          f"n-gram rows/s (scan only): {args.records / timings['scan']:,.0f}; flagged {len(result['row']):,}"
          + (f"; near mode flagged {len(result['near_row']):,}" if "near_row" in result else ""))
    records = pq.read_table(records_path)
    items = pq.read_table(eval_path).column("text").to_pylist()
    lengths = dict(truth_mod.DEFAULT_LENGTHS, word=(args.ngram, truth_mod.DEFAULT_LENGTHS["word"][1]))
    print("\n".join(score(result, records, items, min(args.truth_rows, args.records), lengths)))


if __name__ == "__main__":
    main()
