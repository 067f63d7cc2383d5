"""Exact ground truth for a benchmark corpus: every pair of rows whose shingle-set Jaccard is ≥ 0.5.

    python benchmarks/dedupe/truth.py --size 100000 [--check 1500]

Shingling (the benchmark's, shared by every implementation): casefold, whitespace collapsed, word
5-grams; a text of fewer than 5 words is one shingle. Shingles are built as Python strings and hashed with
pandas' 64-bit SipHash — a different path from the dedupe stage's own hashing.

Rows with the same normalized text form a *group* (Jaccard 1); the truth is stored per group: `group`
(per row) and the group pairs (`u`, `v`, `j`) with Jaccard ≥ 0.5, found exactly by prefix filtering
(tokens ordered rarest first; two sets with Jaccard ≥ t share a token among their first
|s| − ⌈t·|s|⌉ + 1), with a size filter, then verified by exact intersection. `--check N` compares the
result with brute force over N groups (half of them chosen among groups that have truth pairs).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402
from impls.common import NGRAM, shingles  # noqa: E402

MIN_JACCARD = 0.5


def truth_path(size: int, seed: int = 0) -> Path:
    return HERE / "data" / f"truth_{size}_s{seed}_g{generate.GENERATOR_VERSION}.npz"


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(int(lengths.sum()))


def group_sets(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Group id per row (by normalized text, numbered by first appearance); per group its distinct shingle
    hashes (sorted, flattened) with offsets; and each group's first row."""
    normalized = pd.Series([" ".join(t.casefold().split()) for t in texts])
    group, uniques = pd.factorize(normalized)
    first_row = pd.Series(np.arange(len(texts))).groupby(group).min().tolist()
    parts, sizes = [], []
    chunk = 20_000
    for start in range(0, len(first_row), chunk):
        rows = first_row[start:start + chunk]
        strings, doc = [], []
        for k, row in enumerate(rows):
            sh = shingles(texts[row], NGRAM)
            strings += sh
            doc += [k] * len(sh)
        hashes = pd.util.hash_array(np.array(strings, dtype=object), categorize=False)
        doc = np.array(doc, dtype=np.int64)
        order = np.lexsort((hashes, doc))
        hashes, doc = hashes[order], doc[order]
        distinct = np.ones(len(hashes), dtype=bool)
        distinct[1:] = (hashes[1:] != hashes[:-1]) | (doc[1:] != doc[:-1])
        parts.append(hashes[distinct])
        sizes.append(np.bincount(doc[distinct], minlength=len(rows)))
    sizes = np.concatenate(sizes)
    return group.astype(np.int64), np.concatenate(parts), np.concatenate([[0], np.cumsum(sizes)]), first_row


def exact_pairs(hashes: np.ndarray, offsets: np.ndarray, threshold: float = MIN_JACCARD):
    """All pairs of sets with Jaccard ≥ threshold: prefix filtering + size filter + exact verification."""
    n = len(offsets) - 1
    sizes = np.diff(offsets)
    # Token ids ordered by document frequency (rarest first), ties by hash: exact, one id per distinct hash.
    uniq, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.lexsort((uniq, counts))] = np.arange(len(uniq))
    token = rank[inverse]
    doc = np.repeat(np.arange(n, dtype=np.int64), sizes)
    # Each set's tokens rarest first.
    order = np.argsort((doc << 32) | token, kind="stable")
    token = token[order]
    prefix = sizes - np.ceil(threshold * sizes - 1e-9).astype(np.int64) + 1
    in_prefix = (np.arange(len(token)) - np.repeat(offsets[:-1], sizes)) < np.repeat(prefix, sizes)
    p_token, p_doc = token[in_prefix], doc[in_prefix]
    by_token = np.lexsort((p_doc, p_token))
    p_token, p_doc = p_token[by_token], p_doc[by_token]
    boundary = np.flatnonzero(p_token[1:] != p_token[:-1]) + 1
    starts = np.concatenate([[0], boundary])
    ends = np.concatenate([boundary, [len(p_token)]])
    multi = ends - starts > 1
    starts, ends = starts[multi], ends[multi]
    group_sizes = ends - starts
    pos = _ranges(starts, group_sizes)
    later = np.repeat(ends, group_sizes) - pos - 1
    left = p_doc[np.repeat(pos, later)]
    right = p_doc[_ranges(pos + 1, later)]
    ok = np.minimum(sizes[left], sizes[right]) >= threshold * np.maximum(sizes[left], sizes[right]) - 1e-9
    codes = np.unique(left[ok] * n + right[ok])
    left, right = codes // n, codes % n
    # Verify: per pair, count shared token ids (sets sorted by id within each pair's keys).
    sorted_tokens = np.sort((doc << 32) | rank[inverse])  # by set, then token id
    ids = (sorted_tokens & 0xFFFFFFFF).astype(np.int64)
    jaccard = np.empty(len(left))
    chunk = 200_000
    for p0 in range(0, len(left), chunk):
        l, r = left[p0:p0 + chunk], right[p0:p0 + chunk]
        tag = np.arange(len(l), dtype=np.int64)
        la, lb = sizes[l], sizes[r]
        key_a = (np.repeat(tag, la) << 32) | ids[_ranges(offsets[l], la)]
        key_b = (np.repeat(tag, lb) << 32) | ids[_ranges(offsets[r], lb)]
        at = np.minimum(np.searchsorted(key_b, key_a), len(key_b) - 1)
        inter = np.bincount(np.repeat(tag, la)[key_b[at] == key_a], minlength=len(l))
        jaccard[p0:p0 + chunk] = inter / (la + lb - inter)
    keep = jaccard >= threshold - 1e-12
    return left[keep], right[keep], jaccard[keep]


