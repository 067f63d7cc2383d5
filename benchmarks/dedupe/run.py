"""Dedupe benchmark: our stage against datasketch and the peers, on one corpus, side by side.

    bash benchmarks/dedupe/setup_peers.sh                  # once: peers into benchmarks/dedupe/.peers
    python benchmarks/dedupe/run.py --size 100000          # generates corpus + truth if missing, prints the table

Every implementation runs as its own subprocess (one after the other, same machine, same corpus), times
itself from reading the corpus to having its result, and reports its peak RSS (its process plus
children). "whole s" is what a user waits for: from launching the process (interpreter start and imports
included) to the result; "start-up s" is its part before the runner's main() began (interpreter start and
imports: the same for every implementation but what each imports). Scores are against the exact truth at the threshold (0.8): residual duplicate pairs among
kept rows, removals whose named kept row is not ≥ 0.8 similar, rows removed against the minimum needed,
and pair recall (both rows of a true pair in one cluster) by Jaccard band. A peer that is not installed
or fails is listed as such.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402
import score as scoring  # noqa: E402
import truth as truth_mod  # noqa: E402

MAIN_PYTHON = sys.executable
# The peers' interpreter: the virtualenv setup_peers.sh makes, unless DEDUPE_PEERS_PYTHON names another.
PEERS_PYTHON = os.environ.get("DEDUPE_PEERS_PYTHON", str(HERE / ".peers" / "bin" / "python"))

# name → (interpreter, runner, note on deviations from the shared shingling / threshold)
IMPLEMENTATIONS = {
    "ours (stages/dedupe.py)": (MAIN_PYTHON, "ours.py", "LSH bands tuned for 0.5, every candidate verified"),
    "datasketch plain": (MAIN_PYTHON, "datasketch_plain.py", "MinHash.update per shingle, MinHashLSH(0.8)"),
    "datasketch bulk": (MAIN_PYTHON, "datasketch_bulk.py", "MinHash.bulk, MinHashLSH(0.8)"),
    # rensa in the project's venv: pip install -e ".[bench]" (rensa >= 0.5 for the verified mode)
    "rensa dedup (verified)": (MAIN_PYTHON, "rensa_dedup.py", "RMinHashDeduplicator(0.8, use_lsh, 16 bands): candidates kept only at estimated Jaccard >= 0.8, first one stays"),
    "rensa lsh": (MAIN_PYTHON, "rensa_lsh.py", "RMinHash bulk, RMinHashLSH(0.8, 16 bands), union-find"),
    "datatrove": (PEERS_PYTHON, "datatrove_minhash.py", "lowercase + whitespace normalization, whitespace tokenizer; 16×8 buckets; no shingle for texts under 5 words"),
    "text-dedup": (PEERS_PYTHON, "textdedup_minhash.py", "its own tokenization; threshold 0.8"),
}


def run_measured(cmd: list[str], timeout: int) -> tuple[subprocess.CompletedProcess, float]:
    """Run `cmd`; also its CPU seconds (user + system) summed over the whole process tree — worker pools and
    fork servers included, which getrusage misses (they are not waited for by the process we start). Each
    process's last sample counts (every 0.05 s), so a process's last 0.05 s may be missed. On a machine
    shared with other jobs, CPU seconds move far less than wall seconds."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise subprocess.TimeoutExpired(cmd, timeout)
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            try:
                t = p.cpu_times()
                seen[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), sum(seen.values())


def run_one(name: str, corpus: Path, out: Path, workers: int, timeout: int) -> dict:
    python, runner, note = IMPLEMENTATIONS[name]
    if not Path(python).exists():
        return {"name": name, "error": "not installed (run setup_peers.sh)", "note": note}
    started = time.perf_counter()
    launched = time.time()
    try:
        proc, cpu = run_measured([python, str(HERE / "impls" / runner), str(corpus), str(out), "--workers", str(workers)],
                                 timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"timed out after {timeout}s", "note": note}
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"name": name, "error": f"failed: {tail[0][:200]}", "note": note}
    result = np.load(out)
    return {"name": name, "note": note, "seconds": float(result["seconds"]), "wall_with_startup": time.perf_counter() - started,
            "startup": float(result["main_epoch"]) - launched, "cpu": cpu, "whole": float(result["result_epoch"]) - launched,
            "peak_rss_mb": float(result["peak_rss_mb"]), "kept": result["kept"], "rep": result["rep"],
            "cluster": result["cluster"], "stats": json.loads(str(result["stats"])) if "stats" in result else None}


