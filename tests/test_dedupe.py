"""The dedupe stage on small planted sets of real text, checked against brute-force Jaccard.

The reference shingling here is written independently of the stage: casefold, split on whitespace, word
5-grams as tuples (a text shorter than 5 words is one shingle of all its words).
"""
from __future__ import annotations

import functools
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

import schemas
from pipeline.near_duplicates import LocalNearDuplicates
from pipeline.stage import StageContext
from stages.dedupe import Config, DedupeStage

from .conftest import TableInput

THRESHOLD = 0.8


@functools.lru_cache(maxsize=None)
def shingles(text: str, n: int = 5) -> frozenset[tuple[str, ...]]:
    words = text.casefold().split()
    if len(words) < n:
        return frozenset([tuple(words)])
    return frozenset(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def true_jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def make_table(texts: list[str], labels: list[str | None] | None = None) -> pa.Table:
    n = len(texts)
    return pa.table({
        "id": [f"row{i:05d}" for i in range(n)],
        "source": ["planted"] * n,
        "source_file": ["planted.parquet"] * n,
        "source_line": pa.array(np.arange(1, n + 1), pa.int64()),
        "text": pa.array(texts, pa.string()),
        "label": pa.array(labels if labels is not None else [None] * n, pa.string()),
        "meta": pa.array(['{"k": %d}' % i for i in range(n)], pa.string()),
        # Signal columns from clean travel through untouched.
        "n_chars": pa.array([float(len(t)) for t in texts], pa.float64()),
        "lang": pa.array(["en"] * n, pa.string()),
    })


def run_stage(table: pa.Table, batch_size: int = 1000, workers: int = 1, **config):
    # The brute-force references below shingle punctuation as part of words and ignore labels: the
    # similarity engine's own contract. The defaults (punctuation dropped, labels kept apart) have their
    # own tests in test_dedupe_labels.py.
    config.setdefault("punctuation", "keep")
    config.setdefault("label_conflicts", "ignore")
    stage = DedupeStage(Config(**config), StageContext(dataset="t", config_dir=Path("."), work_dir=Path("."),
                                                       batch_size=batch_size, workers=workers))
    outputs = list(stage.run(TableInput(table, batch_size)))
    kept = [o.kept for o in outputs if o.kept is not None]
    rejected = [o.rejected for o in outputs if o.rejected is not None]
    for batch in kept:
        schemas.check(batch, schemas.DEDUPED, "dedupe")
    for batch in rejected:
        schemas.check(batch, schemas.REJECTED, "dedupe rejected")
    kept = pa.Table.from_batches(kept) if kept else None
    rejected = pa.Table.from_batches(rejected, schema=schemas.REJECTED)
    return kept, rejected, stage.stats


def removals(rejected: pa.Table) -> dict[str, dict]:
    return {row["id"]: {**json.loads(row["details"]), "reason": row["reason"]} for row in rejected.to_pylist()}


def edit(words: list[str], n_edits: int, rng: random.Random, vocabulary: list[str]) -> list[str]:
    words = list(words)
    for _ in range(n_edits):
        op = rng.choice(["delete", "insert", "substitute", "swap"])
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


@pytest.fixture(scope="module")
def real_texts(shared_data) -> list[str]:
    sms = pd.read_parquet(shared_data / "sms_spam" / "data.parquet")["text"].tolist()
    trec = pd.read_parquet(shared_data / "trec" / "data.parquet")["text"].tolist()
    tatoeba = pd.read_parquet(shared_data / "tatoeba_langid" / "test.parquet")["text"].tolist()
    rng = random.Random(7)
    return rng.sample(sms, 150) + rng.sample(trec, 60) + rng.sample(tatoeba, 60)


@pytest.fixture(scope="module")
def planted(real_texts) -> tuple[list[str], list[str | None]]:
    """Originals, word-edited variants at several edit rates, exact copies and case/space variants."""
    rng = random.Random(11)
    vocabulary = sorted({w for t in real_texts for w in t.split()})
    texts, labels = [], []
    for text in real_texts:
        words = text.split()
        texts.append(text)
        labels.append(rng.choice(["ham", "spam", None]))
        if len(words) < 8:
            continue
        for _ in range(rng.randint(1, 3)):
            texts.append(" ".join(edit(words, rng.randint(1, 4), rng, vocabulary)))
            labels.append(rng.choice(["ham", None]))
        if rng.random() < 0.2:
            texts.append(text)
            labels.append(None)
        if rng.random() < 0.2:
            texts.append("  " + text.upper().replace(" ", "   "))
            labels.append(None)
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order], [labels[i] for i in order]


