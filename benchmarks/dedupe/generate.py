"""Seeded dedupe benchmark corpus: real texts, short and long, with planted duplicates of every kind.

    python benchmarks/dedupe/generate.py --size 100000            # → benchmarks/dedupe/data/corpus_100000.parquet

Texts come from ../shared/data (SMS Spam Collection, TREC questions, Tatoeba sentences; see each folder's
PROVENANCE.md). Originals are short (one or two texts) or long (3–8 texts concatenated). About a third of
the rows are derived from an earlier row (itself possibly derived, so chains occur):

- near: word-level edits (delete / insert / substitute / swap); the number of edits is drawn so that the
  word-5-gram Jaccard to the base spreads roughly uniformly over 0.3–1.0;
- case, space: case-only or whitespace-only variants (identical after normalization);
- punct: punctuation-only variants (removed, added or changed);
- exact: byte-identical copies.

Rows are then shuffled, so a copy may come before its base. The columns are the pipeline's CLEANED schema;
`meta` records how a row was made (`kind`, `base` id, `edits`).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
# ../shared/data beside the repository; DEDUPE_SHARED_DATA points elsewhere (a copy on another machine).
SHARED = Path(os.environ.get("DEDUPE_SHARED_DATA", HERE.parents[2] / "shared" / "data"))

DERIVED_KINDS = {"near": 0.25, "case": 0.025, "space": 0.025, "punct": 0.03, "exact": 0.03}
PUNCT = ".,!?;:"


def load_pool() -> tuple[list[str], list[str], list[str]]:
    """(texts, source name, label) of every real text available."""
    texts, sources, labels = [], [], []
    for name, path in [("sms", "sms_spam/data.parquet"), ("trec", "trec/data.parquet"),
                       ("tatoeba", "tatoeba_langid/test.parquet")]:
        df = pd.read_parquet(SHARED / path)
        texts += df["text"].astype(str).tolist()
        sources += [name] * len(df)
        labels += df["label"].astype(str).tolist()
    return texts, sources, labels


def edit_words(words: list[str], n_edits: int, rng: random.Random, vocabulary: list[str]) -> list[str]:
    words = list(words)
    for _ in range(n_edits):
        op = rng.choice(("delete", "insert", "substitute", "swap"))
        i = rng.randrange(len(words))
        if op == "delete" and len(words) > 6:
            del words[i]
        elif op == "insert":
            words.insert(i, rng.choice(vocabulary))
        elif op == "swap" and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        else:
            words[i] = rng.choice(vocabulary)
    return words


def edits_for(n_words: int, target_jaccard: float) -> int:
    """Edits that bring word-5-gram Jaccard to about `target_jaccard`: one edit breaks ~5 shingles."""
    shingles = max(n_words - 4, 1)
    return max(1, round(shingles * (1 - target_jaccard) / (5 * (1 + target_jaccard))))


def punct_variant(text: str, rng: random.Random) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        return text.translate(str.maketrans("", "", string.punctuation))
    words = text.split(" ")
    if choice == 1:  # add punctuation after a few words
        for _ in range(max(1, len(words) // 10)):
            i = rng.randrange(len(words))
            words[i] += rng.choice(PUNCT)
        return " ".join(words)
    return text.translate(str.maketrans(".!?", "!?."))


def space_variant(text: str, rng: random.Random) -> str:
    sep = rng.choice(["  ", "\t", " \n ", "   "])
    return (" " if rng.random() < 0.5 else "") + sep.join(text.split()) + ("\n" if rng.random() < 0.5 else "")


def case_variant(text: str, rng: random.Random) -> str:
    return rng.choice([str.upper, str.lower, str.title, str.swapcase])(text)


def generate(size: int, seed: int = 0) -> pa.Table:
    rng = random.Random(seed)
    pool, pool_source, pool_label = load_pool()
    vocabulary = sorted({w for t in pool for w in t.split()})
    kinds = list(DERIVED_KINDS) + ["original"]
    weights = list(DERIVED_KINDS.values()) + [1 - sum(DERIVED_KINDS.values())]

    texts: list[str] = []
    sources: list[str] = []
    labels: list[str | None] = []
    metas: list[str] = []
    for i in range(size):
        kind = rng.choices(kinds, weights)[0] if i else "original"
        if kind == "original":
            if rng.random() < 0.6:  # short: one or two texts
                picks = [rng.randrange(len(pool)) for _ in range(1 if rng.random() < 0.3 else 2)]
            else:  # long: 3-8 texts
                picks = [rng.randrange(len(pool)) for _ in range(rng.randint(3, 8))]
            texts.append(" ".join(pool[p] for p in picks))
            sources.append(pool_source[picks[0]] if len(picks) == 1 else "mixed")
            labels.append(pool_label[picks[0]] if len(picks) == 1 else None)
            metas.append(json.dumps({"kind": "original", "parts": len(picks)}))
            continue
        base = rng.randrange(i)
        text = texts[base]
        meta = {"kind": kind, "base": base}
        words = text.split()
        if kind == "near" and len(words) < 6:
            kind = meta["kind"] = "case"
        if kind == "near":
            target = rng.uniform(0.3, 1.0)
            meta["edits"] = edits_for(len(words), target)
            text = " ".join(edit_words(words, meta["edits"], rng, vocabulary))
        elif kind == "case":
            text = case_variant(text, rng)
        elif kind == "space":
            text = space_variant(text, rng)
        elif kind == "punct":
            text = punct_variant(text, rng)
        texts.append(text)
        sources.append(sources[base])
        labels.append(labels[base] if rng.random() < 0.7 else None)
        metas.append(json.dumps(meta))

    order = np.random.default_rng(seed).permutation(size)
    new_position = np.empty(size, np.int64)
    new_position[order] = np.arange(size)
    ids = [f"doc{p:07d}" for p in range(size)]

    def fix_base(meta: str) -> str:
        m = json.loads(meta)
        if "base" in m:
            m["base"] = ids[new_position[m["base"]]]
        return json.dumps(m)

    return pa.table({
        "id": pa.array(ids, pa.string()),
        "source": pa.array([sources[k] for k in order], pa.string()),
        "source_file": pa.array(["benchmark"] * size, pa.string()),
        "source_line": pa.array(np.arange(1, size + 1), pa.int64()),
        "text": pa.array([texts[k] for k in order], pa.string()),
        "label": pa.array([labels[k] for k in order], pa.string()),
        "meta": pa.array([fix_base(metas[k]) for k in order], pa.string()),
    })


def corpus_path(size: int, seed: int = 0) -> Path:
    return HERE / "data" / f"corpus_{size}_s{seed}.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or corpus_path(args.size, args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = generate(args.size, args.seed)
    pq.write_table(table, out, row_group_size=50_000)
    words = pd.Series(table.column("text").to_pylist()).str.split().str.len()
    kinds = pd.Series([json.loads(m)["kind"] for m in table.column("meta").to_pylist()]).value_counts()
    print(f"wrote {out}: {table.num_rows} rows, words per row median {words.median():.0f}, mean {words.mean():.0f}, "
          f"max {words.max()}; kinds: {kinds.to_dict()}")


if __name__ == "__main__":
    main()
