"""The `classification` record kind: a text and its class label (the kind every dataset has today)."""
from __future__ import annotations

from typing import Annotated

import pyarrow as pa
from pydantic import BeforeValidator

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


def label_name(value: object) -> object:
    """A label as the config names it, in the form rows carry it: labels are strings, and collect writes a
    source's integer label 0 as "0", so `labels: [0, 1]` (YAML integers) means the labels "0" and "1".
    Booleans are refused with the reason: YAML reads yes / no / true / false / on / off as booleans."""
    if isinstance(value, bool):
        raise ValueError(f"label {value!r} was read as a boolean by YAML (yes/no/true/false/on/off): quote it")
    if isinstance(value, int):
        return str(value)
    return value


# A label in a config (`labels:`, a source's `label_map`): a string, integers read as their digits.
LabelName = Annotated[str, BeforeValidator(label_name)]
