"""Evaluation sets and matching rows against them: what the decontaminate stage (which removes the rows that
match) and the quality gate's decontamination check (which re-checks the published rows) share.

**An evaluation set** is a source in any format collect reads (`pipeline.sources.SourceConfig`: JSONL /
JSON / CSV / TSV / Parquet / text with a field map, Alpaca, ShareGPT, messages, a Hugging Face dataset
saved on disk) plus the fields of its items to compare (`compare`). Its records are read as items of a
record kind — `text_field` alone: classification; `record_format: fields`: generation; `alpaca`,
`sharegpt`, `messages`: chat (a conversation of any length) — and the kind's field views
(`schemas.views`) give the texts: `text`, or `prompt`, `completion`, `user`, `assistant`, `all`, ...
By default the prompts are compared: `text`, a generation item's `prompt`, a conversation's `user` turns
(not `prompt`, which would include a system turn that many items share). A record that cannot be read is
counted by its reason, never fatal; a set of which no item can be read is an error.

**The index.** Every (set, their field, item) text is an *entry*, numbered set by set (config order), field
by field, item by item, in one n-gram index (`pipeline.decontamination`) and/or one MinHash index
(`pipeline.decontamination_near`). The engines report each row's lowest matching entry, so a row that
matches two sets is attributed to the first listed.

**A row** is matched on each of our `compare` fields in order, the n-gram mode before the near mode; the
first match found is the row's, and `details` names the eval set, the item's id (its `id_field`, else
`FILE:LINE`), both fields, how it matched (`ngram`: a shared n-gram; `whole_item`: a short item whole
inside the row; `whole_row`: the row is a very short item; `near`: MinHash, verified by Jaccard) and the
overlapping normalized text or the Jaccard. All of it is a function of the row and the eval sets, not of
batches or workers. Worker processes memory-map a saved index (`EvalIndex.save`, `match_saved`).
"""
from __future__ import annotations

import functools
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.decontamination import NgramIndex, NgramParams, find_ngram_overlaps
from pipeline.decontamination_near import NearIndex, NearParams, find_near_copies
from pipeline.errors import UserError
from pipeline.sources import records
from pipeline.sources.config import SourceConfig
from pipeline.sources.files import check_encoding, file_digest, is_url, resolve_files
from pipeline.sources.readers import has_surrogates, read_records
from schemas.kinds import record_kind
from schemas.record import RecordKind

# The prompts, per record kind: what is compared when `compare` is not set (either side).
DEFAULT_FIELD = {"classification": "text", "generation": "prompt", "chat": "user"}
# The engine's names for how an item is compared (pipeline.decontamination.COMPARED_AS) → `details.match`.
MATCH_NAMES = {"ngrams": "ngram", "whole_item_inside": "whole_item", "whole_row_equal": "whole_row"}
EVAL_TEXT_CHARS = 300  # of an eval item's text in a near match's details


def default_field(kind: RecordKind) -> str:
    return DEFAULT_FIELD.get(kind.name) or kind.default_view or "user"


def item_kind(record_format: str | None) -> RecordKind:
    """The record kind an evaluation set's items are read as."""
    if record_format is None:
        return record_kind("classification")
    return record_kind("generation" if record_format == "fields" else "chat")


def _unknown_fields(names: list[str], kind: RecordKind) -> list[str]:
    return [n for n in names if n not in kind.views]


class EvalSet(SourceConfig):
    """One evaluation set: a source (any collect format and field map) and the fields of its items compared."""

    compare: list[str] | None = Field(
        None, min_length=1,
        description="their fields compared: text (text_field), prompt / completion / system / all (record_format "
                    "fields), user / assistant / prompt / completion / all (alpaca, sharegpt, messages); default: "
                    "text, prompt, user")

    @model_validator(mode="after")
    def _known_fields(self) -> "EvalSet":
        if self.split_field is not None or self.split_map is not None:
            raise ValueError("split_field / split_map keep a source's own splits; an evaluation set has none")
        kind = item_kind(self.record_format)
        unknown = _unknown_fields(self.compared, kind)
        if unknown:
            read_as = "text_field" if self.record_format is None else f"record_format {self.record_format}"
            raise ValueError(f"compare: {', '.join(map(repr, unknown))} is not a field of items read with {read_as} "
                             f"(fields: {', '.join(kind.views)})")
        return self

    @property
    def kind(self) -> RecordKind:
        return item_kind(self.record_format)

    @property
    def compared(self) -> list[str]:
        return list(self.compare or [default_field(self.kind)])


