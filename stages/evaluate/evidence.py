"""Where the gate's evidence goes in a version, and the small readers / writers every check shares.

No path inside a version may contain a split keyword (train, validation, val, dev, test, eval,
evaluation, ...): `load_dataset("parquet", data_dir=version)` would read it as split data. So the GE suites
and results are stored one file each, keyed by scope, and the pages are numbered.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

LABEL_ISSUES_FILE = "label_issues.parquet"
REPORT_FILE = "report.html"
QUALITY_DIR = "quality"
SUMMARY_FILE = "summary.json"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_parquet(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pq.read_table(path).to_pandas()


def write_table(rows: list[dict[str, Any]], path: Path, schema: pa.Schema) -> None:
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    pq.write_table(pa.table(cols, schema=schema), path)


def py(v: Any) -> Any:
    """A numpy scalar as the Python value."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, NaN/inf to None, tuples/sets to lists."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    obj = py(obj)
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
