"""The collect stage: every source's records mapped onto rows of the dataset's kind, ids assigned.

See the package docstring for what a row is and how ids stay stable. A record that cannot become a row is
one rejected row with its reason, whatever is wrong with it: a NUL character or a surrogate (bytes that did
not decode, a lone `\ud800` escape) in any value the row keeps, bytes that do not decode in the source's
encoding (a Parquet `binary` column), nesting deeper than Python can follow, an id already taken.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

import schemas
from pipeline.errors import UserError
from pipeline.stage import Stage, StageOutput, rejected_rows
from schemas.summaries import Summary
from pipeline.sources import records
from pipeline.sources.config import Config, InputsWithin, SourceConfig, Sources
from pipeline.sources.files import check_encoding, check_source, file_digest, is_url, resolve_files
from pipeline.sources.readers import has_any_surrogate, has_surrogates, read_records, safe


class InputFile(Summary):
    """An input file as the manifest lists it: path relative to the config, size, sha256, source name."""

    path: str
    bytes: int
    sha256: str
    source: str


class CollectSummary(Summary):
    inputs: list[InputFile]


# The source's own split of a row (a source's `split_field`, renamed by `split_map`): an extra column, on every
# row of every batch when any source names a split field (null where a row has none), absent otherwise.
SOURCE_SPLIT = pa.field("source_split", pa.string())


class CollectStage(Stage):
    name = "collect"
    Config = Config
    summary_type = CollectSummary

    # -- its place in the dataset config: the top-level `sources` and `inputs_within` ----------------------

    @classmethod
    def config_fields(cls) -> dict[str, tuple[Any, Any]]:
        return {"sources": (Sources, ...), "inputs_within": (InputsWithin, None)}

    @classmethod
    def section(cls, config: Any) -> Config:
        return Config(sources=config.sources, inputs_within=config.inputs_within)

    @classmethod
    def check_section(cls, section: Config, config_dir: Path, config: Any) -> None:
        within = config_dir / section.inputs_within if section.inputs_within is not None else None
        kind = config.record_kind.name
        for i, source in enumerate(section.sources):
            try:
                source = _resolved(source, kind)
                required = records.required_columns(source, kind) if source.record_format else None
                check_source(source, config_dir, within, required)
            except UserError as exc:
                raise UserError(f"sources[{i}] ({source.name}): {exc}") from None

    @classmethod
    def manifest_entries(cls, summary: CollectSummary | None, skipped: str | None) -> dict[str, Any]:
        return {"inputs": [f.model_dump() for f in summary.inputs] if summary is not None else []}

    def __init__(self, config: Config, ctx):
        super().__init__(config, ctx)
        within = ctx.config_dir / config.inputs_within if config.inputs_within is not None else None
        sources = [_resolved(s, ctx.kind.name) for s in config.sources]
        self._files = [(s, resolve_files(s, ctx.config_dir, within)) for s in sources]
        self._schema = ctx.kind.schema(*([SOURCE_SPLIT] if any(s.split_field for s in config.sources) else []))
        for s, files in self._files:
            for f in files:
                check_encoding(s, f)

    def fingerprint_inputs(self) -> str:
        self.stats["inputs"] = [
            {**file_digest(f, s.format), "source": s.name, "path": self._relpath(f)} for s, files in self._files for f in files
        ]
        return json.dumps(self.stats["inputs"], sort_keys=True)

    def summarize(self) -> CollectSummary:
        if "inputs" not in self.stats:
            self.fingerprint_inputs()
        # Each input as it was read must be the input the stage's cache key was taken from: a file changed in
        # between (appended to during the read) would otherwise leave an output under a key it does not match.
        read = self.stats.pop("read_sha256", {})
        for f in self.stats["inputs"]:
            key = f"{f['source']}:{f['path']}"
            if key in read and read[key] != f["sha256"]:
                raise UserError(f"{f['path']} (source {f['source']}) changed while it was read: its sha256 was "
                                f"{f['sha256'][:12]}… when the run started and {read[key][:12]}… as read; nothing "
                                f"was kept — run again once it no longer changes")
        return CollectSummary(inputs=self.stats["inputs"])

    # Each source is read on its own (ids count repeated texts within a source): a part per source.
    def parts(self) -> int:
        return len(self.config.sources)

    def part(self, index: int) -> "CollectStage":
        part = CollectStage(self.config.model_copy(update={"sources": [self.config.sources[index]]}), self.ctx)
        part._schema = self._schema  # every part's batches have the same columns (source_split for all or none)
        return part

    def _relpath(self, file: Path | str) -> str:
        # Relative to the config file, so ids, fingerprints and reports do not depend on where one runs.
        if is_url(file):
            return file
        return os.path.relpath(file.resolve(), self.ctx.config_dir.resolve())

    def run(self, inputs=None) -> Iterator[StageOutput]:
        labels = set(self.ctx.labels) if self.ctx.labels else None
        taken: dict[str, tuple[str, str]] = {}  # id from an id field → (source, file:line) where first read
        read = self.stats.setdefault("read_sha256", {})  # "source:path" → sha256 of the bytes as read
        for source, files in self._files:
            occurrences: dict[bytes, int] = {}  # text hash → times seen in this source, to keep ids unique
            for file in files:
                rows: list[dict[str, Any]] = []
                rejects: list[dict[str, Any]] = []
                relpath = self._relpath(file)
                reading = read_records(source, file, self.ctx.batch_size,
                                       lambda sha256, key=f"{source.name}:{relpath}": read.__setitem__(key, sha256))
                for line_no, fields, error, raw in reading:
                    row = {"source": source.name, "source_file": relpath, "source_line": line_no}
                    if error is None:
                        try:
                            if source.record_format is None:
                                error, row = self._map(source, fields, row, labels)
                            else:
                                error, row = self._map_payload(source, fields, row)
                        except RecursionError:  # a value nested too deep to serialize (meta, a label)
                            error = ("too_deeply_nested", None)
                    if error is None and source.split_field is not None:
                        error, row["source_split"] = _source_split(source, fields)
                    if error is None and source.id_field is not None:
                        first = taken.setdefault(row["id"], (source.name, f"{relpath}:{line_no}"))
                        if first != (source.name, f"{relpath}:{line_no}"):
                            where = first[1] if first[0] == source.name else f"{first[1]} (source {first[0]})"
                            error = ("duplicate_id", {"id": row["id"], "first_read_at": where})
                    if error is not None:
                        if raw is None and source.record_format is not None:
                            try:
                                raw = json.dumps(fields, ensure_ascii=False, default=str)  # the record as read
                            except RecursionError:
                                raw = None
                        rejects.append({**row, "id": _hash_id(source.name, relpath, str(line_no)), "reason": error[0],
                                        "details": _scrub(error[1]), "text": raw if raw is not None else row.get("text")})
                    else:
                        if row["id"] is None:
                            content = row["text"] if source.record_format is None else _canonical(row, self.ctx.kind)
                            key = hashlib.sha1(content.encode("utf-8", "surrogatepass")).digest()
                            k = occurrences.get(key, 0)
                            occurrences[key] = k + 1
                            row["id"] = _hash_id(source.name, content, str(k))
                        rows.append(row)
                    if len(rows) + len(rejects) >= self.ctx.batch_size:
                        yield self._emit(rows, rejects)
                        rows, rejects = [], []
                if rows or rejects:
                    yield self._emit(rows, rejects)

    def _emit(self, rows: list[dict], rejects: list[dict]) -> StageOutput:
        self.ctx.progress(len(rows) + len(rejects))
        kept = pa.RecordBatch.from_pylist(rows, schema=self._schema) if rows else None
        rejected = None
        if rejects:
            batch = pa.RecordBatch.from_pylist(
                [{k: _scrub(r.get(k)) for k in ("id", "source", "source_file", "source_line", "text", "label")} for r in rejects],
                schema=pa.schema([schemas.REJECTED.field(n) for n in ("id", "source", "source_file", "source_line", "text", "label")]),
            )
            rejected = rejected_rows(batch, self.name, [r["reason"] for r in rejects], [r["details"] for r in rejects],
                                     kind=self.ctx.kind)
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
        text = _as_text(text, source)
        if not text.strip():
            return ("empty_text", None), {**row, "text": text}
        problem = _string_problem("text", text, source)
        if problem is not None:
            return problem, {**row, "text": safe(text)}
        row["text"] = text
        label = fields.get(source.label_field) if source.label_field else None
        if isinstance(label, (dict, list)):
            return ("label_not_a_scalar", {"label": json.dumps(label, default=str)[:200]}), row
        if label is not None and not (isinstance(label, float) and label != label):
            label = _as_text(label, source).strip()
            problem = _string_problem("label", label, source)
            if problem is not None:
                return problem, {**row, "label": safe(label)}
            label = (source.label_map or {}).get(label, label) or None
        else:
            label = None
        row["label"] = label
        if labels is not None and label is not None and label not in labels:
            return ("label_not_in_label_set", {"label": label, "label_set": sorted(labels)}), row
        return _id_and_meta(source, fields, row)

    def _map_payload(self, source: SourceConfig, fields: dict[str, Any], row: dict[str, Any]):
        """A generative record (pipeline/sources/records.py), its id field and meta fields."""
        error, payload = records.map_record(source, fields, self.ctx.kind.name)
        if error is not None:
            return error, row
        for name, value in payload.items():  # every string of the payload, messages' too: the one rule
            for text in _strings(value):
                problem = _string_problem(name, text, source)
                if problem is not None:
                    return problem, row
        row.update(payload)
        return _id_and_meta(source, fields, row)


def _id_and_meta(source: SourceConfig, fields: dict[str, Any], row: dict[str, Any]):
    """(error, row) with the row's `id` (from `id_field`) and `meta` (the `meta_fields` as JSON) set: one rule
    for every record kind. Both read dotted paths (`a.b`) as the payload's fields do."""
    rid = None
    if source.id_field is not None:
        rid = records.get_path(fields, source.id_field)
        if rid is records._MISSING or rid is None or (isinstance(rid, float) and rid != rid) \
                or _as_text(rid, source).strip() == "":
            return ("missing_id", {"field": source.id_field}), row
        # 1 and "1" are one id: ids are text, and two rows never share one (`run` rejects the later).
        rid = _as_text(rid, source)
        problem = _string_problem("id", rid, source)
        if problem is not None:
            return problem, row
    row["id"] = rid
    meta = {m: (None if (v := records.get_path(fields, m)) is records._MISSING else v) for m in source.meta_fields}
    row["meta"] = json.dumps(meta, ensure_ascii=False, default=lambda v: _json_default(v, source)) if meta else None
    if row["meta"] is not None:
        problem = _string_problem("meta", row["meta"], source)
        if problem is not None:
            return problem, {**row, "meta": None}
    return None, row


