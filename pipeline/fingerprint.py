"""Fingerprints: of the code a stage runs, and of what a version holds.

*Code.* A stage's code fingerprint is the package version plus a hash of the source of its own module and
every project module it imports, directly or not (`pipeline.imports.closure`): editing the CLI, the report,
the README or another stage recomputes nothing upstream, while an edit to a signal in clean's module — or
anything clean imports — recomputes clean. (Code outside the project that a stage calls, such as a user's
signal, goes into the stage's `fingerprint_inputs`.)

*Content.* A version's content fingerprint covers every column of every split and of rejected.parquet,
independent of row order, batch size and file layout: each row is hashed from all its columns (nested
types included: lists and structs, as the chat kind's `messages` will be), the row hashes of a file are
sorted and hashed with its column names and types. Streamed, batch by batch: 8 bytes per row in memory.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import pipeline
from pipeline.imports import closure, module_file


@functools.lru_cache(maxsize=None)
def code_fingerprint(*modules: str) -> str:
    """`<package version>+<hash>` of the source of `modules` and everything they import in the project."""
    h = hashlib.sha256()
    for m in sorted({c for module in modules for c in closure(module)}):
        h.update(m.encode() + b"\0" + module_file(m).read_bytes() + b"\0")
    return f"{pipeline.__version__}+{h.hexdigest()[:12]}"


# -- content ------------------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer (a new array): every input bit spread over the whole word."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _name_hash(name: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little"))


def _validity(arr: pa.Array) -> np.ndarray:
    return ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def column_hashes(arr: pa.Array) -> np.ndarray:
    """One uint64 per value of `arr`, from the value alone (nulls hash alike; nested values recursively)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    n = len(arr)
    valid = _validity(arr)
    with np.errstate(over="ignore"):
        if pa.types.is_dictionary(t):
            return column_hashes(arr.dictionary_decode())
        if pa.types.is_struct(t):
            children = arr.flatten()
            h = np.zeros(n, np.uint64)
            for i, child in enumerate(children):
                h += _mix(column_hashes(child) ^ _name_hash(t.field(i).name))
        elif pa.types.is_map(t):  # as the list of (key, value) structs it is
            entries = pa.struct([pa.field("key", t.key_type), pa.field("value", t.item_type)])
            return column_hashes(arr.cast(pa.list_(entries)))
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            element = column_hashes(arr.flatten())
            position = np.arange(len(element), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            element = _mix(element + position.astype(np.uint64) * _GOLDEN)
            total = np.concatenate([[np.uint64(0)], np.cumsum(element, dtype=np.uint64)])
            ends = np.cumsum(lengths)
            h = total[ends] - total[ends - lengths]  # each list's elements, summed modulo 2⁶⁴
            h = _mix(h ^ lengths.astype(np.uint64))
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            h = pd.util.hash_array(np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object)).astype(np.uint64)
        elif pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_temporal(t):
            if pa.types.is_temporal(t):
                arr = arr.cast(pa.int64()) if t.bit_width == 64 else arr.cast(pa.int32())
            filled = pc.fill_null(arr, False if pa.types.is_boolean(arr.type) else 0)
            h = pd.util.hash_array(np.asarray(filled.to_numpy(zero_copy_only=False))).astype(np.uint64)
        elif pa.types.is_null(t):
            h = np.zeros(n, np.uint64)
        else:  # decimals and anything rarer: their text
            h = pd.util.hash_array(np.asarray(arr.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object))
            h = h.astype(np.uint64)
        return np.where(valid, _mix(h + _GOLDEN), np.uint64(0x5E1EC7ED))


def row_hashes(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """One uint64 per row from every column (name and value), independent of the columns' order."""
    h = np.zeros(batch.num_rows, np.uint64)
    with np.errstate(over="ignore"):
        for name, column in zip(batch.schema.names, batch.columns):
            h += _mix(column_hashes(column) ^ _name_hash(name))
    return h


def file_fingerprint(path: Path, batch_size: int = 65_536) -> tuple[int, bytes]:
    """(rows, digest) of one Parquet file: its columns (names and types, in name order) and its sorted
    row hashes."""
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    h = hashlib.sha256(";".join(f"{f.name}:{f.type}" for f in sorted(schema, key=lambda f: f.name)).encode())
    parts = [np.zeros(0, np.uint64)]
    for batch in pf.iter_batches(batch_size=batch_size):
        parts.append(row_hashes(batch))
    hashes = np.sort(np.concatenate(parts))
    h.update(hashes.tobytes())
    return len(hashes), h.digest()


def content_fingerprint(folder: Path, names: tuple[str, ...], batch_size: int = 65_536) -> str:
    """A hash of what a version holds: every column of each `<name>.parquet` in `folder`, independent of
    row order, batch size and file layout."""
    h = hashlib.sha256()
    for name in names:
        rows, digest = file_fingerprint(folder / f"{name}.parquet", batch_size)
        h.update(f"{name}:{rows}\n".encode())
        h.update(digest)
    return h.hexdigest()
