"""Build a `generation` version folder like the pipeline publishes, from an Alpaca JSON file (default: the shipped
alpaca_en_demo sample), for a machine where the pipeline's stages are not installed (the GPU box).

Each record becomes prompt (instruction, a blank line, input), completion (output) and system (null); exact
duplicate prompts are dropped; a row's id is a hash of its prompt and its split a stable hash of the id
(80/10/10), so the same file always gives the same version. Cleaning rules are not applied: for a benchmark of
training speed that does not matter; `sftpipe run configs/alpaca_en.yaml` publishes the cleaned version.

    python benchmarks/train/make_gen_version.py --out /tmp/d --dataset alpaca_en --version v1
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from make_version import SPLITS, split_of  # noqa: E402 - benchmarks/train is the script's folder

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SRC = REPO / "data" / "samples" / "alpaca_en" / "alpaca_en_demo.json"


def build(src: Path, out: Path, dataset: str, version: str) -> Path:
    records = json.loads(src.read_text(encoding="utf-8"))
    kept, seen = {s: [] for s in SPLITS}, set()
    for line, r in enumerate(records, start=1):
        prompt = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        row_id = hashlib.sha256(prompt.encode()).hexdigest()[:16]
        if row_id in seen or not r.get("output"):
            continue
        seen.add(row_id)
        split = split_of(row_id)
        kept[split].append({"id": row_id, "source": "alpaca", "source_file": src.name, "source_line": line,
                            "prompt": prompt, "completion": r["output"], "system": None, "split": split})
    vdir = out / "versions" / dataset / version
    vdir.mkdir(parents=True, exist_ok=False)
    schema = pa.schema([("id", pa.string()), ("source", pa.string()), ("source_file", pa.string()),
                        ("source_line", pa.int64()), ("prompt", pa.string()), ("completion", pa.string()),
                        ("system", pa.string()), ("split", pa.string())])
    digest = hashlib.sha256()
    for split in SPLITS:
        rows = sorted(kept[split], key=lambda r: r["id"])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), vdir / f"{split}.parquet")
        for r in rows:
            digest.update(json.dumps(r, sort_keys=True).encode())
    manifest = {"dataset": dataset, "version": version, "kind": "generation", "content_fingerprint": digest.hexdigest(),
                "splits": {s: {"rows": len(kept[s])} for s in SPLITS}, "source": str(src)}
    (vdir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "reason": pa.array([], pa.string())}),
                   vdir / "rejected.parquet")
    return vdir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dataset", default="alpaca_en")
    ap.add_argument("--version", default="v1")
    args = ap.parse_args()
    vdir = build(args.src, args.out, args.dataset, args.version)
    print(vdir, json.loads((vdir / "manifest.json").read_text())["splits"])


if __name__ == "__main__":
    main()
