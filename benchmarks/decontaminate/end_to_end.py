"""The decontaminate stage inside `sftpipe run`: the benchmark's records (real text with planted
contamination, generate.py) as a dataset, its evaluation set as the stage's eval set, run end to end —
once without the `decontaminate` section and once with it — in child processes.

    python benchmarks/decontaminate/end_to_end.py --records 100000 --items 10000
    python benchmarks/decontaminate/end_to_end.py --records 100000 --items 10000 --gate   # also the gate's re-check

Prints the stage's own time from the manifest (rows in, seconds, rows/s), the whole run's wall time with and
without the stage, the load average before each run, the stage alone again in this process on one core
over the clean stage's output (wall and CPU seconds: the steadier figure on a shared machine), and what
the stage removed per planted kind (as
generate.py planted them; clean runs first and may drop or change a row). Records are read as a
classification dataset without labels (`text`, ids from the file), the eval set with `text_field: text`
and `id_field: id`. The quality gate is off unless `--gate` (it then re-checks the published rows; its
`decontamination` seconds are printed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import generate  # noqa: E402


def config(records: Path, eval_set: Path, decontaminate: bool, gate: bool, mode: str) -> dict:
    out = {
        "dataset": "decontaminate-bench",
        "sources": [{"name": "records", "path": str(records), "format": "parquet", "text_field": "text",
                     "id_field": "id"}],
        "clean": {"signals": []},
        "evaluate": {"enabled": gate, "label_noise": {"enabled": False}, "text_length": {"max": 1_000_000}},
    }
    if decontaminate:
        out["decontaminate"] = {"mode": mode, "eval_sets": [
            {"name": "bench", "path": str(eval_set), "format": "parquet", "text_field": "text", "id_field": "id"}]}
    return out


def run(cfg: dict, folder: Path, workers: int) -> tuple[dict, float, float]:
    """One `sftpipe run` in a child process: (manifest, wall seconds, 1-minute load before)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    load = os.getloadavg()[0]
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(path), "--data-dir", str(folder / "data"),
                          "--workers", str(workers)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"})
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:] + out.stderr[-3000:])
    version = folder / "data" / "versions" / cfg["dataset"]
    manifest = json.loads(sorted(version.glob("v*/manifest.json"))[-1].read_text())
    return manifest, wall, load


def stage_alone(run_folder: Path, eval_path: Path) -> None:
    """The decontaminate stage in this process (one worker) over the clean stage's output of a run: index
    build and scan, wall and CPU seconds."""
    import pipeline.cli.project  # noqa: F401 (installs the project)
    from pipeline.stage import StageContext
    from pipeline.stage_io import ParquetInput
    from schemas.kinds import KINDS
    from stages.decontaminate import DecontaminateStage

    clean = sorted((run_folder / "data" / "runs" / "decontaminate-bench" / "stages").glob("*-clean-*"))[-1]
    inputs = ParquetInput(sorted(clean.glob("part-*.parquet")), 10_000)
    section = DecontaminateStage.Config.model_validate({"eval_sets": [
        {"name": "bench", "path": str(eval_path), "format": "parquet", "text_field": "text", "id_field": "id"}]})
    ctx = StageContext(dataset="bench", config_dir=run_folder, work_dir=run_folder, batch_size=10_000, workers=1,
                       kind=KINDS["classification"])
    stage = DecontaminateStage(section, ctx)
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    stage.fingerprint_inputs()
    stage._index()
    t1, c1 = time.perf_counter(), time.process_time()
    removed = sum(out.rejected.num_rows for out in stage.run(inputs) if out.rejected is not None)
    t2, c2 = time.perf_counter(), time.process_time()
    print(f"\nthe stage alone, one process (load before {load:.1f}): eval files digested and index built "
          f"{t1 - t0:.2f} s wall / {c1 - c0:.2f} CPU-s; {inputs.num_rows:,} rows scanned {t2 - t1:.2f} s wall / "
          f"{c2 - c1:.2f} CPU-s ({inputs.num_rows / max(c2 - c1, 1e-9):,.0f} rows per CPU-second); {removed:,} removed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--mode", default="ngram", choices=["ngram", "near", "both"])
    parser.add_argument("--gate", action="store_true", help="run the quality gate (its re-check of the published rows)")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "pipeline_runs")
    args = parser.parse_args()
    eval_path, records_path = generate.ensure(args.records, args.items)
    print(f"records {records_path.name}, eval set {eval_path.name}, workers {args.workers}, mode {args.mode}, "
          f"gate {'on' if args.gate else 'off'}; {os.cpu_count()} CPUs")

    results = {}
    for with_stage in (False, True):
        name = "with" if with_stage else "without"
        manifest, wall, load = run(config(records_path, eval_path, with_stage, args.gate, args.mode),
                                   args.out / name, args.workers)
        results[name] = manifest
        stages = {s["name"]: s for s in manifest["stages"]}
        print(f"\n{name} the stage: wall {wall:.1f} s (load before {load:.1f})")
        for s in manifest["stages"]:
            print(f"  {s['name']:<14} {s['rows_in']:>8,} rows in  {s['seconds']:>7.2f} s  "
                  f"{(s['rows_per_second'] or 0):>10,.0f} rows/s  dropped {sum(s['dropped'].values()):,}")
        if with_stage and args.gate:
            seconds = manifest["evaluation"]["seconds"]
            print(f"  gate: decontamination re-check {seconds.get('decontamination')} s of {seconds.get('total')} s; "
                  f"published rows still matching: {manifest['evaluation']['decontamination']['contaminated_rows']}")
        if with_stage:
            block = manifest["decontamination"]
            print(f"  removed {block['rows_removed']:,} of {block['rows_checked']:,} rows checked; "
                  f"stage {stages['decontaminate']['seconds']:.2f} s")

    stage_alone(args.out / "with", eval_path)

    # What the stage removed, per planted kind.
    records = pq.read_table(records_path, columns=["id", "meta"]).to_pylist()
    kind_of = {r["id"]: json.loads(r["meta"])["kind"] for r in records}
    version = sorted((args.out / "with" / "data" / "versions" / "decontaminate-bench").glob("v*"))[-1]
    rejected = pq.read_table(version / "rejected.parquet", columns=["id", "stage", "reason"]).to_pylist()
    removed = {r["id"] for r in rejected if r["reason"] == "contaminated"}
    before = {r["id"] for r in rejected if r["stage"] in ("collect", "clean")}
    totals: dict[str, list[int]] = {}
    for row_id, kind in kind_of.items():
        t = totals.setdefault(kind, [0, 0, 0])
        t[0] += 1
        t[1] += row_id in before
        t[2] += row_id in removed
    print("\nplanted kind | rows | dropped by collect/clean | removed as contaminated")
    for kind, (n, dropped, caught) in sorted(totals.items()):
        print(f"  {kind:<12} {n:>8,} {dropped:>6,} {caught:>8,} ({caught / max(n - dropped, 1):.1%} of those clean kept)")


if __name__ == "__main__":
    main()