def table(rows: list[dict], n: int) -> str:
    bands = [f"{lo:.1f}-{min(hi, 1.0):.1f}" if lo < 1.0 else "1.0" for lo, hi in scoring.BANDS]
    head = (["implementation", "whole-process docs/s", "whole s", "start-up s", "CPU s (tree)", "docs/s", "s", "peak RSS MB", "removed (min)", "residual pairs ≥0.8",
             "unjustified removals"] + [f"recall {b}" for b in bands])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} |" + " |" * (len(head) - 2))
            continue
        speed = [r["name"], f"{n / r['whole']:,.0f}", f"{r['whole']:.2f}", f"{r['startup']:.2f}", f"{r['cpu']:.2f}", f"{n / r['seconds']:,.0f}", f"{r['seconds']:.1f}", f"{r['peak_rss_mb']:,.0f}"]
        if "score" not in r:
            lines.append("| " + " | ".join(speed + [f"{int((~r['kept']).sum()):,}"]) + " |" + " |" * (len(head) - 9))
            continue
        s = r["score"]
        lines.append("| " + " | ".join(speed + [
            f"{s['removed']:,} ({s['min_removed']:,})",
            f"{s['residual_pairs']:,} / {s['true_pairs']:,} ({100 * s['residual_share']:.2f} %)",
            f"{s['unjustified']:,} ({100 * s['unjustified_share']:.1f} %)",
        ] + [f"{100 * s['recall'][b]:.1f} %" for b in bands]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes for the implementations that use them")
    parser.add_argument("--only", nargs="*", help="substrings of implementation names to run")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per implementation")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the selected implementations this many times, alternating; the table shows the "
                             "first round, the repeats' whole-process seconds follow it")
    parser.add_argument("--no-score", action="store_true",
                        help="speed and memory only, no truth (the exact truth of 1M rows needs tens of GB)")
    args = parser.parse_args()

    corpus = generate.corpus_path(args.size, args.seed)
    if not corpus.exists():
        corpus.parent.mkdir(parents=True, exist_ok=True)
        generate.pq.write_table(generate.generate(args.size, args.seed), corpus, row_group_size=50_000)
    truth = None
    if not args.no_score:
        truth_file = truth_mod.truth_path(args.size, args.seed)
        if not truth_file.exists():
            truth_mod.build(args.size, args.seed, check=1000)
        truth = dict(np.load(truth_file))
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)

    names = [n for n in IMPLEMENTATIONS if not args.only or any(o.lower() in n.lower() for o in args.only)]
    rows = []
    for name in names:
        out = out_dir / f"{name.split()[0]}_{args.size}.npz"
        out.unlink(missing_ok=True)
        print(f"running {name} ...", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        row = run_one(name, corpus, out, args.workers, args.timeout)
        row["load_before"] = load
        if "error" not in row and truth is not None:
            row["score"] = scoring.score(truth, row["kept"], row["rep"], row["cluster"])
        rows.append(row)
        print("  " + (row.get("error") or f"{row['seconds']:.1f}s (whole {row['whole']:.1f}s, start-up {row['startup']:.2f}s, CPU {row['cpu']:.1f}s)"),
              file=sys.stderr, flush=True)

    repeats = {r["name"]: [r] for r in rows if "error" not in r}
    for round_ in range(1, args.repeat):
        for name in repeats:
            out = out_dir / f"{name.split()[0]}_{args.size}.npz"
            load = os.getloadavg()[0]
            row = run_one(name, corpus, out, args.workers, args.timeout)
            row["load_before"] = load
            repeats[name].append(row)
            print(f"  round {round_ + 1} {name}: " + (row.get("error") or f"whole {row['whole']:.2f}s, CPU {row['cpu']:.2f}s"),
                  file=sys.stderr, flush=True)

    print(f"\nDedupe benchmark: {args.size:,} rows (seed {args.seed}), threshold 0.8, word 5-grams, 128 permutations; "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, workers {args.workers}, corpus {corpus.name}\n")
    print(table(rows, args.size))
    print()
    for r in rows:
        print(f"- {r['name']} (1-min load average before: {r['load_before']:.2f}): {r['note']}"
              + (f"; stats {r['stats']}" if r.get("stats") else ""))
    if args.repeat > 1:
        print("\nRepeats (alternating), whole-process seconds / start-up seconds / CPU seconds (tree) / 1-min load before:")
        for name, runs in repeats.items():
            done = [r for r in runs if "error" not in r]
            wholes = sorted(r["whole"] for r in done)
            cpus = sorted(r["cpu"] for r in done)
            print(f"- {name}: " + ", ".join(f"{r['whole']:.2f} / {r['startup']:.2f} / {r['cpu']:.2f} / {r['load_before']:.1f}" for r in done)
                  + f"; median {wholes[len(wholes) // 2]:.2f} s = {args.size / wholes[len(wholes) // 2]:,.0f} docs/s, "
                  f"median CPU {cpus[len(cpus) // 2]:.2f} s")
    results = [{k: v for k, v in r.items() if k not in ("kept", "rep", "cluster")} for r in rows]
    (out_dir / f"results_{args.size}.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
