"""split: ratios, stratification, determinism, and a row keeping its split across versions."""
from __future__ import annotations

import random

import pyarrow as pa

from pipeline.stage import StageContext
from stages.split import Config, SplitStage, allocate

from .conftest import TableInput


def table(ids, labels):
    return pa.table({"id": ids, "label": labels, "text": ids})


def split(t: pa.Table, previous=None, batch_size=1000, **config) -> dict[str, str]:
    stage = SplitStage(Config(**config), StageContext(dataset="t", config_dir=".", work_dir=".", previous_splits=previous))
    out = {}
    for o in stage.run(TableInput(t, batch_size)):
        out.update(zip(o.kept.column("id").to_pylist(), o.kept.column("split").to_pylist()))
    return out


def test_ratios_and_stratification():
    rng = random.Random(0)
    ids = [f"id{i}" for i in range(2000)]
    labels = ["spam" if rng.random() < 0.13 else "ham" for _ in ids]
    result = split(table(ids, labels))
    assert len(result) == 2000
    for lab in ("ham", "spam"):
        members = [i for i, l in zip(ids, labels) if l == lab]
        counts = {s: sum(result[i] == s for i in members) for s in ("train", "validation", "test")}
        for s, r in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
            assert abs(counts[s] - r * len(members)) <= 1, (lab, counts)


def test_deterministic_whatever_order_and_batching():
    ids = [f"id{i}" for i in range(500)]
    labels = [str(i % 3) for i in range(500)]
    a = split(table(ids, labels), batch_size=1000)
    b = split(table(ids[::-1], labels[::-1]), batch_size=7)
    assert a == b
    assert split(table(ids, labels), seed=1) != a


def test_rows_keep_their_split_across_versions():
    ids = [f"id{i}" for i in range(1000)]
    labels = [str(i % 2) for i in range(1000)]
    v1 = split(table(ids, labels))
    previous = pa.table({"id": list(v1), "split": list(v1.values())})
    # v2 drops 100 rows and adds 300 new ones.
    ids2 = ids[100:] + [f"new{i}" for i in range(300)]
    labels2 = labels[100:] + [str(i % 2) for i in range(300)]
    v2 = split(table(ids2, labels2), previous=previous)
    assert all(v2[i] == v1[i] for i in ids[100:])
    train_share = sum(s == "train" for s in v2.values()) / len(v2)
    assert abs(train_share - 0.8) < 0.01  # new rows are dealt so the whole stays near the ratios


def test_allocate_largest_remainder():
    assert allocate(10, [0.8, 0.1, 0.1], [0, 0, 0]) == [8, 1, 1]
    assert allocate(3, [0.8, 0.1, 0.1], [0, 0, 0]) == [3, 0, 0]
    assert allocate(10, [0.8, 0.1, 0.1], [80, 0, 0]) == [0, 5, 5]  # fill the splits that fell short
