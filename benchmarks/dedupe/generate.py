"""Seeded dedupe benchmark corpus: real texts, short and long, with planted duplicates of every kind.

    python benchmarks/dedupe/generate.py --size 100000    # → benchmarks/dedupe/data/corpus_100000_s0_g2.parquet

Generator version 2 (`GENERATOR_VERSION`, part of every cached file name: corpus, truth, pipeline JSONL).

Units: the real texts of ../shared/data (SMS Spam Collection, TREC questions, Tatoeba; see each folder's
PROVENANCE.md), with each Tatoeba row — a multi-sentence blob of up to 700 words — split into sentences
(after . ! ? … and the CJK enders, in Greek also its question mark ";", followed by whitespace; a piece
without a letter or digit, such as the dots of a tokenized ellipsis, stays with the sentence before it).
SMS and TREC texts are units as they are. Units identical after casefolding and whitespace collapsing are kept once (the SMS collection
alone repeats 403 messages). 50,365 units (39,338 Tatoeba sentences, 5,159 SMS, 5,868 TREC), mean 12
words, each with its source and label.

Originals: a group is picked with probability proportional to its unit count (sms, trec, or one Tatoeba
language), and the original's units are drawn from that group's shuffled deck — without replacement,
reshuffled (seeded) when exhausted — so every unit is used about equally often and a unit is reused only
once its deck is exhausted. Half the originals are short: 1 unit (20 %) or 2 units (80 %); half long:
3–20 units (90 %) or 21–50 (10 %), a long tail. Words per row: median 40, mean 97 (100k and 1M). An
original keeps its group's source, and its units' label when they all share one (always for Tatoeba:
the language).

Version 1 (the corpus of benchmarks/README.md's runs 1–3) drew originals from the 14k texts *with*
replacement, whole Tatoeba blobs (mean 179 words) included: at 1M rows every text was reused 50–100
times, so "A x" and "A y" with A a long blob were accidental near duplicates (89 % of the pairs ≥ 0.8 at
100k came from different originals), and the corpus' duplicate pairs grew ~80× from 100k to 1M rows —
an artifact of the pool, not planted structure. What version 2 still has unplanted (truth.py prints it):
short originals that share a unit once the decks are exhausted — 1.8 % of the pairs ≥ 0.8 at 100k,
growing about quadratically with the size since the pool is fixed.

About a third of the rows are derived from an earlier row (itself possibly derived, so chains occur):

- near: word-level edits (delete / insert / substitute / swap); the number of edits is drawn so that the
  word-5-gram Jaccard to the base spreads roughly uniformly over 0.3–1.0;
- case, space: case-only or whitespace-only variants (identical after normalization);
- punct: punctuation-only variants (removed, added or changed);
- exact: byte-identical copies.

Rows are then shuffled, so a copy may come before its base. The columns are the pipeline's CLEANED schema;
`meta` records how a row was made (`kind`, `base` id, `edits`; for originals `parts` and `group`).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
# ../shared/data beside the repository; DEDUPE_SHARED_DATA points elsewhere (a copy on another machine).
SHARED = Path(os.environ.get("DEDUPE_SHARED_DATA", HERE.parents[2] / "shared" / "data"))

GENERATOR_VERSION = 2  # in every cached file name: a changed generator never reuses an old corpus
DERIVED_KINDS = {"near": 0.25, "case": 0.025, "space": 0.025, "punct": 0.03, "exact": 0.03}
PUNCT = ".,!?;:"


# A sentence ends after . ! ? … or a CJK ender followed by whitespace; in Greek also after ";", its
# question mark.
SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")
SENTENCE_END_GREEK = re.compile(r"(?<=[.!?…;。！？])\s+")
HAS_WORD = re.compile(r"\w")
SHORT_UNITS = ((1, 0.2), (2, 0.8))  # short originals: units, probability
SHORT_SHARE = 0.5


def load_pool() -> tuple[list[str], list[str], list[str]]:
    """(texts, source name, label) of every real text available, as stored."""
    texts, sources, labels = [], [], []
    for name, path in [("sms", "sms_spam/data.parquet"), ("trec", "trec/data.parquet"),
                       ("tatoeba", "tatoeba_langid/test.parquet")]:
        df = pd.read_parquet(SHARED / path)
        texts += df["text"].astype(str).tolist()
        sources += [name] * len(df)
        labels += df["label"].astype(str).tolist()
    return texts, sources, labels


def split_sentences(text: str, greek: bool = False) -> list[str]:
    """Sentences of a text; a piece without a letter or digit joins the sentence before it."""
    out: list[str] = []
    for piece in (SENTENCE_END_GREEK if greek else SENTENCE_END).split(text.strip()):
        if not piece:
            continue
        if out and not HAS_WORD.search(piece):
            out[-1] += " " + piece
        else:
            out.append(piece)
    return out


def load_units() -> tuple[list[str], list[str], list[str], list[str]]:
    """(units, source, label, group): SMS and TREC texts whole, Tatoeba rows split into sentences;
    duplicates after casefolding and whitespace collapsing dropped (first kept). Group: sms, trec, or
    tatoeba:<language>."""
    texts, sources, labels = load_pool()
    units, unit_source, unit_label, unit_group, seen = [], [], [], [], set()
    for text, source, label in zip(texts, sources, labels):
        for unit in (split_sentences(text, label == "ell") if source == "tatoeba" else [text.strip()]):
            key = " ".join(unit.casefold().split())
            if not key or key in seen:
                continue
            seen.add(key)
            units.append(unit)
            unit_source.append(source)
            unit_label.append(label)
            unit_group.append(f"tatoeba:{label}" if source == "tatoeba" else source)
    return units, unit_source, unit_label, unit_group


class Decks:
    """One shuffled deck of unit indices per group, drawn without replacement and reshuffled when
    exhausted; groups are picked in proportion to their size, so every unit is used about equally."""

    def __init__(self, groups: list[str], rng: random.Random):
        self.rng = rng
        members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        self.names = sorted(members)
        self.members = [members[g] for g in self.names]
        self.sizes = [len(m) for m in self.members]
        self.decks: list[list[int]] = [[] for _ in self.names]
        self.passes = [0] * len(self.names)
        self.draws = [0] * len(self.names)

    def pick_group(self) -> int:
        return self.rng.choices(range(len(self.names)), self.sizes)[0]

    def draw(self, group: int, n: int) -> list[int]:
        picks: list[int] = []
        while len(picks) < n:
            if not self.decks[group]:
                deck = list(self.members[group])
                self.rng.shuffle(deck)
                self.decks[group] = deck
                self.passes[group] += 1
            picks.append(self.decks[group].pop())
        self.draws[group] += n
        return picks


def original_units(rng: random.Random) -> int:
    if rng.random() < SHORT_SHARE:
        return 1 if rng.random() < SHORT_UNITS[0][1] else 2
    return rng.randint(3, 20) if rng.random() < 0.9 else rng.randint(21, 50)


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
    units, unit_source, unit_label, unit_group = load_units()
    decks = Decks(unit_group, random.Random(seed + 1))
    vocabulary = sorted({w for t in units for w in t.split()})
    kinds = list(DERIVED_KINDS) + ["original"]
    weights = list(DERIVED_KINDS.values()) + [1 - sum(DERIVED_KINDS.values())]

    texts: list[str] = []
    sources: list[str] = []
    labels: list[str | None] = []
    metas: list[str] = []
    seen_originals: set[str] = set()
    repeated_originals = 0  # originals identical (normalized) to an earlier one: accidental, from unit reuse
    for i in range(size):
        kind = rng.choices(kinds, weights)[0] if i else "original"
        if kind == "original":
            group = decks.pick_group()
            picks = decks.draw(group, original_units(rng))
            texts.append(" ".join(units[p] for p in picks))
            key = " ".join(texts[-1].casefold().split())
            repeated_originals += key in seen_originals
            seen_originals.add(key)
            sources.append(unit_source[picks[0]])
            common = {unit_label[p] for p in picks}
            labels.append(common.pop() if len(common) == 1 else None)
            metas.append(json.dumps({"kind": "original", "parts": len(picks), "group": decks.names[group]}))
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

    stats = {"generator_version": GENERATOR_VERSION, "units": len(units), "groups": len(decks.names),
             "units_drawn": sum(decks.draws), "deck_passes_max": max(decks.passes),
             "originals": len(seen_originals) + repeated_originals, "repeated_originals": repeated_originals}
    return pa.table({
        "id": pa.array(ids, pa.string()),
        "source": pa.array([sources[k] for k in order], pa.string()),
        "source_file": pa.array(["benchmark"] * size, pa.string()),
        "source_line": pa.array(np.arange(1, size + 1), pa.int64()),
        "text": pa.array([texts[k] for k in order], pa.string()),
        "label": pa.array([labels[k] for k in order], pa.string()),
        "meta": pa.array([fix_base(metas[k]) for k in order], pa.string()),
    }).replace_schema_metadata({"generator": json.dumps(stats)})


def corpus_path(size: int, seed: int = 0) -> Path:
    return HERE / "data" / f"corpus_{size}_s{seed}_g{GENERATOR_VERSION}.parquet"


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
    words = pd.Series(pc.list_value_length(pc.utf8_split_whitespace(table.column("text"))).to_numpy())
    kinds = pd.Series([json.loads(m)["kind"] for m in table.column("meta").to_pylist()]).value_counts()
    print(f"wrote {out}: {table.num_rows} rows, words per row median {words.median():.0f}, mean {words.mean():.0f}, "
          f"max {words.max()}; kinds: {kinds.to_dict()}; {table.schema.metadata[b'generator'].decode()}")


if __name__ == "__main__":
    main()
