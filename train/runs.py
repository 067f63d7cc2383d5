"""The run index: one JSON line per training run (and per scoring) in `<runs_root>/index.jsonl`."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path

INDEX = "index.jsonl"


def append_index(runs_root: Path, record: dict) -> None:
    runs_root = Path(runs_root)
    runs_root.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=False) + "\n"
    with open(runs_root / INDEX, "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # concurrent runs append whole lines
        fh.write(line)
        fh.flush()
        fcntl.flock(fh, fcntl.LOCK_UN)


def read_index(runs_root: Path) -> list[dict]:
    """Every record, oldest first; a damaged line is skipped rather than hiding the rest."""
    file = Path(runs_root) / INDEX
    if not file.is_file():
        return []
    out = []
    for line in file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def filter_records(
    records: list[dict], dataset: str | None = None, version: str | None = None, kind: str | None = "train"
) -> list[dict]:
    return [
        r
        for r in records
        if (dataset is None or r.get("dataset") == dataset)
        and (version is None or r.get("version") == version)
        and (kind is None or r.get("kind", "train") == kind)
    ]