class NearSettings(BaseModel):
    """The near mode: MinHash of normalized-token shingles, every candidate verified by exact Jaccard."""

    model_config = ConfigDict(extra="forbid")
    ngram: int = Field(3, ge=1, le=64, description="shingle length in normalized tokens")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    threshold: float = Field(0.5, gt=0.0, le=1.0, description="Jaccard at or above which a row is a near copy")
    lsh_threshold: float = Field(0.4, gt=0.0, le=1.0, description="LSH tuning point (candidates are verified)")
    seed: int = 1

    @model_validator(mode="after")
    def _lsh_not_above_threshold(self) -> "NearSettings":
        if self.lsh_threshold > self.threshold:
            raise ValueError(f"lsh_threshold ({self.lsh_threshold}) must not exceed threshold ({self.threshold})")
        return self

    def params(self) -> NearParams:
        return NearParams(self.ngram, self.num_perm, self.threshold, self.lsh_threshold, self.seed)


class Config(BaseModel):
    """The `decontaminate:` section."""

    model_config = ConfigDict(extra="forbid")
    eval_sets: list[EvalSet] = Field(min_length=1, description="one or more evaluation sets (collect's source keys + compare)")
    compare: list[str] | None = Field(
        None, min_length=1, description="our fields compared: default text (classification), prompt (generation), "
                                        "user (chat: the user turns); add completion to compare responses too")
    mode: Literal["ngram", "near", "both"] = Field("ngram", description="ngram: a shared n-gram; near: MinHash near "
                                                                       "copies verified by Jaccard; both")
    ngram: int = Field(13, ge=1, le=1000, description="n-gram length in words (13: GPT-3, NeMo Curator)")
    min_ngram: int = Field(8, ge=1, le=1000, description="items of min_ngram to ngram-1 words must appear whole in a "
                                                         "row; shorter ones match only a row that is the item")
    cjk_ngram: int = Field(23, ge=1, le=1000, description="Chinese / Japanese: n-gram length in characters")
    cjk_min_ngram: int = Field(14, ge=1, le=1000)
    southeast_asian_ngram: int = Field(54, ge=1, le=1000, description="Thai, Lao, Khmer, Myanmar: in code points")
    southeast_asian_min_ngram: int = Field(33, ge=1, le=1000)
    near: NearSettings = Field(default_factory=NearSettings)
    examples: int = Field(5, ge=0, le=100, description="rows shown per eval set in the summary and report.html")

    @field_validator("eval_sets")
    @classmethod
    def _unique_names(cls, sets: list[EvalSet]) -> list[EvalSet]:
        names = [s.name for s in sets]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"eval set names must be unique: {', '.join(repeated)}")
        return sets

    @model_validator(mode="after")
    def _lengths(self) -> "Config":
        try:
            self.ngram_params()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self

    def ngram_params(self) -> NgramParams:
        return NgramParams(self.ngram, self.min_ngram, self.cjk_ngram, self.cjk_min_ngram,
                           self.southeast_asian_ngram, self.southeast_asian_min_ngram)

    def fields_for(self, kind: RecordKind) -> list[str]:
        """Our compared fields for rows of `kind`; UserError naming the ones the kind does not have."""
        fields = list(self.compare or [default_field(kind)])
        unknown = _unknown_fields(fields, kind)
        if unknown:
            raise UserError(f"decontaminate.compare: {kind.name} records have no field {', '.join(map(repr, unknown))} "
                            f"(fields: {', '.join(kind.views)})")
        return fields

    @property
    def modes(self) -> list[str]:
        return ["ngram", "near"] if self.mode == "both" else [self.mode]


# ---------------------------------------------------------------------------------------------------------
# Reading an evaluation set.


