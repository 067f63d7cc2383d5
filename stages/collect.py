"""collect: read the configured sources into rows {id, source, source_file, source_line, text, label, meta}.

A row that cannot be read (a line that is not JSON, bytes that do not decode, no text) is rejected with
its reason and location; the run goes on. Ids are stable: the source's own id where the config names an
id field, else a hash of the source name, the text and its occurrence number in that source — so a row
keeps its id (and its split) when other rows are added, removed or reordered.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

import schemas
from pipeline.errors import UserError
from pipeline.stage import Stage, StageOutput, rejected_rows

csv.field_size_limit(2**31 - 1)  # one document may be large (tens of MB)


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    path: str | list[str] = Field(description="file, folder (HF dataset on disk) or glob; relative to the config "
                                              "file; or an fsspec URL (s3://bucket/*.jsonl) where its filesystem "
                                              "package is installed")
    format: Literal["jsonl", "csv", "tsv", "parquet", "text", "hf_disk"]
    encoding: str = "utf-8"  # utf-8 also accepts a byte-order mark
    # csv / tsv
    delimiter: str | None = None  # default "," for csv, tab for tsv
    quoting: Literal["minimal", "none", "all"] = "minimal"
    quotechar: str = '"'
    header: bool = True
    column_names: list[str] | None = Field(None, description="names of the columns when the file has no header")
    # text
    unit: Literal["line", "file"] = "line"  # one document per line, or per file
    pattern: str | None = Field(None, description="regex with named groups (text, label, id, ...) applied to each line")
    # field mapping
    text_field: str = "text"
    label_field: str | None = None
    id_field: str | None = None
    meta_fields: list[str] = Field(default_factory=list)
    label_map: dict[str, str] | None = Field(None, description="rename labels; labels not listed stay as they are")

    @model_validator(mode="after")
    def _check(self) -> "SourceConfig":
        if self.pattern is not None:
            if self.format != "text":
                raise ValueError("pattern applies to format: text only")
            try:
                groups = re.compile(self.pattern).groupindex
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regex: {exc}") from None
            if self.text_field not in groups:
                raise ValueError(f"pattern has no named group {self.text_field!r} (the text_field)")
        if self.column_names is not None and self.header:
            raise ValueError("column_names is for files without a header: set header: false")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


class Config(BaseModel):
    """collect has no section of its own: its settings are the config's `sources` and `inputs_within`."""

    model_config = ConfigDict(extra="forbid")
    sources: list[SourceConfig]
    inputs_within: str | None = None


def is_url(path: str | Path) -> bool:
    """An fsspec URL (s3://, gs://, file://, ...) rather than a local path."""
    return isinstance(path, str) and "://" in path


def _filesystem(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)[0]
    except (ImportError, ValueError) as exc:  # unknown protocol, or its package (s3fs, gcsfs) is missing
        raise UserError(f"cannot read {url}: {exc}") from None


def open_input(file: Path | str, mode: str = "r", **kwargs):
    """Open a source file, local or at an fsspec URL (text modes take encoding / errors / newline)."""
    if is_url(file):
        return _filesystem(file).open(file, mode, **kwargs)
    return open(file, mode, **kwargs)


def _resolve_url(pattern: str, source: SourceConfig) -> list[str]:
    if source.format == "hf_disk":
        raise UserError(f"{pattern}: hf_disk sources must be local folders (copy the dataset or use parquet)")
    fs = _filesystem(pattern)
    try:
        found = fs.glob(pattern) if glob.has_magic(pattern) else ([pattern] if fs.exists(pattern) else [])
        files = [f for f in found if fs.isfile(f)]
    except OSError as exc:
        raise UserError(f"cannot list {pattern}: {exc}") from None
    return sorted(fs.unstrip_protocol(f) for f in files)  # filesystems list paths without their protocol


