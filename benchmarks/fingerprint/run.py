"""Content fingerprint: the version's every column (now) against `id, text, label, split` (before issue 12).

    python benchmarks/fingerprint/run.py --rows 1000000

Builds a version folder of ROWS rows by tiling a published sms-spam version (`--version`, default: runs
configs/sms_spam.yaml into benchmarks/fingerprint/out/data first), each copy with fresh ids, written in
65,536-row groups; then, in one process, side by side: the fingerprint as it was (four columns, pandas'
row hash) and as it is (`pipeline.fingerprint.content_fingerprint`: every column of every split and of
rejected.parquet). Each runs in a process of its own; prints seconds, the process's peak RSS, and the load
average before each.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import schemas  # noqa: E402
from pipeline.candidate import content_fingerprint_of  # noqa: E402


def fingerprint_before(folder: Path, batch_size: int = 65_536) -> str:
    """The content fingerprint as it was before issue 12 (commit 2437180): four columns of the splits and
    three of the rejected rows, pandas' row hash, sorted."""
    h = hashlib.sha256()
    for name, columns in [*((s, ["id", "text", "label", "split"]) for s in schemas.SPLITS),
                          ("rejected", ["id", "stage", "reason"])]:
        row_hashes = [np.zeros(0, np.uint64)]
        for batch in pq.ParquetFile(folder / f"{name}.parquet").iter_batches(batch_size=batch_size, columns=columns):
            row_hashes.append(pd.util.hash_pandas_object(batch.to_pandas(), index=False).to_numpy())
        hashes = np.sort(np.concatenate(row_hashes))
        h.update(f"{name}:{len(hashes)}\n".encode())
        h.update(hashes.tobytes())
    return h.hexdigest()


def tiled(version: Path, out: Path, rows: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    total = sum(pq.read_metadata(version / f"{s}.parquet").num_rows for s in schemas.SPLITS)
    for name in [*schemas.SPLITS, "rejected"]:
        table = pq.read_table(version / f"{name}.parquet")
        share = table.num_rows / total if name != "rejected" else 0.09
        want = max(1, int(rows * share))
        copies = []
        for k in range(-(-want // table.num_rows)):
            copy = table.set_column(0, "id", pc.binary_join_element_wise(table.column("id"), pa.scalar(f"-{k}"), ""))
            copies.append(copy)
        pq.write_table(pa.concat_tables(copies).slice(0, want), out / f"{name}.parquet", row_group_size=65_536,
                       compression="zstd")
    return out


MEASURES = {"before": ("before: id, text, label, split", fingerprint_before),
            "now": ("now: every column", content_fingerprint_of)}


def measure(which: str, folder: Path, rows: int) -> None:
    label, fn = MEASURES[which]
    load = os.getloadavg()
    t0 = time.perf_counter()
    fp = fn(folder)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {label:<32} {seconds:6.2f} s  {rows / seconds:>10,.0f} rows/s  peak RSS {peak:6.0f} MB"
          f"  load {load[0]:.2f}  {fp[:12]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--version", type=Path, default=None, help="a published version folder to tile")
    parser.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)  # one side, in a child
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.folder, args.rows)
        return
    out = HERE / "out"
    version = args.version
    if version is None:
        version = out / "data" / "versions" / "sms-spam" / "v1"
        if not version.is_dir():
            subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(HERE.parents[1] / "configs" / "sms_spam.yaml"),
                            "--data-dir", str(out / "data")], check=True)
    folder = tiled(version, out / f"tiled-{args.rows}", args.rows)
    rows = sum(pq.read_metadata(folder / f"{s}.parquet").num_rows for s in [*schemas.SPLITS, "rejected"])
    columns = len(pq.read_schema(folder / "train.parquet").names)
    print(f"{rows:,} rows ({columns} columns in the splits) in {folder}")
    for which in ("before", "now"):
        subprocess.run([sys.executable, __file__, "--measure", which, "--folder", str(folder), "--rows", str(rows)],
                       check=True)


if __name__ == "__main__":
    main()
