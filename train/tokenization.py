"""Batched tokenization with `datasets.map`, cached on disk between runs.

What a row becomes is the task's (`Task.encode_examples` / `Task.encode_inputs`); this module only runs that
function over a table and keys the cache by everything that changes its result: the version's content and
split, the rows taken, the tokenizer, the task and its encoding settings. A second run on the same version with
the same base model reads the cached Arrow file instead of tokenizing again.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import pyarrow as pa

from train.data import PublishedVersion


def tokenizer_identity(tokenizer, model_path: str) -> str:
    """The tokenizer's name, class, vocabulary size and, for a local folder, its files' sizes and times (a
    retrained tokenizer saved to the same folder must not reuse old tokens)."""
    path = Path(model_path)
    stamp = ""
    if path.is_dir():
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spm.model", "sentencepiece.bpe.model"):
            f = path / name
            if f.is_file():
                stamp += f"{name}:{f.stat().st_size}:{int(f.stat().st_mtime)};"
    return f"{model_path}|{type(tokenizer).__name__}|{len(tokenizer)}|{stamp}"


def split_identity(version: PublishedVersion, split: str, rows: int) -> str:
    """A split's content: the version's content fingerprint, or (a version without one) its file's place, size
    and time; plus how many rows are taken (max_train_samples / max_eval_samples)."""
    if version.fingerprint:
        return f"{version.fingerprint}|{split}|{rows}"
    f = version.split_file(split)
    return f"{f.resolve()}|{f.stat().st_size}|{int(f.stat().st_mtime)}|{rows}"


def tokenize(table: pa.Table, encode: Callable[[dict], dict], *, key: list, cache_dir: Path | None):
    """A `datasets.Dataset` holding only what `encode` returns for each batch of `table`'s columns (the input
    columns are dropped). With `cache_dir`, the result is kept in `<cache_dir>/<hash of key>.arrow` and reused."""
    import datasets  # noqa: PLC0415 - heavy; only a run that tokenizes pays for it

    ds = datasets.Dataset(table)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    kwargs = {}
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        kwargs = {"cache_file_name": str(cache_dir / f"{digest}.arrow"), "load_from_cache_file": True}
    return ds.map(
        encode,
        batched=True,
        batch_size=1000,
        remove_columns=ds.column_names,
        new_fingerprint=digest,
        desc="tokenize",
        **kwargs,
    )
