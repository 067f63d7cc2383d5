"""What a row is: an *envelope* every stage shares plus a *payload* declared by the dataset's record kind.

The envelope says where a row came from (`id, source, source_file, source_line`, and `meta`: the extra
source fields kept as JSON); stages add to it (`cluster_id`, `label_source`, `split`, signal columns). The
payload is what the dataset is about: `text` and `label` for classification; `prompt` / `completion` /
`system` for generation; `messages` / `tools` for chat (and `prompt` / `chosen` / `rejected` for the
preference kind of issue 15). A kind is one module in `schemas/` declaring a `RecordKind`, and one line in
`schemas/kinds.py`; besides its payload it declares the field views rules and dedupe read
(`schemas.views`), the texts clean may rewrite, its dedupe keys, a readable rendering of a record, and
its dataset card facts.

Column order of a boundary: the envelope's head, the payload, `meta`, then what stages added in plan order
(the order the published Parquet files have always had for classification).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Mapping

import pyarrow as pa

from schemas.views import View

# The longest text (in characters) a record's text field may hold by default: clean's `n_chars` rules
# (`<field>.n_chars` for generative kinds) drop longer ones, and the gate's `text_length` /
# `field_length` bounds default to whatever clean's rule says (this, unless the config changed it).
MAX_TEXT_CHARS = 100_000

# Where a row came from: every kind, every stage.
ENVELOPE_HEAD = (
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # source name from the config
    pa.field("source_file", pa.string(), nullable=False),  # file the row came from
    pa.field("source_line", pa.int64(), nullable=False),  # 1-based line / row / record number
)
ENVELOPE_TAIL = (
    pa.field("meta", pa.string()),  # JSON object of the extra fields kept from the source
)

# Rows a stage removed, with why: one table per run, published as rejected.parquet. Every kind has these
# columns; `text` is what a person reads (classification: the text as the stage saw it; other kinds: a
# rendering of the record) and `label` the class label where the kind has one.
REJECTED_FIELDS = (
    pa.field("id", pa.string(), nullable=False),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("details", pa.string()),  # JSON object: the value that failed, duplicate_of, jaccard, ...
    pa.field("source", pa.string()),
    pa.field("source_file", pa.string()),
    pa.field("source_line", pa.int64()),
    pa.field("text", pa.string()),
    pa.field("label", pa.string()),
)
# A kind whose payload is more than one text keeps the whole record beside the rendering: nothing is lost.
RECORD_JSON = pa.field("record", pa.string())  # the payload as a JSON object ({"prompt": ..., ...})

@dataclass(frozen=True)
class TextParts:
    """The texts of a record that clean normalizes, by name (`prompt`, `completion`; a conversation's
    turns by role), and how to rewrite them: `apply(batch, names, fn)` maps `fn` (a string array to a
    string array) over the named parts and returns the new batch and how many rows changed."""

    names: tuple[str, ...]
    apply: Callable[[pa.RecordBatch, list[str], Callable[[pa.Array], pa.Array]], tuple[pa.RecordBatch, int]]


@dataclass(frozen=True)
class RecordKind:
    """A dataset's kind of record: the payload fields every row carries between the envelope's parts.

    `text_field` is the payload field that text stages read (clean's normalizers and signals, dedupe's
    default key, the report's length plots); `label_field` the one a class label lives in (None: the kind
    has no labels).
    """

    name: str
    payload: tuple[pa.Field, ...]
    text_field: str | None = None
    label_field: str | None = None
    description: str = ""
    # Field views (`schemas.views`): what a rule's field (`completion.n_words`), a dedupe key or the report
    # reads. `default_view` is the one a rule without a field reads; its signal columns keep plain names.
    views: Mapping[str, View] = field(default_factory=dict)
    default_view: str | None = None
    parts: TextParts | None = None  # what clean's normalizers may rewrite
    dedupe_keys: Mapping[str, View] = field(default_factory=dict)  # `dedupe.key` choices
    default_key: str | None = None
    render: View | None = None  # a record as one readable text (rejected rows, examples in the report)
    task_categories: tuple[str, ...] = ()  # the dataset card's Hugging Face task categories
    card: str = ""  # the dataset card's section on the kind: schema, loading, training (Markdown)

    def schema(self, *added: pa.Field) -> pa.Schema:
        """The boundary schema of this kind: envelope head, payload, meta, then the `added` fields."""
        return pa.schema([*ENVELOPE_HEAD, *self.payload, *ENVELOPE_TAIL, *added])

    @property
    def payload_names(self) -> list[str]:
        return [f.name for f in self.payload]

    @property
    def keeps_record(self) -> bool:
        """Whether rejected rows carry the payload as JSON (`record`): every kind whose payload is more
        than a text and a label."""
        return self.text_field is None

    @property
    def rejected_schema(self) -> pa.Schema:
        return pa.schema([*REJECTED_FIELDS, *([RECORD_JSON] if self.keeps_record else [])])

    def view(self, name: str) -> View:
        try:
            return self.views[name]
        except KeyError:
            raise KeyError(f"record kind {self.name!r} has no field {name!r} (fields: {', '.join(self.views)})") from None

    def key(self, name: str | None) -> View:
        """The dedupe key `name` (None: the kind's default)."""
        name = name or self.default_key
        try:
            return self.dedupe_keys[name]
        except KeyError:
            raise KeyError(f"record kind {self.name!r} has no dedupe key {name!r} (keys: {', '.join(self.dedupe_keys)})") from None

    def record_json(self, batch: pa.RecordBatch) -> pa.Array:
        """Each row's payload as a JSON object (null where the batch lacks the payload: an unreadable
        source record, kept as its raw text)."""
        if any(n not in batch.schema.names for n in self.payload_names):
            return pa.nulls(batch.num_rows, pa.string())
        rows = batch.select(self.payload_names).to_pylist()
        return pa.array([json.dumps(r, ensure_ascii=False) for r in rows], pa.string())
