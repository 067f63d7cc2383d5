"""The outcome benchmark's data sets: a clean training set and a fixed test set for each, from the shared data.

- **trec** — TREC question classification (Li & Roth 2002), 6 coarse labels. Training set: the 5,452
  questions of `train_5500.label`; test set: the official 500 questions of `TREC_10.label` (as stored in
  `shared/data/trec/data.parquet`, column `split`).
- **sms** — the UCI SMS Spam Collection (ham / spam). It has no official split, so a test set is held out
  first, fixed and seeded (`SMS_TEST_SEED`): messages are grouped by their normalized text (casefolded,
  punctuation and whitespace removed, so "Ok lar..." and "ok lar" are one group — the collection repeats
  403 messages), each group gets its majority label, and 1,000 groups are drawn per label in proportion
  to the label shares of the groups (stratified, by a seeded hash of the normalized text, so the draw does
  not depend on row order). The test set has one row per drawn group (its first message); every message
  of a drawn group is left out of the training set, so no test text — up to case and punctuation — is
  trained on. Training set: the remaining 4,4xx messages, duplicates and all, as published.

The shared data folder is found by walking up from this file to a `shared/data` folder, or named with
`OUTCOME_SHARED_DATA`.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def shared_data() -> Path:
    env = os.environ.get("OUTCOME_SHARED_DATA")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    raise SystemExit("shared/data not found above this file: set OUTCOME_SHARED_DATA")


def _table(texts, labels) -> pa.Table:
    return pa.table({"text": pa.array(list(texts), pa.string()), "label": pa.array(list(labels), pa.string())})


def load_trec() -> tuple[pa.Table, pa.Table]:
    df = pq.read_table(shared_data() / "trec" / "data.parquet").to_pandas()
    train, test = df[df["split"] == "train"], df[df["split"] == "test"]
    return _table(train["text"], train["label"]), _table(test["text"], test["label"])


SMS_TEST_SEED = 2024
SMS_TEST_GROUPS = 1000
_NOT_WORD = re.compile(r"[\W_]+")


def sms_key(text: str) -> str:
    return _NOT_WORD.sub(" ", text.casefold()).strip()


def load_sms() -> tuple[pa.Table, pa.Table]:
    df = pq.read_table(shared_data() / "sms_spam" / "data.parquet").to_pandas()
    df["key"] = [sms_key(t) for t in df["text"]]
    groups = df.groupby("key", sort=False)
    first = groups.head(1).set_index("key")
    # majority label per group (ties: the first message's label)
    majority = groups["label"].agg(lambda s: s.value_counts().sort_index(kind="stable").idxmax()
                                   if s.value_counts().max() > (s == s.iloc[0]).sum() else s.iloc[0])
    keys = majority.index.to_numpy()
    order = np.array([int.from_bytes(hashlib.blake2b(f"{SMS_TEST_SEED}\x1f{k}".encode(), digest_size=8).digest(), "big")
                      for k in keys], dtype=np.uint64)
    shares = majority.value_counts(normalize=True)
    chosen: list[str] = []
    for label in sorted(shares.index):
        members = np.flatnonzero(majority.to_numpy() == label)
        members = members[np.argsort(order[members], kind="stable")]
        chosen += keys[members[: round(SMS_TEST_GROUPS * shares[label])]].tolist()
    chosen_set = set(chosen)
    test_keys = [k for k in first.index if k in chosen_set]  # in file order
    test = _table(first.loc[test_keys, "text"], majority.loc[test_keys])
    train = df[~df["key"].isin(chosen_set)]
    return _table(train["text"], train["label"]), test


@dataclass(frozen=True)
class DataSet:
    name: str
    labels: list[str]
    load: Callable[[], tuple[pa.Table, pa.Table]]
    test_note: str


DATASETS = {
    "trec": DataSet("trec", ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"], load_trec,
                    "the official TREC_10 set (500 questions)"),
    "sms": DataSet("sms", ["ham", "spam"], load_sms,
                   f"{SMS_TEST_GROUPS} held-out messages (seed {SMS_TEST_SEED}, stratified, no text shared with training)"),
}


def foreign_sentences() -> list[str]:
    """Non-English Tatoeba sentences of the two short buckets (≤ 231 characters), as stored (lowercased,
    tokenized), in file order."""
    df = pq.read_table(shared_data() / "tatoeba_langid" / "test.parquet").to_pandas()
    df = df[(df["label"] != "eng") & df["bucket"].isin(["50", "300"])]
    return df["text"].tolist()
