"""agreement: the annotators' Krippendorff's alpha and Fleiss' kappa at or above a floor.

The figures are the annotate stage's (`AnnotationSummary.agreement`); without annotation the check does not
run and the report says there is nothing to show.
"""
from __future__ import annotations

from schemas.summaries import AnnotationSummary
from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config
from stages.evaluate.result import Bound, CheckResult

FIGURES = ("krippendorff_alpha", "fleiss_kappa")


def check(candidate: Candidate, config: Config) -> CheckResult:
    annotation = candidate.summaries.get(AnnotationSummary)
    if annotation is None:
        return CheckResult("agreement", {}, evidence={})
    figures = annotation.agreement.model_dump()
    metrics = {k: float(figures[k]) for k in FIGURES if isinstance(figures.get(k), (int, float))}
    bounds = [Bound("agreement", k, min_value=config.agreement_min) for k in metrics] if config.agreement_min is not None else []
    summary = {**{k: figures[k] for k in FIGURES if figures.get(k) is not None}, "source": "annotate stage"}
    # Everything the report shows: the figures, per-pair kappas, the annotator confusion matrix, the ties and
    # the rows whose label people (or a label review) changed.
    evidence = {**figures, "annotators": annotation.annotators, "source": "annotate stage",
                "unresolved": annotation.unresolved, "changed_from_source": annotation.changed_from_source,
                "relabelled": annotation.relabelled, "reviews": [r.model_dump() for r in annotation.reviews],
                "mode": annotation.mode, "response_review": annotation.response_review,
                "annotator_accuracy": annotation.annotator_accuracy,
                "ties": [t.model_dump() for t in annotation.ties],
                "relabelled_rows": [c.model_dump() for c in annotation.relabelled_rows]}
    return CheckResult("agreement", summary, metrics=metrics, bounds=bounds, evidence=evidence)