def _source_split(source: SourceConfig, fields: dict[str, Any]):
    """(error, split) of a record: its split_field's value renamed by split_map; None (split by the ratios)
    where the record has no value or the map sends it to null; an error for a value that names no split."""
    value = records.get_path(fields, source.split_field)
    if value is records._MISSING or value is None or (isinstance(value, float) and value != value):
        return None, None
    if isinstance(value, (dict, list)):
        return ("split_not_a_scalar", {"field": source.split_field, "value": json.dumps(value, default=str)[:200]}), None
    value = str(value).strip()
    split = (source.split_map or {}).get(value, value) if value else None
    if split is not None and split not in schemas.SPLITS:
        return ("unknown_source_split", {"field": source.split_field, "value": value, "splits": list(schemas.SPLITS),
                                         "hint": "map it with split_map (e.g. {dev: validation}, or null)"}), None
    return None, split


def _resolved(source: SourceConfig, kind: str) -> SourceConfig:
    try:
        return records.resolved(source, kind)
    except ValueError as exc:
        raise UserError(f"source {source.name!r}: {exc}") from None


def _canonical(row: dict[str, Any], kind) -> str:
    """A record's payload as canonical JSON: what its id hashes (with the source and its occurrence)."""
    return json.dumps({k: row[k] for k in kind.payload_names}, ensure_ascii=False, sort_keys=True)