def test_planted_near_duplicates_match_brute_force(planted):
    texts, labels = planted
    kept, rejected, stats = run_stage(make_table(texts, labels), batch_size=97)
    ids = [f"row{i:05d}" for i in range(len(texts))]
    by_id = dict(zip(ids, texts))
    kept_ids = set(kept.column("id").to_pylist())
    removed = removals(rejected)
    assert kept_ids.isdisjoint(removed) and len(kept_ids) + len(removed) == len(texts)

    pairs = {(a, b): true_jaccard(by_id[a], by_id[b]) for a, b in itertools.combinations(ids, 2)}
    similar = sum(j >= THRESHOLD for j in pairs.values())
    assert similar > 100, "the planted set should hold many pairs above the threshold"
    assert 0 < sum(THRESHOLD - 0.2 <= j < THRESHOLD for j in pairs.values()), "and some just below it"

    # Every removed row names a kept row it truly shares >= threshold with, and reports that Jaccard.
    for row_id, d in removed.items():
        assert d["duplicate_of"] in kept_ids
        j = true_jaccard(by_id[row_id], by_id[d["duplicate_of"]])
        assert j >= THRESHOLD
        assert d["jaccard"] == pytest.approx(j, abs=1e-4)
        assert d["reason"] == ("exact_duplicate" if j == 1.0 and d["jaccard"] == 1.0 and
                               " ".join(by_id[row_id].casefold().split()) ==
                               " ".join(by_id[d["duplicate_of"]].casefold().split()) else "near_duplicate")
    # No two kept rows are similar: every similar pair was resolved.
    kept_similar = [(a, b) for (a, b), j in pairs.items() if j >= THRESHOLD and a in kept_ids and b in kept_ids]
    assert kept_similar == []
    assert stats["near_removed"] > 50 and stats["exact_removed"] > 5
    assert stats["verified_pairs"] <= stats["candidate_pairs"]

    # Kept rows and their removed duplicates share a cluster; clusters are verified components.
    cluster = dict(zip(kept.column("id").to_pylist(), kept.column("cluster_id").to_pylist()))
    for row_id, d in removed.items():
        assert d["cluster_id"] == cluster[d["duplicate_of"]]


def test_passes_columns_through_untouched(planted):
    texts, labels = planted
    table = make_table(texts, labels)
    kept, _, _ = run_stage(table)
    assert kept.schema.names[: len(schemas.DEDUPED)] == schemas.DEDUPED.names
    assert kept.schema.field("cluster_id").type == pa.int64()
    original = table.to_pandas().set_index("id")
    out = kept.to_pandas().set_index("id")
    for column in ["source", "source_file", "source_line", "text", "label", "meta", "n_chars", "lang"]:
        pd.testing.assert_series_equal(out[column], original.loc[out.index, column], check_names=False)
    # Kept rows stay in stream order.
    assert kept.column("id").to_pylist() == sorted(kept.column("id").to_pylist())


def _long_text(real_texts, words: int = 60) -> list[str]:
    out: list[str] = []
    for text in real_texts:
        out += text.split()
        if len(out) >= words:
            return out[:words]
    raise AssertionError("not enough text")


def test_chain_keeps_the_far_end(real_texts):
    """A≈B, B≈C, A≉C: B goes for A, C stays (it is similar to no kept row)."""
    a = _long_text(real_texts)
    b = list(a)
    b[15] = "CHANGED1"
    c = list(b)
    c[45] = "CHANGED2"
    a, b, c = " ".join(a), " ".join(b), " ".join(c)
    assert true_jaccard(a, b) >= THRESHOLD and true_jaccard(b, c) >= THRESHOLD and true_jaccard(a, c) < THRESHOLD
    # B first in the stream and as long as the others; A wins by its label.
    kept, rejected, stats = run_stage(make_table([b, a, c], [None, "ham", None]))
    assert kept.column("id").to_pylist() == ["row00001", "row00002"]
    removed = removals(rejected)
    assert removed == {"row00000": {"duplicate_of": "row00001", "jaccard": pytest.approx(true_jaccard(a, b), abs=1e-4),
                                    "cluster_id": 0, "reason": "near_duplicate"}}
    assert kept.column("cluster_id").to_pylist() == [0, 0]
    assert stats["clusters"] == 1 and stats["verified_pairs"] == 2


