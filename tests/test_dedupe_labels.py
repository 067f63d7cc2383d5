"""dedupe's defaults on labelled real text: which label a duplicated text keeps (`label_conflicts: hybrid`),
near copies with another label kept, and punctuation dropped from the compared text (short questions)."""
from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from .test_dedupe import make_table, removals, run_stage as run_raw


def run_stage(table: pa.Table, evidence: list[float | None] | None = None, **config):
    """The stage with its own defaults (test_dedupe's helper pins the old ones unless told)."""
    config.setdefault("punctuation", None)
    config.setdefault("label_conflicts", "hybrid")
    if evidence is not None:
        table = table.append_column("label_prob", pa.array(evidence, pa.float64()))
    return run_raw(table, **config)


@pytest.fixture(scope="module")
def trec(shared_data) -> pd.DataFrame:
    return pd.read_parquet(shared_data / "trec" / "data.parquet")


@pytest.fixture(scope="module")
def sms(shared_data) -> pd.DataFrame:
    return pd.read_parquet(shared_data / "sms_spam" / "data.parquet")


def test_exact_copies_keep_the_majority_label_and_say_why(trec):
    q = trec["text"].iloc[10]
    # The wrong label comes first and is the longest row (trailing spaces): today's rule would keep it.
    texts = [q + "   ", q, q, trec["text"].iloc[11]]
    labels = ["NUM", "DESC", "DESC", "HUM"]
    kept, rejected, stats = run_stage(make_table(texts, labels))
    assert kept.column("label").to_pylist() == ["DESC", "HUM"]
    removed = removals(rejected)
    lost = removed["row00000"]
    assert lost["reason"] == "exact_duplicate" and lost["duplicate_of"] in kept.column("id").to_pylist()
    assert lost["label_kept"] == "DESC" and lost["label_decided_by"].startswith("majority: 2 of 3")
    assert stats["labels_decided"] == {"majority": 1}


def test_a_tie_goes_to_the_label_the_evidence_finds_more_probable(trec):
    q = trec["text"].iloc[20]
    texts, labels = [q, q], ["ENTY", "LOC"]
    kept, rejected, _ = run_stage(make_table(texts, labels), evidence=[0.05, 0.93])
    assert kept.column("label").to_pylist() == ["LOC"]
    d = removals(rejected)["row00000"]
    assert d["label_kept"] == "LOC" and d["label_decided_by"].startswith("label evidence")
    # Evidence the other way round: the other label wins.
    kept, _, _ = run_stage(make_table(texts, labels), evidence=[0.93, 0.05])
    assert kept.column("label").to_pylist() == ["ENTY"]


def test_a_tie_without_evidence_is_a_label_conflict(trec):
    q = trec["text"].iloc[30]
    kept, rejected, stats = run_stage(make_table([q, q.upper(), trec["text"].iloc[31]], ["HUM", "LOC", "NUM"]))
    assert kept.column("id").to_pylist() == ["row00002"]
    removed = removals(rejected)
    assert {r["reason"] for r in removed.values()} == {"label_conflict"}
    assert removed["row00000"]["labels"] == {"HUM": 1, "LOC": 1} and stats["label_conflict_removed"] == 2
    # Labels ignored (the old rule): one of the two stays.
    kept, _, _ = run_raw(make_table([q, q.upper(), trec["text"].iloc[31]], ["HUM", "LOC", "NUM"]))
    assert kept.num_rows == 2


def test_a_near_copy_with_another_label_is_another_example(sms):
    long = [t for t in sms["text"] if 25 <= len(t.split()) <= 40][:20]
    texts, labels = [], []
    for t in long:
        words = t.split()
        words[-1] = "never"  # the last word changed: one word 5-gram of 20+ differs, Jaccard >= 0.9
        texts += [t, " ".join(words)]
        labels += ["ham", "spam"]
    kept, rejected, _ = run_stage(make_table(texts, labels))
    assert kept.num_rows == len(texts) and rejected.num_rows == 0
    kept, rejected, _ = run_stage(make_table(texts, labels), label_conflicts="ignore")
    assert rejected.num_rows >= len(long) // 2, "labels ignored: the near copies are removed"
    # Same label: still removed as a near duplicate, naming a kept row.
    kept, rejected, _ = run_stage(make_table(texts, ["ham"] * len(texts)))
    assert rejected.num_rows >= len(long) // 2
    assert set(r["duplicate_of"] for r in removals(rejected).values()) <= set(kept.column("id").to_pylist())


