"""Whole-pipeline benchmark: collect → clean → dedupe → split → publish on N rows of mixed real text.

    python benchmarks/pipeline/run.py --size 100000                        # without language identification
    python benchmarks/pipeline/run.py --size 1000000 --lang off rule       # without, then with a `lang` rule
    python benchmarks/pipeline/run.py --corpus tatoeba --size 230000 --lang default off rule  # + --gate default: the default config
    python benchmarks/pipeline/run.py --size 1000000 --gate no-label-noise   # with the quality gate

The corpus is the dedupe benchmark's (real texts from ../shared/data, short and long, with planted
duplicates), written as JSONL so the run starts from raw files. `sftpipe run` runs in a child process;
we report its wall time, the peak RSS of the largest single process (getrusage), the peak of the whole
process tree's summed RSS (main process plus its workers, sampled every 0.2 s), the load average before
the run, and the per-stage throughput the run records in its manifest. The quality gate is off by default
(issue #6 measures the ETL); `--gate default` runs the default gate, `--gate no-label-noise` the default gate
without the label-noise model (a different budget, issue #21's), and the gate's seconds per check are
printed from the manifest. With `--gate default` and `--lang default` the config is what a new user writes:
sources and nothing else.
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
sys.path.insert(0, str(HERE))

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


def run_once(args, lang: str) -> dict:
    """One `sftpipe run` in a child process; prints its figures and returns them. `lang`: off | signal
    (`clean.signals: [lang]`, kept as a column) | rule (a `lang` rule allowing every language of the corpus,
    so that it costs what identification costs and drops what the identifier cannot place) | default (the
    config a new user writes)."""
    if args.corpus == "tatoeba":
        import tatoeba_corpus

        source, allowed = tatoeba_corpus.build(args.size, args.seed), tatoeba_corpus.LANGUAGES
    else:
        source, allowed = corpus_jsonl(args.size, args.seed), MIXED_LANGUAGES
    out = HERE / "out" / f"{args.corpus}-{args.size}-lang-{lang}{'' if args.gate == 'off' else '-gate-' + args.gate}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = {"dataset": "bench",
              "sources": [{"name": "corpus", "path": str(source), "format": "jsonl", "label_field": "label"}]}
    if lang == "off":  # the default `lang: {allowed: [en]}` rule switched off
        config["clean"] = {"filters": {"lang": None}}
    elif lang == "signal":
        config["clean"] = {"filters": {"lang": None}, "signals": ["lang"]}
    elif lang == "rule":
        config["clean"] = {"filters": {"lang": {"allowed": allowed}}}
    # "default": no clean section, what a new config gets (`lang: {allowed: auto, plausible: 0.01}`: the languages of a sample)
    config["evaluate"] = {"off": {"enabled": False}, "default": {},
                          "no-label-noise": {"label_noise": {"enabled": False}}}[args.gate]
    if not config["evaluate"]:
        del config["evaluate"]
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    # The console script, as a user runs it (its worker processes start differently from `python -m`'s).
    sftpipe = Path(sys.executable).parent / "sftpipe"
    cmd = ([str(sftpipe)] if sftpipe.exists() else [sys.executable, "-m", "pipeline.cli"]) + ["run", str(out / "config.yaml"), "--data-dir", str(out / "data")]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    if args.batch_size is not None:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.gate != "off":  # the mixed corpus mixes 25 labels unevenly: class shares fail; publish anyway, marked
        cmd.append("--allow-failed-gates")
    load = os.getloadavg()
    t0 = time.perf_counter()
    # This checkout's code first: the console script alone imports whichever checkout is installed editable.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stop, tree = tree_rss_sampler(proc.pid, out / "data" / "runs" / "bench" / "stages")
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    if proc.returncode != 0:
        sys.exit(f"run failed:\n{stdout}\n{stderr}")
    # ru_maxrss of the children waited for so far: the largest single process of any run before this one too
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    manifest = json.loads((out / "data" / "versions" / "bench" / "v1" / "manifest.json").read_text())

    print(f"\n== {args.corpus} corpus, lang {lang}: rows {args.size:,}  source: {source.name} "
          f"({source.stat().st_size / 1e6:.0f} MB)  gate: {args.gate}  workers: "
          f"{args.workers or 'default'}  load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}  "
          f"code_version: {manifest.get('code_version')}")
    print(f"wall: {wall:.1f} s (process start and imports included)  "
          f"end-to-end: {args.size / wall:,.0f} rows/s  peak RSS: largest process so far {peak_mb:,.0f} MB, "
          f"whole process tree {tree['tree_mb']:,.0f} MB (sampled)")
    print(f"{'stage':<14}{'rows in':>12}{'rows out':>12}{'seconds':>10}{'rows/s':>12}")
    for st in manifest["stages"]:
        print(f"{st['name']:<14}{st['rows_in']:>12,}{st['rows_out']:>12,}{st['seconds']:>10.1f}"
              f"{st['rows_per_second'] or 0:>12,.0f}")
    print("peak RSS by phase (sampled every 0.2 s; 'after X' is the time after stage X, e.g. publishing): "
          + ", ".join(f"{name} {main:,.0f} / {whole:,.0f} MB" for name, (main, whole) in tree["phases"].items())
          + "  (main process / whole tree)")
    if manifest.get("evaluation"):
        seconds = manifest["evaluation"].get("seconds") or {}
        print(f"gate ({args.gate}): {manifest['evaluation'].get('status')}, seconds: "
              + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    published = sum(v["rows"] for v in manifest["splits"].values())
    print(f"published {published:,} rows, rejected {manifest['rejected']['rows']:,}", flush=True)
    return {"wall": wall, "tree_mb": tree["tree_mb"], "load": load[0],
            "stages": {st["name"]: st["seconds"] for st in manifest["stages"]}}


# The languages of the mixed corpus (SMS and TREC in English, Tatoeba in 17 languages), as fastText names them.
MIXED_LANGUAGES = ["bg", "cs", "da", "de", "el", "en", "es", "fi", "fr", "hu", "it", "lt", "nl", "pl", "pt", "ro", "sv"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", choices=["mixed", "tatoeba"], default="mixed",
                        help="mixed: the dedupe benchmark's corpus (SMS, TREC, Tatoeba; planted duplicates); "
                             "tatoeba: Tatoeba sentences in 17 languages (tatoeba_corpus.py)")
    parser.add_argument("--lang", choices=["off", "signal", "rule", "default"], nargs="+", default=["off"],
                        help="language identification: off (the default lang rule switched off), signal "
                             "(clean.signals: [lang], no rule), rule (a lang rule allowing the corpus' languages: "
                             "every row identified, none dropped for its language) or default (the default "
                             "config's rule, `allowed: auto`: the languages of a sample); several: run each, one after the other")
    parser.add_argument("--gate", choices=["off", "default", "no-label-noise"], default="off",
                        help="the quality gate: off (the ETL alone), the default gate, or it without label noise")
    parser.add_argument("--workers", type=int, default=None, help="default: sftpipe's (all cores)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: sftpipe's")
    args = parser.parse_args()

    results = {lang: run_once(args, lang) for lang in args.lang}
    if "off" in results and len(results) > 1:
        off = results["off"]
        for lang, r in results.items():
            if lang != "off":
                print(f"\nlang {lang} / off: wall {r['wall'] / off['wall']:.2f}x ({r['wall']:.1f} s / {off['wall']:.1f} s); "
                      f"clean {r['stages'].get('clean', 0) / max(off['stages'].get('clean', 0), 1e-9):.2f}x; "
                      f"peak RSS (tree) {r['tree_mb']:,.0f} / {off['tree_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
