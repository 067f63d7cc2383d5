"""Finding, checking and opening a source's files: local paths and globs, fsspec URLs, HF datasets on disk.

`check_source` is what `sftpipe validate` runs: the files exist, their encoding is what the config says,
and the fields the config names are columns of them. With `inputs_within`, every file that will be opened
must resolve inside that folder — for an HF dataset folder, each file `datasets.load_from_disk` opens
(`hf_disk_files`: its JSON files and the Arrow files its state names), not only the folder.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.sources.config import SourceConfig
from pipeline.sources.streams import open_source_bytes

csv.field_size_limit(2**31 - 1)  # one document may be large (tens of MB)


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
            opened = [f, *hf_disk_files(f)] if source.format == "hf_disk" else [f]
            for g in opened:
                if not g.resolve().is_relative_to(root):
                    raise UserError(f"{g} resolves to {g.resolve()}, outside {root} (inputs_within forbids it)")
    # Local paths in Path order (as always: it decides occurrence numbers in ids), then URLs.
    return sorted(dict.fromkeys(files), key=lambda f: (1, f, None) if is_url(f) else (0, "", f))


def check_source(source: SourceConfig, config_dir: Path, within: Path | None = None,
                 required: dict[str, str] | None = None) -> None:
    """Raise UserError when the source's files are missing or the named fields are not among its columns.
    `required`: the columns a generative record format needs (instead of text_field / label_field)."""
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
        if required is None:
            wanted = {"text_field": source.text_field, "label_field": source.label_field, "id_field": source.id_field}
        else:
            wanted = {f"fields.{role} ({source.record_format})": c for role, c in required.items()}
            wanted["id_field"] = source.id_field.split(".")[0] if source.id_field else None
        wanted.update({f"meta_fields[{i}]": m.split(".")[0] if required is not None else m
                       for i, m in enumerate(source.meta_fields)})
        if source.split_field is not None:  # a misspelt one would leave every row to split.ratios
            wanted["split_field"] = source.split_field.split(".")[0] if required is not None else source.split_field
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
        with open_source_bytes(file, open_input) as content:
            fh = content.text(encoding_of(source), "replace", "")
            if fmt == "json":
                try:
                    data = json.loads(fh.read(), strict=False)
                except (ValueError, RecursionError):
                    return None  # the reader rejects it with its reason
                records = [data] if isinstance(data, dict) else [r for r in data[:_PEEK_RECORDS] if isinstance(r, dict)] \
                    if isinstance(data, list) else []
                keys_: dict[str, None] = {}
                for r in records:
                    keys_.update(dict.fromkeys(r))
                return list(keys_) if records else None
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
                            obj = json.loads(line, strict=False)
                        except (ValueError, RecursionError):  # a bad record: the reader rejects it with its reason
                            continue
                        if isinstance(obj, dict):
                            keys.update(dict.fromkeys(obj))
                            seen += 1
                return list(keys) if seen else None
            if source.column_names is not None:
                return list(source.column_names)
            header = next(csv.reader(fh, **csv_dialect(source)), None)
            if header is not None and any("\0" in h for h in header):
                raise UserError(f"{file}: the header holds NUL bytes (a UTF-16 file without a byte-order mark, "
                                f"or not text at all?)")
            return header
    except (OSError, EOFError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read {file}: {exc}") from None
    return None


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def check_encoding(source: SourceConfig, file: Path) -> None:
    """A UTF-16 file read as UTF-8 would come out as NUL-riddled garbage: say what to set instead. A
    compressed Parquet file (Parquet compresses inside) is refused here too."""
    if source.format == "hf_disk":
        return
    try:
        with open_source_bytes(file, open_input) as content:
            if source.format == "parquet":
                if content.codec is not None:
                    raise UserError(f"{file} is {content.codec}-compressed: Parquet files compress their own "
                                    f"columns — decompress it")
                return
            head = content.stream.read(2)
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read {file}: {exc}") from None
    if source.encoding.lower().startswith("utf-16"):
        return
    if head in _UTF16_BOMS:
        raise UserError(f"{file} is UTF-16 (it starts with a UTF-16 byte-order mark): set `encoding: utf-16` for source {source.name!r}")


_PEEK_RECORDS = 1000


def encoding_of(source: SourceConfig) -> str:
    return "utf-8-sig" if source.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else source.encoding


def csv_dialect(source: SourceConfig) -> dict[str, Any]:
    delimiter = source.delimiter or ("\t" if source.format == "tsv" else ",")
    quoting = {"minimal": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE, "all": csv.QUOTE_ALL}[source.quoting]
    return {"delimiter": delimiter, "quoting": quoting, "quotechar": source.quotechar}


def hf_disk_files(folder: Path) -> list[Path]:
    """The files `datasets.load_from_disk(folder)` opens: a DatasetDict's `dataset_dict.json` and, per split
    it names, that split's folder's; a Dataset's `state.json`, `dataset_info.json` and the Arrow files its
    state lists (names joined to the folder as `datasets` joins them, so `../` in a name is seen here)."""
    folder = Path(folder)
    try:
        if (folder / "dataset_dict.json").is_file():
            splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
            return [folder / "dataset_dict.json", *(f for split in splits for f in hf_disk_files(folder / split))]
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        data = [folder / entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{folder} is not a Hugging Face dataset saved with save_to_disk ({type(exc).__name__}: {exc})") from None
    return [folder / "state.json", folder / "dataset_info.json", *data]


def file_digest(path: Path | str, source_format: str | None = None) -> dict[str, Any]:
    """Size and sha256 of an input file (or of every file an HF dataset folder is read from), as the bytes
    are on disk (compressed files are hashed compressed)."""
    h = hashlib.sha256()
    size = 0
    files = hf_disk_files(path) if source_format == "hf_disk" else [path]
    for f in files:
        with open_input(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
    return {"path": str(path), "bytes": size, "sha256": h.hexdigest()}
