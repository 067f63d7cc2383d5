"""The `classification` record kind: a text and its class label (the kind every dataset has today)."""
from __future__ import annotations

import pyarrow as pa

from schemas import views
from schemas.record import RecordKind, TextParts

CLASSIFICATION = RecordKind(
    name="classification",
    payload=(
        pa.field("text", pa.string(), nullable=False),
        pa.field("label", pa.string()),  # null: unlabelled (annotate may fill it)
    ),
    text_field="text",
    label_field="label",
    description="a text and its class label; trained as a sequence classifier",
    views={"text": views.column("text")},
    default_view="text",
    parts=TextParts(("text",), views.rewrite_columns),
    dedupe_keys={"text": views.column("text")},
    default_key="text",
    render=views.column("text"),
    task_categories=("text-classification",),
)
