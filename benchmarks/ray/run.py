"""Local vs Ray executor on the same corpus and config: wall time, per-stage seconds, Ray's overhead.

    python benchmarks/ray/run.py --size 100000 --sources 4            # without language detection
    python benchmarks/ray/run.py --size 100000 --sources 4 --lang     # with it (the costly row-wise signal)

The corpus is the dedupe benchmark's (benchmarks/dedupe/generate.py: real texts with planted duplicates),
written as JSONL split into `--sources` files, one source each (collect runs per source on Ray). Each
executor runs `sftpipe run` in a child process on a fresh data folder, with the quality gate off (as in
benchmarks/pipeline/run.py). The two published versions must have the same content fingerprint. We also
time the driver-side costs every Ray run pays whatever the cluster size (rewriting a stage's output as
one zstd Parquet file; decoding IPC payloads), which the projection in README.md builds on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "dedupe"))
sys.path.insert(0, str(REPO))

import generate  # noqa: E402  (the dedupe benchmark's seeded corpus)


def corpus_files(size: int, seed: int, sources: int) -> list[Path]:
    folder = HERE / "data" / f"corpus_{size}_{seed}_{sources}_g{generate.GENERATOR_VERSION}"
    files = [folder / f"part{i}.jsonl" for i in range(sources)]
    if all(f.exists() for f in files):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    cached = generate.corpus_path(size, seed)
    table = pq.read_table(cached, columns=["text", "label"]) if cached.exists() else generate.generate(size, seed)
    per = -(-table.num_rows // sources)
    for i, f in enumerate(files):
        part = table.slice(i * per, per)
        tmp = f.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for batch in part.to_batches(50_000):
                for text, label in zip(batch.column("text").to_pylist(), batch.column("label").to_pylist()):
                    fh.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
        tmp.rename(f)
    return files


def run(executor: str, config: Path, data_dir: Path, workers: int, batch_size: int) -> dict:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(config), "--data-dir", str(data_dir),
           "--workers", str(workers), "--batch-size", str(batch_size), "--executor", executor]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    # This checkout's code for the driver and for Ray's workers (they inherit PYTHONPATH), even where the
    # package is installed editable from another checkout: run a frozen `git worktree` while others edit.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{executor} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    manifest = json.loads((data_dir / "versions" / "bench" / "v1" / "manifest.json").read_text())
    stages = {s["name"]: s["seconds"] for s in manifest["stages"]}
    return {"executor": executor, "wall": wall, "stages": stages, "load_before": load,
            "code_version": manifest["code_version"],
            "fingerprint": manifest["content_fingerprint"], "rows_in": manifest["rows_in"],
            "published": sum(v["rows"] for v in manifest["splits"].values()), "rejected": manifest["rejected"]["rows"],
            "stage_rows": {s["name"]: s["rows_in"] for s in manifest["stages"]}}


def driver_costs(data_dir: Path, batch_size: int) -> dict:
    """What the Ray driver does per row whatever the cluster: decode IPC payloads, write zstd Parquet."""
    import schemas
    from pipeline.stage_io import BoundaryWriter
    from pipeline.ray_executor import from_ipc, to_ipc

    clean = next((data_dir / "runs" / "bench" / "stages").glob("01-clean-*"))
    batches = list(pq.ParquetFile(clean / "part-00000.parquet").iter_batches(batch_size=batch_size))
    rows = sum(b.num_rows for b in batches)
    mb = sum(b.nbytes for b in batches) / 1e6
    payloads = [to_ipc(b) for b in batches]
    t0 = time.perf_counter()
    decoded = [from_ipc(p) for p in payloads]
    decode = time.perf_counter() - t0
    out = data_dir / "driver-write-test.parquet"
    t0 = time.perf_counter()
    writer = BoundaryWriter(out, schemas.CLEANED, "benchmark")
    for b in decoded:
        writer.write(b)
    writer.close()
    write = time.perf_counter() - t0
    out.unlink()
    return {"rows": rows, "arrow_mb": round(mb, 1), "decode_rows_per_s": round(rows / decode),
            "write_rows_per_s": round(rows / write), "write_mb_per_s": round(mb / write, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--lang", action="store_true", help="compute the langdetect signal (slow, pure Python)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--executors", nargs="+", default=["local", "ray"])
    args = parser.parse_args()

    files = corpus_files(args.size, args.seed, args.sources)
    name = f"{args.size}-{args.sources}src{'-lang' if args.lang else ''}"
    out = HERE / "out" / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = {
        "dataset": "bench",
        "sources": [{"name": f"part{i}", "path": str(f), "format": "jsonl", "label_field": "label"}
                    for i, f in enumerate(files)],
        "clean": {"signals": ["lang"] if args.lang else []},
        "evaluate": {"enabled": False},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    results = [run(e, out / "config.yaml", out / f"data-{e}", args.workers, args.batch_size) for e in args.executors]

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  {platform.node()}  {os.cpu_count()} cores  "
          f"python {platform.python_version()}  pyarrow {pa.__version__}")
    print(f"rows: {args.size:,} in {args.sources} source(s), {sum(f.stat().st_size for f in files) / 1e6:.0f} MB JSONL; "
          f"lang: {args.lang}; workers: {args.workers}; batch size: {args.batch_size:,}")
    names = list(results[0]["stages"])
    print(f"{'executor':<9}{'wall s':>8}{'load':>6}" + "".join(f"{n:>9}" for n in names) + f"{'publish+':>10}  fingerprint")
    for r in results:
        rest = r["wall"] - sum(r["stages"].values())
        print(f"{r['executor']:<9}{r['wall']:>8.1f}{r['load_before']:>6.1f}" + "".join(f"{r['stages'][n]:>9.1f}" for n in names)
              + f"{rest:>10.1f}  {r['fingerprint'][:16]}")
    print("(publish+ = wall minus the stages: process start, imports, Ray start/stop, publish)")
    if len({r["code_version"] for r in results}) > 1:
        print(f"warning: the code changed between the runs: {', '.join(r['code_version'] for r in results)}")
    same = len({r["fingerprint"] for r in results}) == 1
    print(f"same content fingerprint: {same}; published {results[0]['published']:,}, rejected {results[0]['rejected']:,}")
    costs = driver_costs(out / f"data-{args.executors[0]}", args.batch_size)
    print(f"driver per-row costs on the clean output ({costs['rows']:,} rows, {costs['arrow_mb']} MB Arrow): "
          f"IPC decode {costs['decode_rows_per_s']:,} rows/s, zstd Parquet write {costs['write_rows_per_s']:,} rows/s "
          f"({costs['write_mb_per_s']} MB/s)")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results, "driver": costs}, indent=2))
    if not same:
        sys.exit("the executors published different content")


if __name__ == "__main__":
    main()