def _as_text(value: Any, source: SourceConfig) -> str:
    """A scalar as text: bytes (a Parquet `binary` column) decoded with the source's encoding — bytes that
    do not decode become surrogates, which `_string_problem` reports as `undecodable`."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode(source.encoding, "surrogateescape")
    return str(value)


def _json_default(value: Any, source: SourceConfig) -> Any:
    return _as_text(value, source) if isinstance(value, (bytes, bytearray, memoryview)) else str(value)


def _string_problem(field: str, value: str, source: SourceConfig) -> tuple[str, dict[str, Any]] | None:
    """The one rule for every format: a value the row keeps may hold no NUL character and no surrogate (text
    that cannot be written as UTF-8: undecodable bytes, or a lone surrogate escape in JSON)."""
    if "\0" in value:
        return "nul_byte", {"field": field}
    if has_any_surrogate(value):
        if has_surrogates(value):
            return "undecodable", {"field": field, "encoding": source.encoding}
        return "lone_surrogate", {"field": field}
    return None


def _scrub(value: Any) -> Any:
    """A rejected row's value or details, surrogates replaced, so that it can be written (as UTF-8) at all."""
    if isinstance(value, str):
        return safe(value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def _strings(value: Any):
    """Every string inside a payload value (a string, or messages: a list of dicts of strings)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _hash_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:20]

