"""The quality gate alone, on a candidate a pipeline run left behind: time per check and peak RSS.

    python benchmarks/pipeline/run.py --size 1000000               # once: leaves runs/bench/candidates/<fp>
    python benchmarks/pipeline/gate.py --size 1000000               # the default gate on that candidate
    python benchmarks/pipeline/gate.py --size 1000000 --no-label-noise

The candidate folder is copied to a scratch folder (the gate writes its evidence into it) and the gate runs
in a child process, as the executor would call it: with the summaries the run's stages handed on (read
from each stage's `stats.json`) and the published schema. Printed: wall time of the gate, the seconds of
each check as the gate records them, the child's peak RSS (getrusage), and the verdict. Use it to iterate
on the gate without re-running the stages; the whole-pipeline figure comes from `run.py --gate`.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def gate_request(run_dir: Path, scratch: Path):
    """The run's latest candidate copied to `scratch`, and the request the executor would hand the gate (with
    the summaries the run's stages handed on): (project, request)."""
    sys.path.insert(0, str(REPO))
    import pipeline.cli.project as composition
    from pipeline.gate import GateRequest
    from schemas.summaries import Summaries

    project = composition.PROJECT
    candidate = sorted((run_dir / "candidates").iterdir(), key=lambda p: p.stat().st_mtime)[-1]
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(candidate, scratch, ignore=shutil.ignore_patterns("quality", "report.html", "label_issues.parquet"))
    for p in [scratch, *scratch.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    by_name = {s.name: s for s in project.stages}
    summaries = []
    for folder in sorted((run_dir / "stages").iterdir()):
        stats = json.loads((folder / "stats.json").read_text())
        cls = by_name[stats["name"]]
        if cls.summary_type is not None and stats.get("summary") is not None:
            summaries.append(cls.summary_type.model_validate(stats["summary"]))
    import pyarrow.parquet as pq

    schema = pq.read_schema(scratch / "train.parquet")
    manifest = json.loads((scratch / "manifest.json").read_text())
    return project, GateRequest(folder=scratch, dataset=manifest["dataset"], labels=manifest.get("labels"), kind=None,
                                schema=schema, parent=None, summaries=Summaries(summaries))


def child(run_dir: Path, scratch: Path, overrides: dict) -> None:
    project, request = gate_request(run_dir, scratch)
    gate = project.gate
    config = gate.Config(**overrides)
    import threading

    import psutil

    samples: list[tuple[float, float]] = []  # (seconds since the gate started, RSS MB), every 0.1 s
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        me = psutil.Process()
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, me.memory_info().rss / 2**20))
            stop.wait(0.1)

    threading.Thread(target=sample, daemon=True).start()
    start_rss = psutil.Process().memory_info().rss / 2**20
    result = gate.check(config, request)
    wall = time.perf_counter() - t0
    stop.set()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The peak within each part's time window (parts run one after another, in the order of `seconds`).
    by_part, start = {}, 0.0
    for part, secs in (result.summary.get("seconds") or {}).items():
        if part == "total":
            continue
        window = [rss for t, rss in samples if start <= t <= start + secs + 0.1]
        by_part[part] = round(max(window)) if window else None
        start += secs
    print(json.dumps({"wall": wall, "peak_mb": peak, "start_mb": start_rss, "peak_by_part_mb": by_part,
                      "passed": result.passed, "seconds": result.summary.get("seconds"),
                      "failures": [str(f) for f in result.failures][:10],
                      "sampled": result.summary.get("sampled")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--no-label-noise", action="store_true", help="switch the label-noise check off")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), json.loads(args.child[2]))
        return
    out = HERE / "out" / str(args.size)
    run_dir = out / "data" / "runs" / "bench"
    if not (run_dir / "candidates").is_dir():
        sys.exit(f"no candidate under {run_dir}: run `python benchmarks/pipeline/run.py --size {args.size}` first")
    overrides = {"label_noise": {"enabled": False}} if args.no_label_noise else {}
    load = os.getloadavg()
    proc = subprocess.run([sys.executable, __file__, "--child", str(run_dir), str(out / "gate-scratch"), json.dumps(overrides)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"gate failed:\n{proc.stderr[-5000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"rows: {args.size:,}  overrides: {overrides or 'none (the default gate)'}  load average before: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"gate wall: {figures['wall']:.1f} s  peak RSS: {figures['peak_mb']:,.0f} MB  passed: {figures['passed']}")
    print("seconds per part: " + ", ".join(f"{k} {v}" for k, v in (figures["seconds"] or {}).items()))
    print(f"RSS when the gate started: {figures['start_mb']:,.0f} MB; peak RSS per part (sampled every 0.1 s): "
          + ", ".join(f"{k} {v:,} MB" for k, v in figures["peak_by_part_mb"].items() if v is not None))
    if figures.get("sampled"):
        print(f"sampled: {figures['sampled']}")
    for f in figures["failures"]:
        print(f"  {f}")


if __name__ == "__main__":
    main()
