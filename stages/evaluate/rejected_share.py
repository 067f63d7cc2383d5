"""rejected_share: how much of its input each stage removed, in all and per reason — blocking, because a
run that silently loses a class (a label set missing one: every row of it `label_not_in_label_set`) or
most of a file (a wrong format, encoding or rule) still has rows to publish, and every other check looks
only at what was kept.

Shares are of the rows the stage read (the funnel in the candidate's manifest, written by the executor).
Bounds: `evaluate.rejected_share` — a ceiling for any stage, one for any reason, and per-stage /
per-reason ceilings that replace them. A reason with a ceiling of its own (`per_reason`) is judged by it
alone and left out of its stage's share, so a config that drops a reason's rows on purpose (Tatoeba's
languages outside `labels`) raises that one ceiling, not the whole stage's. The message of a failed bound says what was measured (rows
removed of rows read) and, for labels outside the label set, every label seen with its count, so a
missing class is named.
"""
from __future__ import annotations

from collections import Counter

import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config
from stages.evaluate.result import Bound, CheckResult

LABEL_REASON = "label_not_in_label_set"


def labels_seen(candidate: Candidate) -> tuple[Counter, Counter]:
    """(labels kept in the splits, labels of rows rejected for being outside the label set), with counts."""
    kept: Counter = Counter()
    for split in schemas.SPLITS:
        if "label" in candidate.columns(split):
            for batch in candidate.batches(split, ["label"]):
                counts = pc.value_counts(batch.column("label"))
                kept.update({v: n for v, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())
                             if v is not None})
    outside: Counter = Counter()
    path = candidate.folder / "rejected.parquet"
    if path.exists():
        for batch in pq.ParquetFile(path).iter_batches(columns=["reason", "label"]):
            labels = batch.column("label").filter(pc.equal(batch.column("reason"), LABEL_REASON))
            counts = pc.value_counts(labels)
            outside.update({str(v): n for v, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())})
    return kept, outside


def _labels_message(kept: Counter, outside: Counter, label_set) -> str:
    def listed(counts: Counter) -> str:
        top = counts.most_common(20)
        more = f", and {len(counts) - 20} more" if len(counts) > 20 else ""
        return ", ".join(f"{label!r}: {n:,}" for label, n in top) + more

    set_ = ", ".join(map(repr, label_set or []))
    return (f"labels seen outside the label set [{set_}]: {listed(outside)}; labels kept: {listed(kept) or 'none'} — "
            f"add the missing ones to `labels`, or raise evaluate.rejected_share.per_reason.{LABEL_REASON} "
            f"if they are left out on purpose")


def check(candidate: Candidate, config: Config) -> CheckResult:
    cfg = config.rejected_share
    metrics: dict[str, float] = {}
    bounds: list[Bound] = []
    stages = []
    label_details = ""
    for stage in candidate.manifest.get("stages", []):
        name, rows_in, dropped = stage["name"], stage.get("rows_in") or 0, stage.get("dropped") or {}
        removed = sum(dropped.values())
        own = {r: n for r, n in dropped.items() if r in cfg.per_reason}  # bounded by their own ceilings
        counted = removed - sum(own.values())
        share = counted / rows_in if rows_in else 0.0
        stages.append({"stage": name, "rows_in": rows_in, "removed": removed, "share": round(share, 6),
                       "reasons": {r: {"rows": n, "share": round(n / rows_in, 6) if rows_in else 0.0}
                                   for r, n in dropped.items()}})
        column = f"rejected_share_{name}"
        metrics[column] = share
        ceiling = cfg.per_stage.get(name, cfg.stage)
        if ceiling is not None:
            listed = ", ".join(f"{r}: {n:,}" for r, n in sorted(dropped.items(), key=lambda x: -x[1]) if r not in own)
            details = f"{name} removed {counted:,} of the {rows_in:,} rows it read" + (f" ({listed})" if listed else "")
            if own:
                details += f"; not counting {', '.join(sorted(own))} (bounded on its own)"
            bounds.append(Bound("rejected_share", column, max_value=ceiling, details=details))
        for reason, n in dropped.items():
            column = f"rejected_share_{name}_{reason}"
            metrics[column] = n / rows_in if rows_in else 0.0
            ceiling = cfg.per_reason.get(reason, cfg.reason)
            if ceiling is None:
                continue
            details = f"{name} removed {n:,} of the {rows_in:,} rows it read as {reason}"
            if reason == LABEL_REASON and metrics[column] > ceiling:  # read the labels only to explain a failure
                if not label_details:
                    kept, outside = labels_seen(candidate)
                    label_details = _labels_message(kept, outside, candidate.labels)
                details += f"; {label_details}"
            bounds.append(Bound("rejected_share", column, max_value=ceiling, details=details))
    summary = {"stages": stages, "bounds": {"stage": cfg.stage, "reason": cfg.reason, "per_stage": cfg.per_stage,
                                            "per_reason": cfg.per_reason}}
    return CheckResult("rejected_share", summary, metrics=metrics, bounds=bounds, evidence=stages)
