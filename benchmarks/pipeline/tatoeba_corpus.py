"""A multilingual corpus of Tatoeba sentences for the whole-pipeline benchmark (issue #18's "230k-sentence
corpus"), built from the shared Tatoeba data (`../shared/data/tatoeba_langid`, 2,712 texts in 17 languages).

    python benchmarks/pipeline/tatoeba_corpus.py --rows 230000     # → benchmarks/pipeline/data/tatoeba_230000_0.jsonl

The shared texts are split into sentences exactly as the dedupe benchmark's generator does
(`benchmarks/dedupe/generate.py`, `load_units`: after `. ! ? …` followed by whitespace, in Greek also after
`;`; duplicates after casefolding dropped): 39,338 distinct sentences. Each row is 1 (60 %), 2 (30 %) or 3
(10 %) sentences of one language, drawn from that language's shuffled deck without replacement (reshuffled
when exhausted; a language is picked in proportion to its sentences), labelled with the language (ISO 639-3,
as in the source). 230,000 rows hold ~345,000 sentences, so a single-sentence row recurs ~3× on average:
the exact duplicates dedupe removes are part of the workload, as in a real crawl.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "dedupe"))
import generate  # noqa: E402

SENTENCES_PER_ROW = ((1, 0.6), (2, 0.3), (3, 0.1))
# The languages of the shared Tatoeba data, as fastText lid.176 names them (for a `lang` rule's `allowed`).
LANGUAGES = ["bg", "cs", "da", "de", "el", "en", "es", "fi", "fr", "hu", "it", "lt", "nl", "pl", "pt", "ro", "sv"]


def corpus_path(rows: int, seed: int) -> Path:
    return HERE / "data" / f"tatoeba_{rows}_{seed}_g{generate.GENERATOR_VERSION}.jsonl"


def build(rows: int, seed: int = 0) -> Path:
    path = corpus_path(rows, seed)
    if path.exists():
        return path
    units, sources, labels, groups = generate.load_units()
    keep = [i for i, s in enumerate(sources) if s == "tatoeba"]
    units, labels, groups = [units[i] for i in keep], [labels[i] for i in keep], [groups[i] for i in keep]
    rng = random.Random(seed)
    decks = generate.Decks(groups, rng)
    counts, weights = zip(*SENTENCES_PER_ROW)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    sentences = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            group = decks.pick_group()
            picks = decks.draw(group, rng.choices(counts, weights)[0])
            sentences += len(picks)
            fh.write(json.dumps({"text": " ".join(units[i] for i in picks), "label": labels[picks[0]]},
                                ensure_ascii=False) + "\n")
    tmp.rename(path)
    print(f"{path.name}: {rows:,} rows, {sentences:,} sentences drawn from {len(units):,} distinct ones "
          f"in {len(decks.names)} languages", file=sys.stderr)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=230_000)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    print(build(a.rows, a.seed))
