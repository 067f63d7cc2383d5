"""Where the dedupe stage spends its time: wall time per phase, and optionally a cProfile of the main process.

    python benchmarks/dedupe/profile_stage.py --size 100000 [--workers 2] [--cprofile 25]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))
import generate  # noqa: E402
from impls.ours import ParquetInput  # noqa: E402
from pipeline import near_duplicates  # noqa: E402
from pipeline.stage import StageContext  # noqa: E402
from stages import dedupe  # noqa: E402


def timed(owner, name: str, label: str, spent: dict) -> None:
    fn = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - t

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cprofile", type=int, default=0, help="print this many top functions (main process)")
    parser.add_argument("--lsh-threshold", type=float, default=dedupe.Config().lsh_threshold)
    args = parser.parse_args()
    spent: dict[str, float] = {}
    timed(near_duplicates.LocalNearDuplicates, "sketch", "pass 1: signatures (read, normalize, hash, MinHash)", spent)
    timed(dedupe.DedupeStage, "_labels_and_ids", "pass 1b: labels and ids (read)", spent)
    timed(near_duplicates, "candidate_pairs", "LSH candidate pairs", spent)
    timed(near_duplicates.LocalNearDuplicates, "_verify", "verification (exact Jaccard)", spent)
    timed(dedupe, "greedy_keep", "greedy keep", spent)
    timed(dedupe, "connected_components", "clusters", spent)
    stage = dedupe.DedupeStage(dedupe.Config(lsh_threshold=args.lsh_threshold), StageContext(dataset="profile", config_dir=Path("."),
                                                             work_dir=Path("."), workers=args.workers))
    inputs = ParquetInput(str(generate.corpus_path(args.size)), 10_000)
    profiler = cProfile.Profile() if args.cprofile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    rows = sum((o.kept.num_rows if o.kept is not None else 0) + (o.rejected.num_rows if o.rejected is not None else 0)
               for o in stage.run(inputs))
    if profiler:
        profiler.disable()
    total = time.perf_counter() - started
    for label, seconds in spent.items():
        print(f"{label:55s} {seconds:6.2f} s")
    print(f"{'total (incl. routing: second read, outputs)':55s} {total:6.2f} s   {rows / total:,.0f} docs/s")
    print({k: v for k, v in stage.stats.items() if k != "label_conflict_examples"})
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)


if __name__ == "__main__":
    main()
