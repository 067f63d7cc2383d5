"""Readers, one per source format: each yields (line number, fields, error, raw text) per record.

Adding a format: a `_read_<format>(source, file, batch_size)` generator here, its name in `_READERS`, and
the format in `SourceConfig.format`.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.sources.config import SourceConfig
from pipeline.sources.files import csv_dialect, encoding_of, open_input, strip_nul

# A record as read from a source, before mapping: (line number, fields dict, None, None) or
# (line number, None, (error reason, details), raw text).
Record = tuple[int, dict[str, Any] | None, tuple[str, Any] | None, str | None]


def read_records(source: SourceConfig, file: Path | str, batch_size: int) -> Iterator[Record]:
    """Every record of one file: (line number, fields, None, None), or (line number, None, (reason,
    details), raw text) for a record that cannot be read."""
    try:
        yield from _READERS[source.format](source, file, batch_size)
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror or exc}") from None


def _read_jsonl(source, file, batch_size):
    # Split on "\n" only: JSON Lines ends records with \n (or \r\n); a lone \r is data.
    with open_input(file, "r", encoding=encoding_of(source), errors="surrogateescape", newline="\n") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if has_surrogates(line):
                yield i, None, ("undecodable", {"encoding": source.encoding}), safe(line.rstrip("\r\n"))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield i, None, ("invalid_json", {"error": exc.msg, "column": exc.colno}), line.rstrip("\r\n")
                continue
            if not isinstance(obj, dict):
                yield i, None, ("json_not_an_object", {"type": type(obj).__name__}), line.rstrip("\r\n")
                continue
            yield i, obj, None, None


def _read_json(source, file, batch_size):
    """A JSON array of objects, read whole (JSON Lines streams; a JSON array is parsed in one piece). The
    position in the array is the record's line number."""
    with open_input(file, "r", encoding=encoding_of(source), errors="surrogateescape") as fh:
        raw = fh.read()
    if has_surrogates(raw):
        yield 1, None, ("undecodable", {"encoding": source.encoding}), safe(raw[:2000])
        return
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        yield exc.lineno, None, ("invalid_json", {"error": exc.msg, "line": exc.lineno, "column": exc.colno}), raw[:2000]
        return
    if isinstance(data, dict):
        data = [data]  # one record
    if not isinstance(data, list):
        yield 1, None, ("json_not_an_array", {"type": type(data).__name__}), raw[:2000]
        return
    for i, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            yield i, None, ("json_not_an_object", {"type": type(obj).__name__}), json.dumps(obj, ensure_ascii=False)[:2000]
            continue
        yield i, obj, None, None


def _read_csv(source, file, batch_size):
    with open_input(file, "r", encoding=encoding_of(source), errors="surrogateescape", newline="") as fh:
        reader = csv.reader(strip_nul(fh), **csv_dialect(source))
        header = source.column_names
        if source.header:
            header = next(reader, None)
            if header is None:
                return
            repeated = sorted({h for h in header if header.count(h) > 1})
            if repeated:
                raise UserError(f"{file}: duplicate column names in the header: {', '.join(map(repr, repeated))}")
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [f"column_{j}" for j in range(len(row))]
            if len(row) != len(header):
                yield line, None, ("malformed_row", {"fields": len(row), "expected": len(header)}), safe("\t".join(row))
                continue
            yield line, dict(zip(header, row)), None, None



def _read_text(source, file, batch_size):
    with open_input(file, "r", encoding=encoding_of(source), errors="surrogateescape", newline=None) as fh:
        if source.unit == "file":
            yield 1, {source.text_field: fh.read()}, None, None
            return
        regex = re.compile(source.pattern) if source.pattern else None
        for i, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if regex is None:
                yield i, {source.text_field: line}, None, None
                continue
            m = regex.match(line)
            if m is None:
                yield i, None, ("pattern_mismatch", {"pattern": source.pattern}), safe(line)
                continue
            yield i, m.groupdict(), None, None


def _read_parquet(source, file, batch_size):
    line = 0
    with open_input(file, "rb") as fh:
        try:
            pf = pq.ParquetFile(fh)
        except pa.ArrowInvalid as exc:
            raise UserError(f"{file} is not a Parquet file: {exc}") from None
        for batch in pf.iter_batches(batch_size=batch_size):
            for rec in batch.to_pylist():
                line += 1
                yield line, rec, None, None


def _read_hf_disk(source, file, batch_size):
    import datasets

    ds = datasets.load_from_disk(str(file))
    parts = ds.items() if isinstance(ds, datasets.DatasetDict) else [(None, ds)]
    line = 0
    for split_name, part in parts:
        for batch in part.with_format("arrow").iter(batch_size=batch_size):
            for rec in batch.to_pylist():
                line += 1
                if split_name is not None:
                    rec.setdefault("split", split_name)
                yield line, rec, None, None


_READERS = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "tsv": _read_csv, "text": _read_text,
            "parquet": _read_parquet, "hf_disk": _read_hf_disk}


_SURROGATE = re.compile("[\udc80-\udcff]")


def has_surrogates(text: str) -> bool:
    """Bytes that did not decode (read with errors="surrogateescape")."""
    return _SURROGATE.search(text) is not None


def safe(text: str) -> str:
    """The text with undecodable bytes replaced, for a rejected row's `text`."""
    return text.encode("utf-8", "replace").decode("utf-8") if has_surrogates(text) else text
