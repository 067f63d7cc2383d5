"""Readers, one per source format: each yields (line number, fields, error, raw text) per record.

`read_records` opens the file (decompressing it when its first bytes say it is compressed: see
`streams`), runs the format's reader and, once every record is out, reports the sha256 of the bytes it
read — hashed as they were read for the streamed formats, hashed again after reading for Parquet and HF
datasets on disk, which are read by random access — so collect can tell whether the file changed after
the stage's cache key was taken.

Adding a format: a `_read_<format>` generator here — over the decoded text (`content`, a `SourceBytes`)
for a text format, over the file for a random-access one — its name in `_TEXT_READERS` or `_FILE_READERS`,
and the format in `SourceConfig.format`.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.sources.config import SourceConfig
from pipeline.sources.files import csv_dialect, encoding_of, file_digest, open_input
from pipeline.sources.streams import SourceBytes, open_source_bytes

# A record as read from a source, before mapping: (line number, fields dict, None, None) or
# (line number, None, (error reason, details), raw text).
Record = tuple[int, dict[str, Any] | None, tuple[str, Any] | None, str | None]


def read_records(source: SourceConfig, file: Path | str, batch_size: int,
                 read_digest: Callable[[str], None] = lambda sha256: None) -> Iterator[Record]:
    """Every record of one file: (line number, fields, None, None), or (line number, None, (reason,
    details), raw text) for a record that cannot be read. After the last record, `read_digest` gets the
    sha256 of the file's bytes as read."""
    try:
        if source.format in _FILE_READERS:
            yield from _FILE_READERS[source.format](source, file, batch_size)
            digest = file_digest(file, source.format)["sha256"]
        else:
            with open_source_bytes(file, open_input) as content:
                yield from _TEXT_READERS[source.format](source, content, file)
                digest = content.digest()
    except (OSError, EOFError) as exc:  # EOFError: a compressed stream cut short
        raise UserError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    read_digest(digest)


def _read_jsonl(source, content: SourceBytes, file):
    # Split on "\n" only: JSON Lines ends records with \n (or \r\n); a lone \r is data. Control characters
    # inside strings are accepted (strict=False), as a NUL is: the row is then judged on its values, by
    # the one rule every format shares (collect's `_string_problem`).
    fh = content.text(encoding_of(source), "surrogateescape", "\n")
    for i, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        raw = line.rstrip("\r\n")
        if has_surrogates(line):
            yield i, None, ("undecodable", {"encoding": source.encoding}), safe(raw)
            continue
        try:
            obj = json.loads(line, strict=False)
        except RecursionError:  # nested deeper than the interpreter's stack: one bad row, not a dead run
            yield i, None, ("too_deeply_nested", {"characters": len(raw)}), raw[:1000]
            continue
        except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
            if isinstance(exc, json.JSONDecodeError):
                details = {"error": exc.msg, "column": exc.colno}
            else:
                details = {"error": str(exc)[:200]}
            yield i, None, ("invalid_json", details), raw
            continue
        if not isinstance(obj, dict):
            yield i, None, ("json_not_an_object", {"type": type(obj).__name__}), raw
            continue
        yield i, obj, None, None


def _read_json(source, content: SourceBytes, file):
    """A JSON array of objects, read whole (JSON Lines streams; a JSON array is parsed in one piece). The
    position in the array is the record's line number."""
    raw = content.text(encoding_of(source), "surrogateescape", None).read()
    if has_surrogates(raw):
        yield 1, None, ("undecodable", {"encoding": source.encoding}), safe(raw[:2000])
        return
    try:
        data = json.loads(raw, strict=False)
    except RecursionError:
        yield 1, None, ("too_deeply_nested", {"characters": len(raw)}), raw[:2000]
        return
    except json.JSONDecodeError as exc:
        yield exc.lineno, None, ("invalid_json", {"error": exc.msg, "line": exc.lineno, "column": exc.colno}), raw[:2000]
        return
    except ValueError as exc:  # an integer too long to convert
        yield 1, None, ("invalid_json", {"error": str(exc)[:200]}), raw[:2000]
        return
    if isinstance(data, dict):
        data = [data]  # one record
    if not isinstance(data, list):
        yield 1, None, ("json_not_an_array", {"type": type(data).__name__}), raw[:2000]
        return
    for i, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            try:
                shown = json.dumps(obj, ensure_ascii=False)[:2000]
            except RecursionError:
                shown = None
            yield i, None, ("json_not_an_object", {"type": type(obj).__name__}), safe(shown) if shown else shown
            continue
        yield i, obj, None, None