def test_short_questions_differing_in_punctuation_and_case_are_duplicates(trec):
    rng = random.Random(4)
    questions = [q for q in trec["text"] if q.endswith(" ?") and 6 <= len(q.split()) <= 12]
    questions = list(dict.fromkeys(questions))[:200]
    variants = [q[:-2].lower() + "?" if rng.random() < 0.5 else q.replace(" ,", ",")[:-2] + "!" for q in questions]
    labels = ["A"] * (2 * len(questions))
    table = make_table(questions + variants, labels)
    kept, rejected, stats = run_stage(table)
    found = set(removals(rejected)) | set(kept.column("id").to_pylist())
    removed = removals(rejected)
    assert len(removed) >= 0.97 * len(questions), "punctuation dropped: every variant is a duplicate"
    # Punctuation kept (the old default): most variants are missed.
    _, rejected_old, _ = run_stage(table, punctuation="keep")
    assert rejected_old.num_rows < 0.8 * len(questions)
    assert len(found) == table.num_rows


def test_texts_of_punctuation_only_stay_apart(sms):
    texts = [":)", ":-)", ":(", "...", "?", "Ok :)"]
    kept, rejected, _ = run_stage(make_table(texts, ["ham"] * len(texts)))
    assert kept.num_rows == len(texts)


def test_every_removal_names_a_kept_row_under_the_label_rule(sms, trec):
    """Planted copies with conflicting labels over real text: the accounting invariant holds."""
    rng = random.Random(9)
    base = rng.sample(list(trec["text"]), 150) + rng.sample(list(sms["text"]), 150)
    texts, labels, evidence = [], [], []
    for t in base:
        for _ in range(rng.choice([1, 1, 2, 3])):
            variant = t if rng.random() < 0.5 else t.upper()
            words = variant.split()
            if rng.random() < 0.3 and len(words) > 6:
                words[rng.randrange(len(words))] = "zzz"
            texts.append(" ".join(words))
            labels.append(rng.choice(["a", "b", "c", None]))
            evidence.append(rng.choice([rng.random(), None]))
    kept, rejected, stats = run_stage(make_table(texts, labels), evidence=evidence)
    kept_ids = set(kept.column("id").to_pylist())
    removed = removals(rejected)
    assert kept_ids.isdisjoint(removed) and len(kept_ids) + len(removed) == len(texts)
    by_id = dict(zip([f"row{i:05d}" for i in range(len(texts))], texts))
    for row_id, d in removed.items():
        if d["reason"] == "label_conflict":
            assert len(d["labels"]) > 1
            continue
        assert d["duplicate_of"] in kept_ids
    # No text is published with two labels.
    published = pd.DataFrame({"text": [" ".join(by_id[i].casefold().split()) for i in kept.column("id").to_pylist()],
                              "label": kept.column("label").to_pylist()}).dropna()
    assert (published.groupby("text")["label"].nunique() == 1).all()
    assert np.isfinite(stats["label_conflict_removed"])


def test_punctuation_is_dropped_in_short_texts_only(sms):
    from pipeline.minhash import SHORT_WORDS, drop_punctuation

    long = next(t for t in sms["text"] if len(t.split()) >= SHORT_WORDS and "," in t)
    short = "What is the capital of France?"
    out = drop_punctuation(pa.array([long, short, ":-)", None]), SHORT_WORDS).to_pylist()
    assert out[0] == long and out[1].split() == ["What", "is", "the", "capital", "of", "France"]
    assert out[2:] == [":-)", None]
    # A long text and its copy with other punctuation: compared as written (as every text was before).
    variant = long.replace(",", " ,")
    kept, _, _ = run_stage(make_table([long, variant], ["ham", "ham"]))
    kept_keep, _, _ = run_stage(make_table([long, variant], ["ham", "ham"]), punctuation="keep")
    assert kept.num_rows == kept_keep.num_rows