def test_priority_labelled_then_longest_then_first(real_texts):
    base = _long_text(real_texts, 60)
    longer = base + ["extra"]
    relabelled = list(base)
    relabelled[20] = "other"
    texts = [
        " ".join(base), " ".join(longer), " ".join(relabelled),  # labelled (the last) wins
        " ".join(base[::-1]), " ".join(base[::-1] + ["more"]),  # the longer wins
        "a b c d e f g h", "A b  c d e f g h", "a b c d e f g h",  # exact: first seen (equal lengths) ...
    ]
    labels = [None, None, "spam", None, None, None, None, None]
    kept, rejected, _ = run_stage(make_table(texts, labels))
    assert kept.column("id").to_pylist() == ["row00002", "row00004", "row00006"]  # ... but "A b  c" is longer
    removed = removals(rejected)
    assert {k: (v["duplicate_of"], v["reason"]) for k, v in removed.items()} == {
        "row00000": ("row00002", "near_duplicate"),
        "row00001": ("row00002", "near_duplicate"),
        "row00003": ("row00004", "near_duplicate"),
        "row00005": ("row00006", "exact_duplicate"),
        "row00007": ("row00006", "exact_duplicate"),
    }
    texts[6] = "A b c d e f g h"  # now all three equally long: the first seen stays
    kept, rejected, _ = run_stage(make_table(texts, labels))
    assert "row00005" in kept.column("id").to_pylist()
    assert {k for k, v in removals(rejected).items() if v["reason"] == "exact_duplicate"} == {"row00006", "row00007"}


def test_exact_duplicates_only(real_texts):
    text = real_texts[0]
    variants = [text, text.upper(), "  " + text.replace(" ", " \t "), text + " !", text]
    kept, rejected, stats = run_stage(make_table(variants), near=False)
    removed = removals(rejected)
    assert set(removed) == {"row00000", "row00001", "row00004"}  # "text !" differs: kept without near
    assert all(d["reason"] == "exact_duplicate" and d["jaccard"] == 1.0 for d in removed.values())
    # The longest of the group (whitespace counts) represents it.
    assert {d["duplicate_of"] for d in removed.values()} == {"row00002"}
    assert stats["exact_removed"] == 3 and stats["near_removed"] == 0


def test_short_texts_are_one_shingle():
    texts = ["ok thanks", "OK thanks", "ok thanks a lot", "ok thanks lot", "ok"]
    kept, rejected, _ = run_stage(make_table(texts))
    assert set(removals(rejected)) == {"row00001"}
    assert kept.num_rows == 4


def test_label_conflicts_are_reported(real_texts):
    text = " ".join(_long_text(real_texts, 60))
    edited = text.split()
    edited[10] = "different"
    texts = [text, " ".join(edited), text.lower(), real_texts[1], real_texts[1]]
    labels = ["ham", "spam", "ham", "ham", "ham"]
    _, _, stats = run_stage(make_table(texts, labels))
    assert stats["label_conflict_clusters"] == 1
    (example,) = stats["label_conflict_examples"]
    assert {r["id"] for r in example["rows"]} == {"row00000", "row00001", "row00002"}
    assert {r["label"] for r in example["rows"]} == {"ham", "spam"}
    assert all(r["text"] for r in example["rows"])


@pytest.mark.parametrize("shingle", ["word", "char"])
def test_same_output_whatever_the_batch_size_or_workers(planted, shingle, monkeypatch):
    monkeypatch.setattr(LocalNearDuplicates, "PARALLEL_VERIFY_MIN_PAIRS", 0)  # verification spread over the workers too
    texts, labels = planted
    table = make_table(texts, labels)
    results = [run_stage(table, batch_size=bs, workers=w, shingle=shingle) for bs, w in [(10_000, 1), (33, 1), (128, 2)]]
    first_kept, first_rejected, first_stats = results[0]
    for kept, rejected, stats in results[1:]:
        assert kept.equals(first_kept)
        assert rejected.equals(first_rejected)
        assert stats == first_stats


def test_char_shingles_find_near_duplicates():
    texts = ["the quick brown fox jumps", "the quick brown fox jumped", "a completely different sentence"]
    kept, rejected, _ = run_stage(make_table(texts), shingle="char", ngram=3, threshold=0.7, lsh_threshold=0.5)
    assert removals(rejected) == {"row00000": {"duplicate_of": "row00001", "jaccard": pytest.approx(22 / 25, abs=1e-4),
                                               "cluster_id": 0, "reason": "near_duplicate"}}


def test_empty_input_and_config_errors():
    kept, rejected, stats = run_stage(make_table([]))
    assert kept is None and rejected.num_rows == 0 and stats["near_removed"] == 0
    with pytest.raises(ValidationError):
        Config(treshold=0.8)
    with pytest.raises(ValidationError):
        Config(threshold=0.7, lsh_threshold=0.8)
    assert Config().bands_rows()[0] * Config().bands_rows()[1] <= Config().num_perm


