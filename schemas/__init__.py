"""Arrow schemas at every stage boundary.

Each stage declares the schema of the rows it keeps; the executor checks every batch a stage yields
against it (`check`). Stages may add columns beyond the declared ones (quality signals, for example):
a schema lists what a boundary guarantees, not everything that may travel.
"""
from __future__ import annotations

import pyarrow as pa

# What every row carries from collect onwards.
COLLECTED = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # source name from the config
        pa.field("source_file", pa.string(), nullable=False),  # file the row came from
        pa.field("source_line", pa.int64(), nullable=False),  # 1-based line / row / record number
        pa.field("text", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("meta", pa.string()),  # JSON object of the extra fields kept from the source
    ]
)

# clean: `text` is normalized; quality signals are added as further columns (see stages/clean.py).
CLEANED = COLLECTED

# dedupe: connected component of verified similar rows (a row alone is its own cluster).
DEDUPED = pa.schema(list(COLLECTED) + [pa.field("cluster_id", pa.int64(), nullable=False)])

# annotate: labels from humans replace or fill `label`; where it came from is recorded.
ANNOTATED = pa.schema(
    list(DEDUPED)
    + [
        pa.field("label_source", pa.string()),  # "source", "annotation" or null (no label)
    ]
)

# split: the published rows.
SPLIT = pa.schema(list(DEDUPED) + [pa.field("split", pa.string(), nullable=False)])

# Rows a stage removed, with why. One table per run, published as rejected.parquet.
REJECTED = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("details", pa.string()),  # JSON object: the value that failed, duplicate_of, jaccard, ...
        pa.field("source", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("source_line", pa.int64()),
        pa.field("text", pa.string()),  # the text as the stage saw it (the original text for collect/clean)
        pa.field("label", pa.string()),
    ]
)

SPLITS = ("train", "validation", "test")


class SchemaError(ValueError):
    """A batch does not match the schema declared for its stage boundary."""


def check(batch: pa.RecordBatch | pa.Table, schema: pa.Schema, where: str) -> None:
    """Raise SchemaError naming the column when `batch` lacks a declared field or has the wrong type.

    Extra columns are allowed. A non-nullable field must hold no nulls.
    """
    for field in schema:
        idx = batch.schema.get_field_index(field.name)
        if idx < 0:
            raise SchemaError(
                f"{where}: column {field.name!r} is missing (has: {', '.join(batch.schema.names)})"
            )
        actual = batch.schema.field(idx).type
        if actual != field.type and not (pa.types.is_null(actual) and field.nullable):
            raise SchemaError(f"{where}: column {field.name!r} is {actual}, expected {field.type}")
        if not field.nullable and batch.column(idx).null_count:
            raise SchemaError(f"{where}: column {field.name!r} has {batch.column(idx).null_count} nulls")


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast the declared columns of `batch` to the schema's types, keeping extra columns after them."""
    arrays, fields = [], []
    for field in schema:
        col = batch.column(field.name)
        arrays.append(col.cast(field.type) if col.type != field.type else col)
        fields.append(field)
    for name in batch.schema.names:
        if schema.get_field_index(name) < 0:
            arrays.append(batch.column(name))
            fields.append(batch.schema.field(name))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