def resolve_files(source: SourceConfig, config_dir: Path, within: Path | None = None) -> list[Path | str]:
    """The files (or HF dataset folders) a source names, sorted so glob order never matters: local paths,
    or URLs for patterns that are fsspec URLs. With `within`, a local file that resolves outside that
    folder (through `..` or a symlink) is an error, and URLs are not allowed."""
    files: list[Path | str] = []
    for pattern in source.paths:
        if is_url(pattern):
            if within is not None:
                raise UserError(f"{pattern}: inputs_within allows only local files under {within}")
            matches = _resolve_url(pattern, source)
            if not matches:
                raise UserError(f"path {pattern!r} matches no file")
            files.extend(matches)
            continue
        full = pattern if Path(pattern).is_absolute() else str(config_dir / pattern)
        matches = sorted(Path(m) for m in glob.glob(full, recursive=True))
        if source.format != "hf_disk":
            matches = [m for m in matches if m.is_file()]
        if not matches:
            raise UserError(f"path {pattern!r} matches no {'folder' if source.format == 'hf_disk' else 'file'} (looked for {full})")
        files.extend(matches)
    if within is not None:
        root = within.resolve()
        for f in files:
            if not f.resolve().is_relative_to(root):
                raise UserError(f"{f} resolves to {f.resolve()}, outside {root} (inputs_within forbids it)")
    # Local paths in Path order (as always: it decides occurrence numbers in ids), then URLs.
    return sorted(dict.fromkeys(files), key=lambda f: (1, f, None) if is_url(f) else (0, "", f))


def check_source(source: SourceConfig, config_dir: Path, within: Path | None = None) -> None:
    """Raise UserError when the source's files are missing or the named fields are not among its columns."""
    for file in resolve_files(source, config_dir, within):
        check_encoding(source, file)
        if source.format == "text" and source.pattern is None:
            continue  # plain text has no columns
        columns = peek_columns(source, file)
        if columns is None:
            continue  # empty file: nothing to check, its rows (none) are accounted as zero
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise UserError(f"{file}: duplicate column names: {', '.join(map(repr, repeated))}")
        wanted = {"text_field": source.text_field, "label_field": source.label_field, "id_field": source.id_field}
        wanted.update({f"meta_fields[{i}]": m for i, m in enumerate(source.meta_fields)})
        for key, name in wanted.items():
            if name is not None and name not in columns:
                raise UserError(f"{key} {name!r} is not a column of {file} (columns: {', '.join(columns) or 'none'})")


def peek_columns(source: SourceConfig, file: Path) -> list[str] | None:
    """Column names of a source file, from its header / schema / first JSON object (None if empty)."""
    fmt = source.format
    try:
        if fmt == "parquet":
            with open_input(file, "rb") as fh:
                return pq.read_schema(fh).names
        if fmt == "hf_disk":
            import datasets

            ds = datasets.load_from_disk(str(file))
            if isinstance(ds, datasets.DatasetDict):
                ds = next(iter(ds.values()))
            return list(ds.column_names)
        if fmt == "text":
            return list(re.compile(source.pattern).groupindex)
        with open_input(file, "r", encoding=_encoding(source), errors="replace", newline="") as fh:
            if fmt == "jsonl":
                # Records may differ in their keys: a field counts as present if any of the first
                # records has it.
                keys: dict[str, None] = {}
                seen = 0
                for line in fh:
                    if seen >= _PEEK_RECORDS:
                        break
                    if line.strip():
                        try:
                            obj = json.loads(line)
                        except json.JSONDecodeError:
                            continue
                        if isinstance(obj, dict):
                            keys.update(dict.fromkeys(obj))
                            seen += 1
                return list(keys) if seen else None
            if source.column_names is not None:
                return list(source.column_names)
            reader = csv.reader(_strip_nul(fh), **_csv_dialect(source))
            header = next(reader, None)
            return None if header is None else header
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read {file}: {exc}") from None
    return None


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def check_encoding(source: SourceConfig, file: Path) -> None:
    """A UTF-16 file read as UTF-8 would come out as NUL-riddled garbage: say what to set instead."""
    if source.format in ("parquet", "hf_disk") or source.encoding.lower().startswith("utf-16"):
        return
    with open_input(file, "rb") as fh:
        head = fh.read(2)
    if head in _UTF16_BOMS:
        raise UserError(f"{file} is UTF-16 (it starts with a UTF-16 byte-order mark): set `encoding: utf-16` for source {source.name!r}")


_PEEK_RECORDS = 1000


def _encoding(source: SourceConfig) -> str:
    return "utf-8-sig" if source.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else source.encoding


