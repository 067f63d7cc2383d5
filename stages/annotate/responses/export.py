"""An export snapshot → one row per review annotation, and the annotations set aside with their reason
(a rating out of range, a flag or a choice the config does not know — e.g. the labelling config was
edited in the UI — or a missing answer). Cancelled (skipped) annotations are ignored."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stages.annotate.export import annotation_frame, each_annotation
from stages.annotate.responses.interface import EDITED, FLAGS, PREFERENCE, PREFERENCE_CHOICES, RATING

COLUMNS = ["row_id", "task_id", "annotation_id", "annotator", "annotator_id", "rating", "flags", "edited",
           "preference", "created_at", "updated_at", "lead_time"]

SCHEMA = pa.schema([
    pa.field("row_id", pa.string()),
    pa.field("task_id", pa.int64()),
    pa.field("annotation_id", pa.int64()),
    pa.field("annotator", pa.string()),
    pa.field("annotator_id", pa.int64()),
    pa.field("rating", pa.float64()),  # rate: 1..max_rating
    pa.field("flags", pa.list_(pa.string())),  # rate: the ticked flags
    pa.field("edited", pa.string()),  # edit: the submitted text (null: the text area was left out)
    pa.field("preference", pa.string()),  # compare: "chosen", "rejected" (the source's) or "tie"
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
    pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    pa.field("lead_time", pa.float64()),
])


def _parse(mode: str, result: list[dict[str, Any]], flags: set[str], max_rating: int, a_is_chosen: bool | None
           ) -> tuple[dict[str, Any], str | None]:
    """(values, why it is set aside or None) of one annotation's result."""
    rating, ticked, edited, choice = None, [], None, None
    for r in result or []:
        value, name = r.get("value") or {}, r.get("from_name")
        if name == RATING and r.get("type") == "rating":
            rating = value.get("rating")
        elif name == FLAGS and r.get("type") == "choices":
            ticked.extend(value.get("choices") or [])
        elif name == EDITED and r.get("type") == "textarea":
            text = value.get("text")
            edited = "\n".join(map(str, text)) if isinstance(text, list) else (None if text is None else str(text))
        elif name == PREFERENCE and r.get("type") == "choices":
            picked = value.get("choices") or []
            choice = picked[0] if len(picked) == 1 else ("|".join(map(str, picked)) if picked else None)
    ticked = sorted(set(map(str, ticked)))
    preference = None
    if choice == "tie":
        preference = "tie"
    elif choice in ("A", "B") and a_is_chosen is not None:
        preference = "chosen" if (choice == "A") == a_is_chosen else "rejected"
    values = {"rating": rating, "flags": ticked, "edited": edited, "preference": preference}
    if mode == "rate":
        if rating is None:
            return values, "no rating in the annotation"
        if not isinstance(rating, (int, float)) or isinstance(rating, bool) or rating != int(rating) or not 1 <= rating <= max_rating:
            return values, f"rating out of range 1..{max_rating}: {rating!r}"
        unknown = [f for f in ticked if f not in flags]
        if unknown:
            return values, f"flag not in the configured set: {', '.join(unknown)}"
        values["rating"] = float(rating)
    elif mode == "compare":
        if choice is None:
            return values, "no preference in the annotation"
        if choice not in PREFERENCE_CHOICES:
            return values, f"preference not one of {', '.join(PREFERENCE_CHOICES)}: {choice}"
    return values, None


def reviews_from_export(export: list[dict[str, Any]], users: dict[int, str], mode: str, *, flags: list[str] = (),
                        max_rating: int = 5, a_is_chosen=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(annotations, aside). `a_is_chosen(row_id)` says how compare tasks were laid out."""
    allowed = set(flags)
    kept, aside = [], []
    for a, common in each_annotation(export, users):
        row_id = common["row_id"]
        order = a_is_chosen(row_id) if (a_is_chosen is not None and row_id is not None) else None
        values, why = _parse(mode, a.get("result") or [], allowed, max_rating, order)
        rec = {**common, **values}
        if row_id is None:
            why = "task has no row_id (not imported by sftpipe)"
        if why:
            rec["rating"] = None if not isinstance(rec["rating"], (int, float)) else float(rec["rating"])
            aside.append({**rec, "reason": why})
        else:
            kept.append(rec)
    return annotation_frame(kept, COLUMNS), annotation_frame(aside, COLUMNS + ["reason"])


def write(df: pd.DataFrame, path: Path, aside: bool = False) -> None:
    schema = SCHEMA.append(pa.field("reason", pa.string())) if aside else SCHEMA
    pq.write_table(pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False), path)
