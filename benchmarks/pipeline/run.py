"""Whole-pipeline benchmark: collect → clean → dedupe → split → publish on N rows of mixed real text.

    python benchmarks/pipeline/run.py --size 100000            # without language detection
    python benchmarks/pipeline/run.py --size 100000 --lang     # with it (langdetect, both cores)

The corpus is the dedupe benchmark's (real texts from ../shared/data, short and long, with planted
duplicates), written as JSONL so the run starts from raw files. `sftpipe run` runs in a child process;
we report its wall time, the peak RSS of the main process and of the largest worker, and the per-stage
throughput the run records in its manifest. The quality gate is off: issue #6 measures the ETL, and
label-noise cross-validation on a million rows is a different budget.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "dedupe"))

import generate  # noqa: E402  (the dedupe benchmark's seeded corpus)


def corpus_jsonl(size: int, seed: int) -> Path:
    path = HERE / "data" / f"corpus_{size}_{seed}.jsonl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    table = generate.generate(size, seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for batch in table.select(["text", "label"]).to_batches(50_000):
            for text, label in zip(batch.column("text").to_pylist(), batch.column("label").to_pylist()):
                fh.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    tmp.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lang", action="store_true", help="compute the langdetect signal (slow, pure Python)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()

    source = corpus_jsonl(args.size, args.seed)
    out = HERE / "out" / f"{args.size}{'-lang' if args.lang else ''}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = {
        "dataset": "bench",
        "sources": [{"name": "corpus", "path": str(source), "format": "jsonl", "label_field": "label"}],
        "clean": {"signals": ["lang"] if args.lang else []},
        "evaluate": {"enabled": False},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(out / "config.yaml"), "--data-dir", str(out / "data"),
           "--workers", str(args.workers), "--batch-size", str(args.batch_size)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"run failed:\n{proc.stdout}\n{proc.stderr}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    manifest = json.loads((out / "data" / "versions" / "bench" / "v1" / "manifest.json").read_text())

    print(f"rows: {args.size:,}  source: {source.name} ({source.stat().st_size / 1e6:.0f} MB)  "
          f"lang: {args.lang}  workers: {args.workers}")
    print(f"wall: {wall:.1f} s (process start and imports included)  "
          f"end-to-end: {args.size / wall:,.0f} rows/s  peak RSS (largest process): {peak_mb:,.0f} MB")
    print(f"{'stage':<10}{'rows in':>12}{'rows out':>12}{'seconds':>10}{'rows/s':>12}")
    for s in manifest["stages"]:
        print(f"{s['name']:<10}{s['rows_in']:>12,}{s['rows_out']:>12,}{s['seconds']:>10.1f}{s['rows_per_second'] or 0:>12,.0f}")
    published = sum(v["rows"] for v in manifest["splits"].values())
    print(f"published {published:,} rows, rejected {manifest['rejected']['rows']:,}")


if __name__ == "__main__":
    main()
