"""split_overlap: no row id in two splits."""
from __future__ import annotations

from collections import defaultdict

from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config
from stages.evaluate.result import Bound, CheckResult


def check(candidate: Candidate, config: Config) -> CheckResult:
    where: dict[str, list[str]] = defaultdict(list)
    for s, df in candidate.splits.items():
        if "id" in df:
            for i in df["id"].dropna().unique():
                where[i].append(s)
    several = {i: ss for i, ss in where.items() if len(ss) > 1}
    summary = {"ids": len(several), "examples": [{"id": i, "splits": ss} for i, ss in list(several.items())[:20]]}
    return CheckResult("split_overlap", summary, metrics={"ids_in_several_splits": len(several)},
                       bounds=[Bound("split_overlap", "ids_in_several_splits", max_value=0)])
