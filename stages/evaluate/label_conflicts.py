"""label_conflicts: duplicate clusters whose rows carry different labels.

The dedupe stage owns this figure: it counts, over every row it read (kept and removed), the clusters of
verified similar rows whose labels disagree, and hands the count, examples and cluster sizes on in its
`DedupeSummary`. This check bounds it and shows it; it computes nothing again. Without a dedupe summary
(a plan without dedupe, a candidate built by hand) the check does not run.
"""
from __future__ import annotations

from collections import Counter

from schemas.summaries import DedupeSummary
from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config
from stages.evaluate.result import Bound, CheckResult


def check(candidate: Candidate, config: Config) -> CheckResult:
    dedupe = candidate.summaries.get(DedupeSummary)
    if dedupe is None:
        return CheckResult("label_conflicts", {"ran": False, "skipped": "no duplicate clusters: the dedupe stage did not run"},
                           evidence=Counter())
    examples = []
    for conflict in dedupe.label_conflict_examples:
        kept = [r.text for r in conflict.rows if r.kept]
        examples.append({"cluster_id": conflict.cluster_id,
                         "labels": sorted({r.label for r in conflict.rows if r.label is not None}),
                         "text": kept[0] if kept else (conflict.rows[0].text if conflict.rows else None)})
    summary = {"ran": True, "clusters": dedupe.label_conflict_clusters, "examples": examples}
    bounds = []
    if config.max_label_conflict_clusters is not None:
        bounds.append(Bound("label_conflicts", "label_conflict_clusters", max_value=config.max_label_conflict_clusters))
    # Evidence for the report: how many clusters of each size (kept rows plus the duplicates removed).
    return CheckResult("label_conflicts", summary, metrics={"label_conflict_clusters": dedupe.label_conflict_clusters},
                       bounds=bounds, evidence=Counter(dedupe.cluster_sizes))