def resolved(eval_set: EvalSet) -> EvalSet:
    """The set with its record format settled (records.resolved's rules for its item kind)."""
    kind = eval_set.kind.name
    return eval_set if kind == "classification" else records.resolved(eval_set, kind)


def eval_files(eval_set: EvalSet, config_dir: Path) -> list[Path | str]:
    return resolve_files(resolved(eval_set), config_dir)


def relpath(file: Path | str, config_dir: Path) -> str:
    return file if is_url(file) else os.path.relpath(Path(file).resolve(), config_dir.resolve())


def set_digests(eval_set: EvalSet, config_dir: Path) -> list[dict[str, Any]]:
    """Path (relative to the config), size and sha256 of each of an eval set's files (a Hugging Face
    dataset folder: of all its files together)."""
    return [{"path": relpath(f, config_dir), "bytes": d["bytes"], "sha256": d["sha256"]}
            for f in eval_files(eval_set, config_dir) for d in [file_digest(f, eval_set.format)]]


def digests(config: Config, config_dir: Path) -> list[dict[str, Any]]:
    """Every eval set's files, digested: the stage's fingerprint inputs, and what the gate checks the
    files it re-reads against."""
    return [{"eval_set": s.name, **d} for s in config.eval_sets for d in set_digests(s, config_dir)]


@dataclass
class EvalItems:
    """The readable items of one evaluation set: ids, the compared texts (field → one text per item), and
    how many records could not be read, by reason."""

    ids: list[str]
    texts: dict[str, pa.Array]
    unreadable: dict[str, int]


def _text_record(source: EvalSet, fields: dict[str, Any]) -> tuple[tuple[str, Any] | None, dict[str, Any]]:
    """A text_field record as a classification payload (collect's text rules; no label is needed)."""
    value = records.get_path(fields, source.text_field)
    if value is records._MISSING:
        return ("missing_text_field", None), {}
    if isinstance(value, (dict, list)):
        return ("text_not_a_string", None), {}
    if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
        return ("empty_text", None), {}
    if has_surrogates(str(value)):
        return ("undecodable", None), {}
    return None, {"text": str(value), "label": None}


def read_eval_set(eval_set: EvalSet, config_dir: Path, batch_size: int = 10_000) -> EvalItems:
    source = resolved(eval_set)
    kind = source.kind
    ids: list[str] = []
    payloads: list[dict[str, Any]] = []
    unreadable: Counter = Counter()
    for file in resolve_files(source, config_dir):
        check_encoding(source, file)
        where = relpath(file, config_dir)
        for line, fields, error, _raw in read_records(source, file, batch_size):
            if error is None:
                error, payload = (_text_record(source, fields) if kind.name == "classification"
                                  else records.map_record(source, fields, kind.name))
            if error is not None:
                unreadable[error[0]] += 1
                continue
            if source.id_field is not None:
                item_id = records.get_path(fields, source.id_field)
                if item_id is records._MISSING or item_id is None or str(item_id).strip() == "":
                    unreadable["missing_id"] += 1
                    continue
                item_id = str(item_id)
            else:
                item_id = f"{where}:{line}"
            ids.append(item_id)
            payloads.append(payload)
    batch = pa.RecordBatch.from_pylist(payloads, schema=pa.schema(kind.payload))
    return EvalItems(ids, {f: kind.view(f)(batch) for f in source.compared}, dict(sorted(unreadable.items())))


# ---------------------------------------------------------------------------------------------------------
# The index over every eval set, and matching rows against it.


@dataclass
class RowMatches:
    """One match per matched row (sorted by row): our field (index into the compared fields), the entry,
    how it matched (`MATCH_NAMES` values or "near"), the overlapping normalized text (n-gram modes; None for
    near) and the Jaccard (near; NaN otherwise)."""

    row: np.ndarray
    field: np.ndarray
    entry: np.ndarray
    how: list[str]
    overlap: list[str | None]
    jaccard: np.ndarray

    def __len__(self) -> int:
        return len(self.row)


