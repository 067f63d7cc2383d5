"""Whole-pipeline benchmark: collect → clean → dedupe → split → publish on N rows of mixed real text.

    python benchmarks/pipeline/run.py --size 100000            # without language detection
    python benchmarks/pipeline/run.py --size 100000 --lang     # with it (clean.signals: [lang], both cores)
    python benchmarks/pipeline/run.py --size 1000000 --gate no-label-noise   # with the quality gate

The corpus is the dedupe benchmark's (real texts from ../shared/data, short and long, with planted
duplicates), written as JSONL so the run starts from raw files. `sftpipe run` runs in a child process;
we report its wall time, the peak RSS of the largest single process (getrusage), the peak of the whole
process tree's summed RSS (main process plus its workers, sampled every 0.2 s), the load average before
the run, and the per-stage throughput the run records in its manifest. The quality gate is off by default
(issue #6 measures the ETL); `--gate default` runs the default gate, `--gate no-label-noise` the default gate
without the label-noise model (a different budget, issue #21's), and the gate's seconds per check are
printed from the manifest.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "dedupe"))

import generate  # noqa: E402  (the dedupe benchmark's seeded corpus)


def corpus_jsonl(size: int, seed: int) -> Path:
    path = HERE / "data" / f"corpus_{size}_{seed}_g{generate.GENERATOR_VERSION}.jsonl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cached = generate.corpus_path(size, seed)  # the dedupe benchmark's Parquet, same generator version
    table = pq.read_table(cached) if cached.exists() else generate.generate(size, seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for batch in table.select(["text", "label"]).to_batches(50_000):
            for text, label in zip(batch.column("text").to_pylist(), batch.column("label").to_pylist()):
                fh.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    tmp.rename(path)
    return path


def current_phase(stages_dir: Path) -> str:
    """The stage being written (its `NN-name-fp.tmp-PID` folder exists), else what came last."""
    try:
        names = sorted(os.listdir(stages_dir))
    except FileNotFoundError:
        return "start"
    running = [n for n in names if ".tmp-" in n]
    if running:
        return running[-1].split("-")[1]
    if any(stages_dir.parent.glob("candidates/*/quality")):  # the gate writes its evidence into the candidate
        return "gate"
    return f"after {names[-1].split('-')[1]}" if names else "start"


def tree_rss_sampler(pid: int, stages_dir: Path, every: float = 0.2) -> tuple[threading.Event, dict]:
    """Sample the summed RSS of `pid` and all its descendants until the returned event is set; also the
    peak of the main process and of the tree within each phase (the stage running, from its folder)."""
    import psutil

    peak = {"tree_mb": 0.0, "phases": {}}
    stop = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        while not stop.is_set():
            total = 0
            try:
                procs = [root] + root.children(recursive=True)
                main_mb = root.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                break
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            peak["tree_mb"] = max(peak["tree_mb"], total / 2**20)
            phase = peak["phases"].setdefault(current_phase(stages_dir), [0.0, 0.0])
            phase[0], phase[1] = max(phase[0], main_mb), max(phase[1], total / 2**20)
            stop.wait(every)

    threading.Thread(target=sample, daemon=True).start()
    return stop, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lang", action="store_true", help="compute the lang signal (clean.signals: [lang]; fastText by default)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--gate", choices=["off", "default", "no-label-noise"], default="off",
                        help="the quality gate: off (the ETL alone), the default gate, or it without label noise")
    args = parser.parse_args()

    source = corpus_jsonl(args.size, args.seed)
    out = HERE / "out" / f"{args.size}{'-lang' if args.lang else ''}{'' if args.gate == 'off' else '-gate-' + args.gate}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = {
        "dataset": "bench",
        "sources": [{"name": "corpus", "path": str(source), "format": "jsonl", "label_field": "label"}],
        "clean": {"signals": ["lang"] if args.lang else []},
        "evaluate": {"off": {"enabled": False}, "default": {},
                     "no-label-noise": {"label_noise": {"enabled": False}}}[args.gate],
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(out / "config.yaml"), "--data-dir", str(out / "data"),
           "--workers", str(args.workers), "--batch-size", str(args.batch_size)]
    if args.gate != "off":  # the corpus mixes 25 labels unevenly: class shares fail; publish anyway, marked
        cmd.append("--allow-failed-gates")
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop, tree = tree_rss_sampler(proc.pid, out / "data" / "runs" / "bench" / "stages")
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    if proc.returncode != 0:
        sys.exit(f"run failed:\n{stdout}\n{stderr}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    manifest = json.loads((out / "data" / "versions" / "bench" / "v1" / "manifest.json").read_text())

    print(f"rows: {args.size:,}  source: {source.name} ({source.stat().st_size / 1e6:.0f} MB)  "
          f"lang: {args.lang}  workers: {args.workers}  load average before: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}  code_version: {manifest.get('code_version')}")
    print(f"wall: {wall:.1f} s (process start and imports included)  "
          f"end-to-end: {args.size / wall:,.0f} rows/s  peak RSS: largest process {peak_mb:,.0f} MB, "
          f"whole process tree {tree['tree_mb']:,.0f} MB (sampled)")
    print(f"{'stage':<10}{'rows in':>12}{'rows out':>12}{'seconds':>10}{'rows/s':>12}")
    for s in manifest["stages"]:
        print(f"{s['name']:<10}{s['rows_in']:>12,}{s['rows_out']:>12,}{s['seconds']:>10.1f}{s['rows_per_second'] or 0:>12,.0f}")
    print("peak RSS by phase (sampled every 0.2 s; 'after X' is the time after stage X, e.g. publishing): "
          + ", ".join(f"{name} {main:,.0f} / {whole:,.0f} MB" for name, (main, whole) in tree["phases"].items())
          + "  (main process / whole tree)")
    if manifest.get("evaluation"):
        seconds = manifest["evaluation"].get("seconds") or {}
        print(f"gate ({args.gate}): {manifest['evaluation'].get('status')}, seconds: "
              + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    published = sum(v["rows"] for v in manifest["splits"].values())
    print(f"published {published:,} rows, rejected {manifest['rejected']['rows']:,}")


if __name__ == "__main__":
    main()
