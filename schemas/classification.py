"""The `classification` record kind: a text and its class label (the kind every dataset has today)."""
from __future__ import annotations

import pyarrow as pa

from schemas.record import RecordKind

CLASSIFICATION = RecordKind(
    name="classification",
    payload=(
        pa.field("text", pa.string(), nullable=False),
        pa.field("label", pa.string()),  # null: unlabelled (annotate may fill it)
    ),
    text_field="text",
    label_field="label",
    description="a text and its class label; trained as a sequence classifier",
)