def test_copies_of_a_removed_row_name_the_kept_row(real_texts):
    """B is removed for A; B's exact copies name A too (not the removed B), with B's Jaccard to A."""
    a = _long_text(real_texts)
    b = list(a)
    b[30] = "CHANGED"
    a, b = " ".join(a), " ".join(b)
    kept, rejected, stats = run_stage(make_table([b, b.upper(), a, "  " + b], [None, None, "ham", None]))
    assert kept.column("id").to_pylist() == ["row00002"]
    j = pytest.approx(true_jaccard(a, b), abs=1e-4)
    assert removals(rejected) == {
        f"row0000{i}": {"duplicate_of": "row00002", "jaccard": j, "cluster_id": 0, "reason": "near_duplicate"}
        for i in (0, 1, 3)
    }
    assert stats["near_removed"] == 3 and stats["exact_removed"] == 0


def test_lsh_bands_are_datasketch_optimizers_choice():
    """pipeline.minhash.bands_rows integrates exactly (Gauss-Legendre) where datasketch calls scipy's quad:
    the same (bands, rows) for every threshold and permutation count tried."""
    from datasketch.lsh import _optimal_param

    from pipeline.minhash import bands_rows

    for num_perm in (16, 17, 64, 100, 128, 256):
        for threshold in (0.05, 0.1, 0.3, 0.33, 0.5, 0.55, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0):
            assert bands_rows(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5), (threshold, num_perm)


def test_connected_components_match_scipy():
    """The numpy components (each row labelled with its component's smallest row) partition rows as scipy's
    csgraph does, on random graphs, a long path in shuffled order, self loops and no edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    from stages.dedupe import connected_components

    rng = np.random.default_rng(0)
    path = rng.permutation(5000)
    cases = [(7, np.zeros(0, np.int64), np.zeros(0, np.int64)), (5, np.arange(5), np.arange(5)),
             (5000, path[:-1], path[1:])]
    cases += [(n, rng.integers(0, n, m), rng.integers(0, n, m)) for n, m in ((100, 30), (10_000, 6_000), (10_000, 20_000))]
    for n, left, right in cases:
        ours = connected_components(n, left, right)
        _, theirs = scipy_components(coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n)), directed=False)
        smallest = np.full(theirs.max() + 1, n)
        np.minimum.at(smallest, theirs, np.arange(n))
        assert np.array_equal(ours, smallest[theirs])


def test_verification_reads_the_spilled_sets_it_needs_from_one_file_or_pieces(tmp_path):
    """`verify_pairs` reads candidates' shingle sets back from the spill file with `pread` (a memory map put
    most of the file in each worker's memory): the Jaccard of every pair equals the one over the sets in
    memory — sets shared by many pairs, adjacent sets read as one run, a file cut into pieces (as the Ray
    executor writes them, a set never split) with runs that would cross a cut."""
    from pipeline.minhash import jaccard
    from pipeline.near_duplicates import verify_pairs

    rng = np.random.default_rng(7)
    sets = [np.unique(rng.integers(0, 400, rng.integers(1, 60))).astype(np.uint64) for _ in range(300)]
    flat = np.concatenate(sets)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
    left = np.concatenate([np.repeat(np.arange(0, 299), 2), rng.integers(0, 300, 2000)])  # each row twice, then random
    right = np.concatenate([np.tile([1, 2], 299) + np.repeat(np.arange(0, 299), 2), rng.integers(0, 300, 2000)])
    right = np.minimum(right, 299)
    keep = left < right
    left, right = left[keep], right[keep]
    expected = jaccard(flat, offsets, left, right, 0.0)

    whole = tmp_path / "sets.u64"
    flat.tofile(whole)
    assert np.array_equal(verify_pairs(str(whole), offsets, left, right, 0.0), expected)
    cuts = [0, int(offsets[97]), int(offsets[210])]  # pieces of whole sets
    pieces = []
    for k, (a, b) in enumerate(zip(cuts, cuts[1:] + [len(flat)])):
        path = tmp_path / f"piece{k}.u64"
        flat[a:b].tofile(path)
        pieces.append((str(path), a))
    assert np.array_equal(verify_pairs(pieces, offsets, left, right, 0.0), expected)
    # a threshold skips pairs whose sizes alone put them below it (NaN), as in memory
    assert np.array_equal(verify_pairs(pieces, offsets, left, right, 0.6), jaccard(flat, offsets, left, right, 0.6),
                          equal_nan=True)
