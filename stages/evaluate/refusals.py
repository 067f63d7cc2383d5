"""refusals: for instruction and chat data, the share of published responses that are refusals, and the
refusal phrases and placeholders found (in published rows and in the rows clean removed for them).

The figures come from clean's signal columns (`completion_refusal`, `completion_refusal_phrase`,
`completion_placeholder`, ...) and from the `details` of rejected rows; nothing is detected again here.
A kind with labels (classification) has no responses: the check does not run.
"""
from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config
from stages.evaluate.result import Bound, CheckResult

# Where a response's refusal score is, in the order looked for (the default rule scores `completion`).
REFUSAL_COLUMNS = ("completion_refusal", "last_assistant_refusal", "assistant_refusal")


def _counts(frames: list[pd.DataFrame], column: str) -> Counter:
    found: Counter = Counter()
    for df in frames:
        if column in df:
            found.update(v for v in df[column].dropna().tolist() if v)
    return found


def _rejected(candidate: Candidate, suffix: str) -> Counter:
    """Values of `*<suffix>` found in the details of rows clean removed (the phrase beside a refusal score)."""
    found: Counter = Counter()
    rejected = candidate.rejected
    if rejected is None or not len(rejected) or "details" not in rejected:
        return found
    for details in rejected.loc[rejected["stage"] == "clean", "details"].dropna():
        try:
            d = json.loads(details)
        except ValueError:
            continue
        found.update(v for k, v in d.items() if k.endswith(suffix) and isinstance(v, str))
    return found


def check(candidate: Candidate, config: Config) -> CheckResult:
    if candidate.kind.label_field is not None:
        return CheckResult("refusals", {"ran": False, "skipped": "classification records have no responses"}, evidence={})
    frames = [df for df in candidate.splits.values() if len(df)]
    rows = sum(len(df) for df in frames)
    column = next((c for c in REFUSAL_COLUMNS if any(c in df for df in frames)), None)
    summary = {"ran": column is not None, "column": column, "rows": rows,
               "refusal_phrases": dict(_counts(frames, f"{column}_phrase").most_common(20)) if column else {},
               "refusal_phrases_removed": dict(_rejected(candidate, "refusal_phrase").most_common(20)),
               "placeholders": dict(_counts(frames, "completion_placeholder").most_common(20)),
               "placeholders_removed": dict(_rejected(candidate, "placeholder").most_common(20))}
    if column is None:
        summary["skipped"] = "no refusal score: clean's `completion.refusal` signal was not computed"
        return CheckResult("refusals", summary, evidence=summary)
    refusals = sum(int((df[column].fillna(0) > 0).sum()) for df in frames if column in df)
    share = refusals / rows if rows else 0.0
    summary.update(refusals=refusals, share=round(share, 6))
    bounds = [Bound("refusals", "refusal_share", max_value=config.max_refusal_share)] \
        if config.max_refusal_share is not None else []
    return CheckResult("refusals", summary, metrics={"refusal_share": share}, bounds=bounds, evidence=summary)
