"""clean + dedupe throughput: instruction records (`generation`) against the classification path on the same
volume of text.

    python benchmarks/records/run.py --size 100000 [--workers 2]

Corpus (seeded): 100k prompt / completion records drawn from the real alpaca_en and alpaca_zh samples
(data/samples/), 70 % originals (an instruction with one to three answers joined, so lengths spread like
real SFT data), 15 % near copies (a word or character changed in the prompt), 10 % exact copies, 5 % with
a refusal sentence or a placeholder prepended. The classification run reads the very same records as one
text each (`prompt + "\\n\\n" + completion`: the same characters). Both run through the real local executor
from Parquet files (collect → clean → dedupe → split; the gate off), with their kind's default rules, and
the figures are the stage seconds the manifest records. Printed as a table; results in
benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

PREFIXES = ["As an AI language model, I cannot browse the internet. ", "Dear [Recipient],\n\n"]


def corpus(size: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    pool = []
    for lang in ("en", "zh"):
        for r in json.loads((REPO / "data" / "samples" / f"alpaca_{lang}" / f"alpaca_{lang}_demo.json").read_text()):
            prompt = "\n\n".join(p for p in (r["instruction"], r["input"]) if p.strip())
            pool.append((prompt, r["output"]))
    rows: list[dict] = []
    while len(rows) < size:
        roll = rng.random()
        if rows and roll < 0.10:
            rows.append(dict(rng.choice(rows)))
        elif rows and roll < 0.25:
            src = rng.choice(rows)
            p = src["prompt"]
            i = rng.randrange(len(p))
            rows.append({"prompt": p[:i] + rng.choice("aeiou的了") + p[i + 1:], "completion": src["completion"]})
        else:
            prompt, answer = rng.choice(pool)
            extra = [rng.choice(pool)[1] for _ in range(rng.choice([0, 0, 1, 2]))]
            completion = "\n\n".join([answer, *extra])
            if roll > 0.95:
                completion = rng.choice(PREFIXES) + completion
            rows.append({"prompt": f"{prompt} (#{len(rows)})" if rng.random() < 0.5 else prompt, "completion": completion})
    return rows


def run(kind: str, data: Path, work: Path, workers: int) -> dict:
    from pipeline.config import load_config
    from pipeline.executor import LocalExecutor

    if kind == "generation":
        source = {"name": "bench", "path": str(data), "format": "parquet", "record_format": "fields"}
    else:
        source = {"name": "bench", "path": str(data), "format": "parquet", "text_field": "text"}
    config = {"dataset": f"bench-{kind}", "kind": kind, "sources": [source], "evaluate": {"enabled": False},
              "clean": {"signals": []}}
    path = work / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    result = LocalExecutor(load_config(path), data_dir=work / kind, workers=workers).run()
    wall = time.perf_counter() - start
    stages = {s.name: s for s in result.stages}
    chars = sum(pq.read_table(data).column(c).to_pandas().str.len().sum() for c in pq.read_schema(data).names)
    return {"kind": kind, "rows": stages["collect"].rows_in, "characters": int(chars),
            "clean_s": stages["clean"].seconds, "dedupe_s": stages["dedupe"].seconds,
            "clean_rows_s": stages["clean"].rows_in / stages["clean"].seconds,
            "dedupe_rows_s": stages["dedupe"].rows_in / stages["dedupe"].seconds,
            "dropped_clean": sum(stages["clean"].dropped.values()), "dropped_dedupe": stages["dedupe"].dropped,
            "wall_s": wall}


def main() -> None:
    import pipeline.cli.project  # noqa: F401 (installs the project)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    work = HERE / "data"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = corpus(args.size, args.seed)
    pq.write_table(pa.Table.from_pylist(rows), work / "generation.parquet")
    pq.write_table(pa.table({"text": [r["prompt"] + "\n\n" + r["completion"] for r in rows]}), work / "classification.parquet")
    print(f"load average before: {os.getloadavg()}")
    results = [run(k, work / f"{k}.parquet", work, args.workers) for k in ("classification", "generation")]
    print("| path | rows | characters | clean s | clean rows/s | dedupe s | dedupe rows/s | removed by clean | removed by dedupe |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['kind']} | {r['rows']:,} | {r['characters']:,} | {r['clean_s']:.1f} | {r['clean_rows_s']:,.0f} | "
              f"{r['dedupe_s']:.1f} | {r['dedupe_rows_s']:,.0f} | {r['dropped_clean']:,} | {r['dropped_dedupe']} |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