def brute_force_check(texts: list[str], first_row: list[int], u, v, j, n_groups: int, seed: int = 0) -> int:
    """Compare the truth with all-pairs Python set Jaccard over a sample of groups; return pairs checked."""
    rng = random.Random(seed)
    with_pairs = sorted(set(u.tolist()) | set(v.tolist()))
    sample = set(rng.sample(with_pairs, min(n_groups // 2, len(with_pairs))))
    sample |= set(rng.sample(range(len(first_row)), min(n_groups - len(sample), len(first_row))))
    sample = sorted(sample)
    sets = {g: frozenset(shingles(texts[first_row[g]], NGRAM)) for g in sample}
    expected = {}
    for a, b in itertools.combinations(sample, 2):
        sa, sb = sets[a], sets[b]
        jab = len(sa & sb) / len(sa | sb)
        if jab >= MIN_JACCARD:
            expected[(a, b)] = jab
    in_sample = set(sample)
    found = {(int(a), int(b)): float(x) for a, b, x in zip(u, v, j) if a in in_sample and b in in_sample}
    assert found.keys() == expected.keys(), (
        f"truth differs from brute force: missing {sorted(expected.keys() - found.keys())[:5]}, "
        f"extra {sorted(found.keys() - expected.keys())[:5]}")
    assert all(math.isclose(found[k], expected[k], abs_tol=1e-9) for k in expected)
    return len(sample) * (len(sample) - 1) // 2


def accidental(corpus: Path, group: np.ndarray, u: np.ndarray, v: np.ndarray, j: np.ndarray) -> dict:
    """Duplicates the generator did not plant: group pairs whose rows descend (through `meta.base`) from
    no common original, and groups of identical normalized text holding rows of several originals."""
    metas = pq.read_table(corpus, columns=["id", "meta"]).to_pandas()
    index = {d: i for i, d in enumerate(metas["id"])}
    base = np.array([index.get(json.loads(m).get("base"), -1) for m in metas["meta"]])
    root = np.arange(len(base))
    has_base = base >= 0
    while has_base.any():  # follow the chains to their original, all rows at once
        root[has_base] = base[root[has_base]]
        has_base = base[root] >= 0
    roots = pd.DataFrame({"g": group, "r": root}).drop_duplicates()
    mixed = int((roots.groupby("g").size() > 1).sum())
    pairs = pd.DataFrame({"u": u, "v": v, "j": j, "k": np.arange(len(u))})
    shared = (pairs.merge(roots.rename(columns={"g": "u", "r": "ru"}), on="u")
              .merge(roots.rename(columns={"g": "v", "r": "rv"}), on="v"))
    planted = np.zeros(len(u), dtype=bool)
    planted[shared.loc[shared["ru"] == shared["rv"], "k"].to_numpy()] = True
    return {"groups_of_several_originals": mixed, "accidental_pairs_ge_0.5": int((~planted).sum()),
            "accidental_pairs_ge_0.8": int((~planted & (j >= 0.8)).sum())}


def build(size: int, seed: int = 0, check: int = 0) -> Path:
    corpus = generate.corpus_path(size, seed)
    if not corpus.exists():
        corpus.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(generate.generate(size, seed), corpus, row_group_size=50_000)
    texts = pq.read_table(corpus, columns=["text"]).column("text").to_pylist()
    started = time.perf_counter()
    group, hashes, offsets, first_row = group_sets(texts)
    u, v, j = exact_pairs(hashes, offsets)
    out = truth_path(size, seed)
    np.savez(out, group=group, u=u, v=v, j=j, first_row=np.array(first_row))
    print(f"truth for {size} rows: {len(first_row)} groups, {len(u)} group pairs with J >= {MIN_JACCARD} "
          f"({(j >= 0.8).sum()} at >= 0.8) in {time.perf_counter() - started:.1f}s -> {out}")
    print(f"not planted: {accidental(corpus, group, u, v, j)}")
    if check:
        pairs = brute_force_check(texts, first_row, u, v, j, check, seed)
        print(f"brute force agrees on {check} groups ({pairs} pairs)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", type=int, default=0, help="brute-force check over this many groups")
    args = parser.parse_args()
    build(args.size, args.seed, args.check)


if __name__ == "__main__":
    main()
