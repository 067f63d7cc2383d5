"""What a row is: an *envelope* every stage shares plus a *payload* declared by the dataset's record kind.

The envelope says where a row came from (`id, source, source_file, source_line`, and `meta`: the extra
source fields kept as JSON); stages add to it (`cluster_id`, `label_source`, `split`, signal columns). The
payload is what the dataset is about: `text` and `label` for classification; `prompt` / `completion`,
`messages` or `prompt` / `chosen` / `rejected` for the kinds the next issue adds. A kind is one module
in `schemas/` declaring a `RecordKind`, and one line in `schemas/kinds.py`.

Column order of a boundary: the envelope's head, the payload, `meta`, then what stages added in plan order
(the order the published Parquet files have always had for classification).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

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

    def schema(self, *added: pa.Field) -> pa.Schema:
        """The boundary schema of this kind: envelope head, payload, meta, then the `added` fields."""
        return pa.schema([*ENVELOPE_HEAD, *self.payload, *ENVELOPE_TAIL, *added])

    @property
    def payload_names(self) -> list[str]:
        return [f.name for f in self.payload]