@dataclass
class EvalIndex:
    """Every eval set's entries and the engines' indexes over them. `sets` holds, per set, what the
    summary reports (name, files, fields, items, unreadable records)."""

    sets: list[dict[str, Any]]
    fields: list[str]  # their field names, by field code
    entry_set: np.ndarray
    entry_field: np.ndarray
    entry_item: np.ndarray
    ids: pa.Array  # per entry: the eval item's id
    texts: pa.Array  # per entry: the compared text as read
    ngram: NgramIndex | None
    near: NearIndex | None

    @classmethod
    def build(cls, config: Config, config_dir: Path) -> "EvalIndex":
        sets, fields, ids, texts = [], [], [], []
        entry_set, entry_field, entry_item = [], [], []
        for s, eval_set in enumerate(config.eval_sets):
            try:
                items = read_eval_set(eval_set, config_dir)
            except UserError as exc:
                raise UserError(f"decontaminate: eval set {eval_set.name!r}: {exc}") from None
            if not items.ids:
                why = ", ".join(f"{k}: {v}" for k, v in items.unreadable.items()) or "the files hold no record"
                raise UserError(f"decontaminate: eval set {eval_set.name!r}: no item could be read ({why})")
            for name, values in items.texts.items():
                if name not in fields:
                    fields.append(name)
                entry_set.append(np.full(len(values), s, np.int32))
                entry_field.append(np.full(len(values), fields.index(name), np.int16))
                entry_item.append(np.arange(len(values), dtype=np.int64))
                ids.append(pa.array(items.ids, pa.string()))
                texts.append(values)
            sets.append({"name": eval_set.name, "fields": eval_set.compared, "items": len(items.ids),
                         "unreadable": items.unreadable, "files": set_digests(eval_set, config_dir)})
        all_texts = pa.concat_arrays(texts)
        ngram = NgramIndex.build(all_texts, config.ngram_params()) if "ngram" in config.modes else None
        near = NearIndex.build(all_texts, config.near.params()) if "near" in config.modes else None
        return cls(sets, fields, np.concatenate(entry_set), np.concatenate(entry_field), np.concatenate(entry_item),
                   pa.concat_arrays(ids), all_texts, ngram, near)

    def __len__(self) -> int:
        return len(self.entry_set)

    @property
    def names(self) -> list[str]:
        return [s["name"] for s in self.sets]

    def item_figures(self) -> list[dict[str, Any]]:
        """Per set: items with nothing to compare (every compared text empty once normalized), and entries
        per way of comparing them (ngram, whole_item, whole_row; near)."""
        if self.ngram is not None:
            empty_entry = self.ngram.compared_as == 3
            how = self.ngram.compared_as
        else:
            empty_entry = np.asarray(self.near.empty, dtype=bool)
            how = None
        out = []
        for s, info in enumerate(self.sets):
            mine = self.entry_set == s
            n_items = info["items"]
            nonempty = np.zeros(n_items, dtype=bool)
            nonempty[self.entry_item[mine & ~empty_entry]] = True
            if how is not None:
                counts = np.bincount(how[mine], minlength=4)
                compared = {MATCH_NAMES[k]: int(counts[i]) for i, k in enumerate(("ngrams", "whole_item_inside",
                                                                                   "whole_row_equal"))}
            else:
                compared = {"near": int((mine & ~empty_entry).sum())}
            out.append({"empty": int(n_items - nonempty.sum()), "compared_as": compared})
        return out

    def match(self, texts: list[pa.Array]) -> RowMatches:
        """The match of every row whose compared texts (one array per our field, same length) overlap an
        entry; see the module docstring for which one a row gets."""
        n = len(texts[0]) if texts else 0
        entry = np.full(n, -1, np.int64)
        field = np.zeros(n, np.int16)
        jaccard = np.full(n, np.nan)
        how: dict[int, str] = {}
        overlap: dict[int, str | None] = {}
        for mode in ("ngram", "near"):
            for f, values in enumerate(texts):
                if mode == "ngram" and self.ngram is not None:
                    found = find_ngram_overlaps(self.ngram, values)
                    rows, items = found.row, found.item
                    fresh = entry[rows] < 0
                    for r, h, g in zip(rows[fresh].tolist(), np.array(found.how, dtype=object)[fresh].tolist(),
                                       np.array(found.ngram, dtype=object)[fresh].tolist()):
                        how[r], overlap[r] = MATCH_NAMES[h], g
                elif mode == "near" and self.near is not None:
                    found = find_near_copies(self.near, values)
                    rows, items = found.row, found.item
                    fresh = entry[rows] < 0
                    jaccard[rows[fresh]] = found.jaccard[fresh]
                    for r in rows[fresh].tolist():
                        how[r], overlap[r] = "near", None
                else:
                    continue
                entry[rows[fresh]] = items[fresh]
                field[rows[fresh]] = f
        matched = np.flatnonzero(entry >= 0)
        return RowMatches(matched, field[matched], entry[matched], [how[r] for r in matched.tolist()],
                          [overlap[r] for r in matched.tolist()], jaccard[matched])

    def details(self, matches: RowMatches, k: int, our_fields: list[str]) -> dict[str, Any]:
        """The rejected row's `details` for match `k`."""
        e = int(matches.entry[k])
        out: dict[str, Any] = {"eval_set": self.sets[int(self.entry_set[e])]["name"], "eval_id": self.ids[e].as_py(),
                               "eval_field": self.fields[int(self.entry_field[e])],
                               "field": our_fields[int(matches.field[k])], "match": matches.how[k]}
        if matches.how[k] == "near":
            text = self.texts[e].as_py() or ""
            out.update(jaccard=round(float(matches.jaccard[k]), 4), eval_text=text[:EVAL_TEXT_CHARS])
        else:
            out["ngram"] = matches.overlap[k]
        return out

    # -- saved for worker processes ------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.ngram is not None:
            self.ngram.save(folder / "ngram")
        if self.near is not None:
            self.near.save(folder / "near")
        np.savez(folder / "entries.npz", set=self.entry_set, field=self.entry_field, item=self.entry_item)
        pq.write_table(pa.table({"id": self.ids, "text": self.texts}), folder / "entries.parquet")
        (folder / "eval_sets.json").write_text(json.dumps({"sets": self.sets, "fields": self.fields}))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "EvalIndex":
        folder = Path(folder)
        meta = json.loads((folder / "eval_sets.json").read_text())
        entries = np.load(folder / "entries.npz")
        table = pq.read_table(folder / "entries.parquet")
        return cls(meta["sets"], meta["fields"], entries["set"], entries["field"], entries["item"],
                   table.column("id").combine_chunks(), table.column("text").combine_chunks(),
                   NgramIndex.load(folder / "ngram") if (folder / "ngram").is_dir() else None,
                   NearIndex.load(folder / "near") if (folder / "near").is_dir() else None)


