"""The collect stage: every source's records mapped onto rows of the dataset's kind, ids assigned.

See the package docstring for what a row is and how ids stay stable.
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
from pipeline.sources.config import Config, InputsWithin, SourceConfig, Sources
from pipeline.sources.files import check_encoding, check_source, file_digest, is_url, resolve_files
from pipeline.sources.readers import has_surrogates, read_records
from pipeline.sources import records


class InputFile(Summary):
    """An input file as the manifest lists it: path relative to the config, size, sha256, source name."""

    path: str
    bytes: int
    sha256: str
    source: str


class CollectSummary(Summary):
    inputs: list[InputFile]


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
                required = records.required_columns(source) if source.record_format else None
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
        for s, files in self._files:
            for f in files:
                check_encoding(s, f)

    def fingerprint_inputs(self) -> str:
        self.stats["inputs"] = [
            {**file_digest(f), "source": s.name, "path": self._relpath(f)} for s, files in self._files for f in files
        ]
        return json.dumps(self.stats["inputs"], sort_keys=True)

    def summarize(self) -> CollectSummary:
        if "inputs" not in self.stats:
            self.fingerprint_inputs()
        return CollectSummary(inputs=self.stats["inputs"])

    # Each source is read on its own (ids count repeated texts within a source): a part per source.
    def parts(self) -> int:
        return len(self.config.sources)

    def part(self, index: int) -> "CollectStage":
        return CollectStage(self.config.model_copy(update={"sources": [self.config.sources[index]]}), self.ctx)

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
                for line_no, fields, error, raw in read_records(source, file, self.ctx.batch_size):
                    row = {"source": source.name, "source_file": relpath, "source_line": line_no}
                    if error is None:
                        if source.record_format is None:
                            error, row = self._map(source, fields, row, labels)
                        else:
                            error, row = self._map_payload(source, fields, row)
                    if error is not None:
                        if raw is None and source.record_format is not None:
                            raw = json.dumps(fields, ensure_ascii=False, default=str)  # the record as read
                        rejects.append({**row, "id": _hash_id(source.name, relpath, str(line_no)), "reason": error[0],
                                        "details": error[1], "text": raw if raw is not None else row.get("text")})
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
        kept = pa.RecordBatch.from_pylist(rows, schema=self.ctx.kind.schema()) if rows else None
        rejected = None
        if rejects:
            batch = pa.RecordBatch.from_pylist(
                [{k: r.get(k) for k in ("id", "source", "source_file", "source_line", "text", "label")} for r in rejects],
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
        text = str(text)
        if not text.strip():
            return ("empty_text", None), {**row, "text": text}
        if has_surrogates(text):
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

    def _map_payload(self, source: SourceConfig, fields: dict[str, Any], row: dict[str, Any]):
        """A generative record (pipeline/sources/records.py), its id field and meta fields."""
        error, payload = records.map_record(source, fields, self.ctx.kind.name)
        if error is not None:
            return error, row
        for value in payload.values():
            texts = [m["content"] for m in value] if isinstance(value, list) else [value]
            if any(isinstance(t, str) and has_surrogates(t) for t in texts):
                return ("undecodable", {"encoding": source.encoding}), row
        row.update(payload)
        rid = records.get_path(fields, source.id_field) if source.id_field else None
        if source.id_field is not None:
            if rid is records._MISSING or rid is None or str(rid).strip() == "":
                return ("missing_id", {"field": source.id_field}), row
            rid = str(rid)
        row["id"] = rid
        meta = {m: (None if (v := records.get_path(fields, m)) is records._MISSING else v) for m in source.meta_fields}
        row["meta"] = json.dumps(meta, ensure_ascii=False, default=str) if meta else None
        return None, row


def _resolved(source: SourceConfig, kind: str) -> SourceConfig:
    try:
        return records.resolved(source, kind)
    except ValueError as exc:
        raise UserError(f"source {source.name!r}: {exc}") from None


def _canonical(row: dict[str, Any], kind) -> str:
    """A record's payload as canonical JSON: what its id hashes (with the source and its occurrence)."""
    return json.dumps({k: row[k] for k in kind.payload_names}, ensure_ascii=False, sort_keys=True)


def _hash_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:20]

