"""Seeded decontamination benchmark data: an evaluation set and our records, from real text, with planted
contamination of every kind.

    python benchmarks/decontaminate/generate.py --records 100000 --items 10000
    # → benchmarks/decontaminate/data/eval_10000_s0_g1.parquet, records_100000_10000_s0_g1.parquet

Generator version 1 (`GENERATOR_VERSION`, in every cached file name).

Units: the dedupe benchmark's (benchmarks/dedupe/generate.py `load_units`: SMS and TREC texts whole,
Tatoeba rows split into sentences, duplicates after casefolding dropped; 50,365 units) plus the 999
Alpaca-style records of ../shared/data/alpaca_en_demo (instruction with its input, and the output, as two
units). Every unit is assigned to the **eval side** or the **record side** by a seeded coin, so the two
sides share no unit: an eval item and a record overlap only where a record was planted from an item, or
where two different real texts share an n-gram by themselves (the accidental overlaps the benchmark
reports).

Eval items: 1 unit (60 %) or 2–4 units (40 %) from the eval side's shuffled deck (without replacement,
reshuffled when exhausted, as the dedupe generator's decks): TREC questions and short SMS give the items
compared whole, Tatoeba sentence runs and Alpaca answers the long ones.

Records: originals as in the dedupe corpus (half 1–2 units, half 3–20 units, 10 % of those 21–50) from the
record side's deck. Then `--planted` of the records (default 2 %) are replaced by a planted row made from a
random eval item:

- verbatim: the item as it is;
- case_punct: the item with its case changed and punctuation removed, added or swapped;
- embedded: the item inside a longer prompt (record-side units before and after it);
- paraphrase: the item with word edits (a swap, a substitution or a deletion per ~8 words), as a whole
  record — the near mode's target; the n-gram mode finds it only where 13 words survive in a row;
- near_miss (negative): n − 1 = 12 consecutive tokens of an item of ≥ 14 tokens (normalized as the engine
  does: truth.py), inside record-side text — must not be flagged by the n-gram mode (it shares 12 words,
  not 13), unless a record-side neighbour happens to continue the item's text.

`meta` holds `kind` ("original" or the planted kind) and `item` (the item's index, −1 for originals).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import truth  # noqa: E402

_spec = importlib.util.spec_from_file_location("dedupe_generate", HERE.parent / "dedupe" / "generate.py")
dedupe_generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dedupe_generate)
SHARED = dedupe_generate.SHARED

GENERATOR_VERSION = 1
PLANTED_KINDS = {"verbatim": 0.25, "case_punct": 0.2, "embedded": 0.3, "paraphrase": 0.15, "near_miss": 0.1}
NEAR_MISS_WORDS = 12  # n - 1 for the default n = 13


def load_units() -> tuple[list[str], list[str]]:
    """(units, group): the dedupe benchmark's units and the Alpaca prompts and answers."""
    units, _, _, groups = dedupe_generate.load_units()
    records = json.loads((SHARED / "alpaca_en_demo" / "original" / "alpaca_en_demo.json").read_text())
    for r in records:
        prompt = r["instruction"] + ("\n" + r["input"] if r["input"] else "")
        units += [prompt, r["output"]]
        groups += ["alpaca_prompt", "alpaca_output"]
    return units, groups


def side_of(unit: str, seed: int) -> str:
    digest = hashlib.blake2b(f"{seed}:{' '.join(unit.casefold().split())}".encode(), digest_size=8).digest()
    return "eval" if digest[0] & 1 else "record"


def case_punct_variant(text: str, rng: random.Random) -> str:
    text = rng.choice([str.upper, str.lower, str.title, str.swapcase])(text)
    return dedupe_generate.punct_variant(text, rng)