@functools.lru_cache(maxsize=2)
def _built(config_json: str, config_dir: str, files: str) -> EvalIndex:
    return EvalIndex.build(Config.model_validate_json(config_json), Path(config_dir))


def cached_index(config: Config, config_dir: Path, files: list[dict[str, Any]]) -> EvalIndex:
    """`EvalIndex.build`, once per process for the same section, folder and file digests (`digests`):
    the stage and the gate of one run, or the chunks a Ray actor is given, share it."""
    return _built(config.model_dump_json(), str(Path(config_dir).resolve()), json.dumps(files, sort_keys=True))


@functools.lru_cache(maxsize=2)
def _loaded(folder: str) -> EvalIndex:
    return EvalIndex.load(folder)


def match_saved(folder: str, texts: list[pa.Array]) -> RowMatches:
    """Worker job: `EvalIndex.match` with an index `EvalIndex.save`d in `folder`, loaded (memory-mapped) once
    per process."""
    return _loaded(str(folder)).match(texts)


def views(kind: RecordKind, batch: pa.RecordBatch, fields: list[str]) -> list[pa.Array]:
    """Our compared texts of a batch, one string array per field (empty strings for absent fields)."""
    out = []
    for name in fields:
        values = kind.view(name)(batch)
        out.append(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
    return out


def excerpt(values: pa.Array, k: int, chars: int = EVAL_TEXT_CHARS) -> str:
    text = values[k].as_py() or ""
    return text if len(text) <= chars else text[: chars - 1] + "…"

