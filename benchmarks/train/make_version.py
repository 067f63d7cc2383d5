"""Build a version folder like the pipeline publishes, from a `text,label` Parquet file (default: the SMS
Spam Collection), for training before the pipeline publishes one.

Rows are deduplicated on whitespace/case-normalised text (first kept, the others go to rejected.parquet), each
row's id is a hash of its text, and its split is a stable hash of the id (80/10/10), so the same input
always gives the same version. Used by the benchmark and the done-means run; the tests build their own.

    python benchmarks/train/make_version.py --out data --dataset sms_spam --version v1
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SPLITS = ("train", "validation", "test")


def split_of(row_id: str, fractions=(0.8, 0.1, 0.1)) -> str:
    bucket = int(hashlib.sha256(f"split:{row_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    acc = 0.0
    for name, frac in zip(SPLITS, fractions):
        acc += frac
        if bucket < acc:
            return name
    return SPLITS[-1]


def build(src: Path, out: Path, dataset: str, version: str, limit: int | None = None) -> Path:
    table = pq.read_table(src, columns=["text", "label"])
    texts, labels = table["text"].to_pylist(), table["label"].to_pylist()
    if limit:
        texts, labels = texts[:limit], labels[:limit]
    kept, rejected, seen = {s: [] for s in SPLITS}, [], {}
    for line, (text, label) in enumerate(zip(texts, labels), start=1):
        key = " ".join(text.lower().split())
        row_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        if row_id in seen:
            rejected.append({"id": f"{row_id}-{line}", "stage": "dedupe", "reason": "duplicate",
                             "details": json.dumps({"duplicate_of": row_id}), "text": text, "label": label})
            continue
        seen[row_id] = len(seen)
        split = split_of(row_id)
        kept[split].append({"id": row_id, "source": "sms", "source_file": src.name, "source_line": line,
                            "text": text, "label": label, "meta": None, "cluster_id": seen[row_id], "split": split})
    vdir = out / "versions" / dataset / version
    vdir.mkdir(parents=True, exist_ok=False)
    schema = pa.schema([("id", pa.string()), ("source", pa.string()), ("source_file", pa.string()),
                        ("source_line", pa.int64()), ("text", pa.string()), ("label", pa.string()),
                        ("meta", pa.string()), ("cluster_id", pa.int64()), ("split", pa.string())])
    digest = hashlib.sha256()
    splits_info = {}
    for split in SPLITS:
        rows = sorted(kept[split], key=lambda r: r["id"])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), vdir / f"{split}.parquet")
        for r in rows:
            digest.update(f"{r['id']}\t{r['text']}\t{r['label']}\t{split}\n".encode())
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["label"]] = counts.get(r["label"], 0) + 1
        splits_info[split] = {"rows": len(rows), "labels": dict(sorted(counts.items()))}
    pq.write_table(pa.Table.from_pylist(rejected) if rejected else pa.table({"id": pa.array([], pa.string())}),
                   vdir / "rejected.parquet")
    manifest = {"dataset": dataset, "version": version, "content_fingerprint": digest.hexdigest(),
                "labels": sorted({r["label"] for s in SPLITS for r in kept[s]}), "splits": splits_info,
                "built_by": "benchmarks/train/make_version.py", "source": str(src)}
    (vdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (vdir / "README.md").write_text(f"# {dataset} {version}\n\nBuilt from {src} by benchmarks/train/make_version.py.\n")
    return vdir


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path("/work/shared/data/sms_spam/data.parquet"))
    ap.add_argument("--out", type=Path, default=Path("data"), help="data dir (versions/ goes under it)")
    ap.add_argument("--dataset", default="sms_spam")
    ap.add_argument("--version", default="v1")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    vdir = build(a.src, a.out, a.dataset, a.version, a.limit)
    print(vdir, json.loads((vdir / "manifest.json").read_text())["splits"])