def paraphrase(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    words = text.split()
    return " ".join(dedupe_generate.edit_words(words, max(1, len(words) // 8), rng, vocabulary))


def generate(n_records: int, n_items: int, planted: float, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    rng = random.Random(seed)
    units, groups = load_units()
    side = [side_of(u, seed) for u in units]
    eval_units = [i for i, s in enumerate(side) if s == "eval"]
    record_units = [i for i, s in enumerate(side) if s == "record"]
    eval_deck = dedupe_generate.Decks([groups[i] for i in eval_units], random.Random(seed + 1))
    record_deck = dedupe_generate.Decks([groups[i] for i in record_units], random.Random(seed + 2))

    def draw(deck, members: list[int], k: int) -> list[str]:
        return [units[members[p]] for p in deck.draw(deck.pick_group(), k)]

    items = [" ".join(draw(eval_deck, eval_units, 1 if rng.random() < 0.6 else rng.randint(2, 4)))
             for _ in range(n_items)]
    vocabulary = sorted({w for i in record_units for w in units[i].split()})
    long_items = [i for i, t in enumerate(items) if len(truth.analyse(t)[0]) >= NEAR_MISS_WORDS + 2]

    texts, metas = [], []
    kinds, weights = list(PLANTED_KINDS), list(PLANTED_KINDS.values())
    for _ in range(n_records):
        if rng.random() >= planted:
            texts.append(" ".join(draw(record_deck, record_units, dedupe_generate.original_units(rng))))
            metas.append({"kind": "original", "item": -1})
            continue
        kind = rng.choices(kinds, weights)[0]
        item = rng.choice(long_items) if kind == "near_miss" else rng.randrange(n_items)
        text = items[item]
        if kind == "case_punct":
            text = case_punct_variant(text, rng)
        elif kind == "embedded":
            text = " ".join(draw(record_deck, record_units, rng.randint(1, 3)) + [text]
                            + draw(record_deck, record_units, rng.randint(0, 3)))
        elif kind == "paraphrase":
            text = paraphrase(text, rng, vocabulary)
        elif kind == "near_miss":
            words = truth.analyse(text)[0]
            at = rng.randrange(len(words) - NEAR_MISS_WORDS + 1)
            text = " ".join(draw(record_deck, record_units, 1) + words[at: at + NEAR_MISS_WORDS]
                            + draw(record_deck, record_units, 1))
        texts.append(text)
        metas.append({"kind": kind, "item": item})

    eval_table = pa.table({"id": [f"item{i:06d}" for i in range(n_items)], "text": pa.array(items, pa.string())})
    records = pa.table({
        "id": [f"rec{i:07d}" for i in range(n_records)],
        "text": pa.array(texts, pa.string()),
        "meta": pa.array([json.dumps(m) for m in metas], pa.string()),
    })
    return eval_table, records


def paths(n_records: int, n_items: int, seed: int = 0) -> tuple[Path, Path]:
    data = HERE / "data"
    return (data / f"eval_{n_items}_s{seed}_g{GENERATOR_VERSION}.parquet",
            data / f"records_{n_records}_{n_items}_s{seed}_g{GENERATOR_VERSION}.parquet")


def ensure(n_records: int, n_items: int, planted: float = 0.02, seed: int = 0) -> tuple[Path, Path]:
    """The cached files, generated first if missing."""
    eval_path, records_path = paths(n_records, n_items, seed)
    if not (eval_path.exists() and records_path.exists()):
        eval_table, records = generate(n_records, n_items, planted, seed)
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(eval_table, eval_path)
        pq.write_table(records, records_path, row_group_size=50_000)
    return eval_path, records_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--planted", type=float, default=0.02, help="share of records planted from eval items")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    eval_path, records_path = ensure(args.records, args.items, args.planted, args.seed)
    records = pq.read_table(records_path)
    items = pq.read_table(eval_path)
    kinds: dict[str, int] = {}
    for m in records.column("meta").to_pylist():
        k = json.loads(m)["kind"]
        kinds[k] = kinds.get(k, 0) + 1
    words = np.array([len(t.split()) for t in records.column("text").to_pylist()])
    item_words = np.array([len(t.split()) for t in items.column("text").to_pylist()])
    print(f"{records_path.name}: {records.num_rows} records, words median {np.median(words):.0f} mean {words.mean():.0f}; "
          f"kinds {kinds}")
    print(f"{eval_path.name}: {items.num_rows} items, words median {np.median(item_words):.0f} mean {item_words.mean():.0f}; "
          f"< 8 words {(item_words < 8).mean():.1%}, 8-12 {((item_words >= 8) & (item_words < 13)).mean():.1%}")


if __name__ == "__main__":
    main()