def _csv_dialect(source: SourceConfig) -> dict[str, Any]:
    delimiter = source.delimiter or ("\t" if source.format == "tsv" else ",")
    quoting = {"minimal": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE, "all": csv.QUOTE_ALL}[source.quoting]
    return {"delimiter": delimiter, "quoting": quoting, "quotechar": source.quotechar}


def _strip_nul(lines):
    for line in lines:
        yield line.replace("\0", "") if "\0" in line else line


def file_digest(path: Path | str) -> dict[str, Any]:
    """Size and sha256 of an input file (or of every file in an HF dataset folder)."""
    h = hashlib.sha256()
    size = 0
    files = sorted(p for p in path.rglob("*") if p.is_file()) if not is_url(path) and path.is_dir() else [path]
    for f in files:
        with open_input(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
    return {"path": str(path), "bytes": size, "sha256": h.hexdigest()}


# A record as read from a source, before mapping: (line number, fields dict) or (line number, error reason, details).
_Record = tuple[int, dict[str, Any] | None, str | None, str | None]


class CollectStage(Stage):
    name = "collect"
    output_schema = schemas.COLLECTED
    Config = Config

    def __init__(self, config: Config, ctx):
        super().__init__(config, ctx)
        within = ctx.config_dir / config.inputs_within if config.inputs_within is not None else None
        self._files = [(s, resolve_files(s, ctx.config_dir, within)) for s in config.sources]
        for s, files in self._files:
            for f in files:
                check_encoding(s, f)

    def fingerprint_inputs(self) -> str:
        self.stats["inputs"] = [
            {**file_digest(f), "source": s.name, "path": self._relpath(f)} for s, files in self._files for f in files
        ]
        return json.dumps(self.stats["inputs"], sort_keys=True)

    def _relpath(self, file: Path | str) -> str:
        # Relative to the config file, so ids, fingerprints and reports do not depend on where one runs.
        if is_url(file):
            return file
        return os.path.relpath(file.resolve(), self.ctx.config_dir.resolve())

    def run(self, inputs=None) -> Iterator[StageOutput]:
        labels = set(self.ctx.labels) if self.ctx.labels else None
        for source, files in self._files:
            occurrences: dict[bytes, int] = {}  # text hash → times seen in this source, to keep ids unique
            for file in files:
                rows: list[dict[str, Any]] = []
                rejects: list[dict[str, Any]] = []
                relpath = self._relpath(file)
                for line_no, fields, error, raw in self._records(source, file):
                    row = {"source": source.name, "source_file": relpath, "source_line": line_no}
                    if error is None:
                        error, row = self._map(source, fields, row, labels)
                    if error is not None:
                        rejects.append({**row, "id": _hash_id(source.name, relpath, str(line_no)), "reason": error[0],
                                        "details": error[1], "text": raw if raw is not None else row.get("text")})
                    else:
                        if row["id"] is None:
                            key = hashlib.sha1(row["text"].encode("utf-8", "surrogatepass")).digest()
                            k = occurrences.get(key, 0)
                            occurrences[key] = k + 1
                            row["id"] = _hash_id(source.name, row["text"], str(k))
                        rows.append(row)
                    if len(rows) + len(rejects) >= self.ctx.batch_size:
                        yield self._emit(rows, rejects)
                        rows, rejects = [], []
                if rows or rejects:
                    yield self._emit(rows, rejects)

    def _emit(self, rows: list[dict], rejects: list[dict]) -> StageOutput:
        self.ctx.progress(len(rows) + len(rejects))
        kept = pa.RecordBatch.from_pylist(rows, schema=schemas.COLLECTED) if rows else None
        rejected = None
        if rejects:
            batch = pa.RecordBatch.from_pylist(
                [{k: r.get(k) for k in ("id", "source", "source_file", "source_line", "text", "label")} for r in rejects],
                schema=pa.schema([schemas.REJECTED.field(n) for n in ("id", "source", "source_file", "source_line", "text", "label")]),
            )
            rejected = rejected_rows(batch, self.name, [r["reason"] for r in rejects], [r["details"] for r in rejects])
        return StageOutput(kept=kept, rejected=rejected)

    # -- mapping a record to a row ------------------------------------------------------------------------

    def _map(self, source: SourceConfig, fields: dict[str, Any], row: dict[str, Any], labels: set[str] | None):
        if source.text_field not in fields:
            return ("missing_text_field", {"field": source.text_field, "fields": list(fields)[:20]}), row
        text = fields[source.text_field]
        if isinstance(text, (dict, list)):
            return ("text_not_a_string", {"type": type(text).__name__}), row
        if text is None or (isinstance(text, float) and text != text):
            return ("empty_text", None), row
        text = str(text)
        if not text.strip():
            return ("empty_text", None), {**row, "text": text}
        if _has_surrogates(text):
            return ("undecodable", {"encoding": source.encoding}), {**row, "text": text.encode("utf-8", "replace").decode()}
        row["text"] = text
        label = fields.get(source.label_field) if source.label_field else None
        if isinstance(label, (dict, list)):
            return ("label_not_a_scalar", {"label": json.dumps(label)[:200]}), row
        if label is not None and not (isinstance(label, float) and label != label):
            label = str(label).strip()
            label = (source.label_map or {}).get(label, label) or None
        else:
            label = None
        row["label"] = label
        if labels is not None and label is not None and label not in labels:
            return ("label_not_in_label_set", {"label": label, "label_set": sorted(labels)}), row
        rid = fields.get(source.id_field) if source.id_field else None
        if source.id_field is not None:
            if rid is None or str(rid).strip() == "":
                return ("missing_id", {"field": source.id_field}), row
            rid = str(rid)
        row["id"] = rid
        meta = {m: fields.get(m) for m in source.meta_fields}
        row["meta"] = json.dumps(meta, ensure_ascii=False, default=str) if meta else None
        return None, row

    # -- readers: each yields (line number, fields, error, raw text) ----------------------------------------

    def _records(self, source: SourceConfig, file: Path) -> Iterator[_Record]:
        try:
            yield from getattr(self, f"_read_{source.format}")(source, file)
        except OSError as exc:
            raise UserError(f"cannot read {file}: {exc.strerror or exc}") from None

    def _read_jsonl(self, source, file):
        # Split on "\n" only: JSON Lines ends records with \n (or \r\n); a lone \r is data.
        with open_input(file, "r", encoding=_encoding(source), errors="surrogateescape", newline="\n") as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                if _has_surrogates(line):
                    yield i, None, ("undecodable", {"encoding": source.encoding}), _safe(line.rstrip("\r\n"))
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

    def _read_csv(self, source, file):
        with open_input(file, "r", encoding=_encoding(source), errors="surrogateescape", newline="") as fh:
            reader = csv.reader(_strip_nul(fh), **_csv_dialect(source))
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
                    yield line, None, ("malformed_row", {"fields": len(row), "expected": len(header)}), _safe("\t".join(row))
                    continue
                yield line, dict(zip(header, row)), None, None

    _read_tsv = _read_csv

    def _read_text(self, source, file):
        with open_input(file, "r", encoding=_encoding(source), errors="surrogateescape", newline=None) as fh:
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
                    yield i, None, ("pattern_mismatch", {"pattern": source.pattern}), _safe(line)
                    continue
                yield i, m.groupdict(), None, None

    def _read_parquet(self, source, file):
        line = 0
        with open_input(file, "rb") as fh:
            try:
                pf = pq.ParquetFile(fh)
            except pa.ArrowInvalid as exc:
                raise UserError(f"{file} is not a Parquet file: {exc}") from None
            for batch in pf.iter_batches(batch_size=self.ctx.batch_size):
                for rec in batch.to_pylist():
                    line += 1
                    yield line, rec, None, None

    def _read_hf_disk(self, source, file):
        import datasets

        ds = datasets.load_from_disk(str(file))
        parts = ds.items() if isinstance(ds, datasets.DatasetDict) else [(None, ds)]
        line = 0
        for split_name, part in parts:
            for batch in part.with_format("arrow").iter(batch_size=self.ctx.batch_size):
                for rec in batch.to_pylist():
                    line += 1
                    if split_name is not None:
                        rec.setdefault("split", split_name)
                    yield line, rec, None, None


def _hash_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:20]


_SURROGATE = re.compile("[\udc80-\udcff]")


def _has_surrogates(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def _safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
