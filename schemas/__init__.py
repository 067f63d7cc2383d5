"""Arrow schemas at every stage boundary, record kinds, and the typed summaries stages hand on.

A row is an envelope plus a payload declared by the dataset's record kind (`schemas.record`,
`schemas.kinds`); each stage adds what it declares (`Stage.adds`), and the executor derives the schema of
every boundary from the kind and the plan, and checks every batch a stage yields against it (`check`).
Stages may add columns beyond the declared ones (quality signals, for example): a schema lists what a
boundary guarantees, not everything that may travel.

The constants below are the classification kind's boundaries, as the shipped plan produces them.
"""
from __future__ import annotations

import pyarrow as pa

from schemas.classification import CLASSIFICATION
from schemas.record import ENVELOPE_HEAD, ENVELOPE_TAIL, REJECTED_FIELDS, RecordKind  # noqa: F401 (re-exported)

# Columns stages add to the envelope (declared by the stages, read by the gate, the store and train).
CLUSTER_ID = pa.field("cluster_id", pa.int64(), nullable=False)  # dedupe: component of verified similar rows
LABEL_SOURCE = pa.field("label_source", pa.string())  # annotate: "source", "annotation" or null (no label)
SPLIT_COLUMN = pa.field("split", pa.string(), nullable=False)  # split: train / validation / test

# What every row carries from collect onwards.
COLLECTED = CLASSIFICATION.schema()
# clean: `text` is normalized; quality signals are added as further columns (see stages/clean/).
CLEANED = COLLECTED
# dedupe: connected component of verified similar rows (a row alone is its own cluster).
DEDUPED = CLASSIFICATION.schema(CLUSTER_ID)
# annotate: labels from humans replace or fill `label`; where it came from is recorded.
ANNOTATED = CLASSIFICATION.schema(CLUSTER_ID, LABEL_SOURCE)
# split: the published rows.
SPLIT = CLASSIFICATION.schema(CLUSTER_ID, SPLIT_COLUMN)

# Rows a stage removed, with why: classification's rejected.parquet (`RecordKind.rejected_schema` is
# every kind's: the same columns, plus `record` for kinds whose payload is more than a text and a label).
REJECTED = CLASSIFICATION.rejected_schema

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