class _RecordLines:
    """The lines handed to csv.reader, kept until `take()`: the physical lines of the record just read."""

    def __init__(self, lines):
        self.lines = lines
        self.kept: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.kept.append(line)
        return line

    def take(self) -> list[str]:
        kept, self.kept = self.kept, []
        return kept


def _unclosed_quote(lines: list[str], dialect: dict[str, Any]) -> bool:
    """Whether these lines (the file's last record) end inside a quoted field: csv's non-strict reading
    returns such a record whole, swallowing every line after the quote; a strict reading says so."""
    try:
        for _ in csv.reader(lines, strict=True, **dialect):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _read_csv(source, content: SourceBytes, file):
    dialect = csv_dialect(source)
    lines = _RecordLines(content.text(encoding_of(source), "surrogateescape", ""))
    reader = csv.reader(lines, **dialect)
    header = source.column_names
    if source.header:
        header = next(reader, None)
        lines.take()
        if header is None:
            return
        if any("\0" in h for h in header):
            raise UserError(f"{file}: the header holds NUL bytes (a UTF-16 file without a byte-order mark, or not text?)")
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise UserError(f"{file}: duplicate column names in the header: {', '.join(map(repr, repeated))}")
    start = reader.line_num + 1  # a record's location is the line where it begins
    pending = None  # the record before: the last one is checked for a quote never closed
    for row in reader:
        record, start = (start, row, lines.take()), reader.line_num + 1
        if pending is not None:
            yield from _csv_record(pending, header, dialect)
        pending = record
        if header is None and row and not (len(row) == 1 and not row[0].strip()):
            header = [f"column_{j}" for j in range(len(row))]
    if pending is not None:
        line, row, raw = pending
        if source.quoting != "none" and _unclosed_quote(raw, dialect):
            yield line, None, ("unclosed_quote", {"opened_at_line": line, "lines_swallowed": len(raw)}), safe("".join(raw))
            return
        yield from _csv_record(pending, header, dialect)


def _csv_record(record, header, dialect):
    line, row, raw = record
    if not row or (len(row) == 1 and not row[0].strip()):
        return
    if len(row) != len(header):
        yield line, None, ("malformed_row", {"fields": len(row), "expected": len(header)}), safe("".join(raw).rstrip("\r\n"))
        return
    yield line, dict(zip(header, row)), None, None


def _read_text(source, content: SourceBytes, file):
    fh = content.text(encoding_of(source), "surrogateescape", None)
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


_TEXT_READERS = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "tsv": _read_csv, "text": _read_text}
_FILE_READERS = {"parquet": _read_parquet, "hf_disk": _read_hf_disk}


_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that did not decode, read with errors="surrogateescape"
_ANY_SURROGATE = re.compile("[\ud800-\udfff]")  # ... or a lone surrogate from a JSON escape ("\ud800")


def has_surrogates(text: str) -> bool:
    """Bytes that did not decode (read with errors="surrogateescape")."""
    return _SURROGATE.search(text) is not None


def has_any_surrogate(text: str) -> bool:
    """Any surrogate code point: text that cannot be written as UTF-8 (Arrow, Parquet, JSON files)."""
    return _ANY_SURROGATE.search(text) is not None


def safe(text: str) -> str:
    """The text with surrogates (undecodable bytes, lone escapes) replaced, for a rejected row's `text`."""
    return text.encode("utf-8", "replace").decode("utf-8") if has_any_surrogate(text) else text
