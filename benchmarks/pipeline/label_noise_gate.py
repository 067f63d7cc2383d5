"""The gate's label_noise check on a run's candidate, both ways, side by side: reading the label_noise
stage's verdicts back from the published rows (what the gate does now when the stage ran with its
settings) against fitting the model again on the published rows (what it did before: one more fit per run).

    python benchmarks/pipeline/run.py --size 1000000                  # once: leaves out/1000000/data/runs/bench
    python benchmarks/pipeline/label_noise_gate.py --size 1000000 --repeat 2
    python benchmarks/pipeline/label_noise_gate.py --run-dir DATA_DIR/runs/DATASET   # any run's folder (sftpipe run --data-dir DATA_DIR)

Each round runs `stages.evaluate.label_noise.check` in a fresh child process per way, alternating, on a
scratch copy of the run's latest candidate with the summaries its stages handed on (`gate.py`'s request);
"fit" is the same call with the label_noise stage's summary withheld, so the check fits as when the stage is
off. Printed per way: the check's seconds (reading the rows included), the child's peak RSS, the flagged
rows, and the load average before it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))


def child(run_dir: Path, scratch: Path, way: str) -> None:
    from gate import gate_request

    project, request = gate_request(run_dir, scratch)
    from schemas.summaries import LabelNoiseSummary, Summaries
    from stages.evaluate.candidate import read_candidate
    from stages.evaluate.label_noise import check

    summaries = request.summaries
    if way == "fit":
        summaries = Summaries([s for s in summaries._by_type.values() if not isinstance(s, LabelNoiseSummary)])
    candidate = read_candidate(request.folder, request.dataset, request.labels, None, summaries, request.schema)
    t0 = time.perf_counter()
    # "reuse" reads back (refit: false); "fit" fits again, as the default refit: true does
    result = check(candidate, project.gate.Config(label_noise={"refit": way == "fit"}))
    seconds = time.perf_counter() - t0
    info = result.summary
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "ran": info.get("ran"), "labelled_rows": info.get("labelled_rows"),
                      "flagged": info.get("flagged"), "evidence": info.get("evidence") or info.get("skipped")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="run.py's run of this size (its out/SIZE folder)")
    parser.add_argument("--run-dir", type=Path, help="a run's folder (DATA_DIR/runs/DATASET) instead of --size")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.child[2])
        return
    run_dir = args.run_dir or HERE / "out" / str(args.size) / "data" / "runs" / "bench"
    if not (run_dir / "candidates").is_dir():
        sys.exit(f"no candidate under {run_dir}: run a pipeline there first (see this script's docstring)")
    scratch = HERE / "out" / "label-noise-scratch"
    for r in range(args.repeat):
        for way in ("reuse", "fit"):
            load = os.getloadavg()
            proc = subprocess.run([sys.executable, __file__, "--child", str(run_dir), str(scratch), way],
                                  capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            if proc.returncode != 0:
                sys.exit(f"check failed:\n{proc.stderr[-5000:]}")
            f = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"round {r + 1} {way:<6} {f['seconds']:8.2f} s  peak RSS {f['peak_mb']:,.0f} MB  labelled rows "
                  f"{f['labelled_rows']:,}  flagged {f['flagged']}  load before {load[0]:.2f}  — {f['evidence']}",
                  flush=True)


if __name__ == "__main__":
    main()
