"""split_overlap: no row id in two splits (Arrow over the `id` columns alone)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

import schemas
from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config
from stages.evaluate.result import Bound, CheckResult


def check(candidate: Candidate, config: Config) -> CheckResult:
    parts = []
    for s in schemas.SPLITS:
        ids = candidate.table(s, ["id"])
        if "id" in ids.column_names and ids.num_rows:
            ids = pc.unique(ids.column("id").drop_null())  # an id twice in one split is unique_ids' to count
            parts.append(pa.table({"id": ids, "split": pa.array([s] * len(ids), pa.string())}))
    several: dict[str, list[str]] = {}
    if parts:
        table = pa.concat_tables(parts)
        counts = table.group_by("id").aggregate([("split", "count")])
        overlap = counts.filter(pc.greater(counts.column("split_count"), 1)).column("id")
        examples = table.filter(pc.is_in(table.column("id"), value_set=overlap.slice(0, 20).combine_chunks()))
        for i, s in zip(examples.column("id").to_pylist(), examples.column("split").to_pylist()):
            several.setdefault(i, []).append(s)
        n = len(overlap)
    else:
        n = 0
    summary = {"ids": n, "examples": [{"id": i, "splits": ss} for i, ss in several.items()]}
    return CheckResult("split_overlap", summary, metrics={"ids_in_several_splits": n},
                       bounds=[Bound("split_overlap", "ids_in_several_splits", max_value=0)])
