"""The `annotate:` section: which rows go to Label Studio, how many people label each, how labels are
aggregated, and which server is used."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.annotate.responses.config import ReviewConfig


class Review(BaseModel):
    """A review of a published version's likely label errors, pushed by `sftpipe annotate push
    --review-label-issues`: its own Label Studio project, whose decisions override the row's other labels on
    every later run. The CLI adds the reviews recorded for a dataset to its annotate section (one is
    written here only to apply a review by hand)."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(description="the version whose label issues were sent for review")
    project_title: str = Field(description="the review's Label Studio project")
    annotators_per_task: int = Field(1, ge=1, le=20, description="people per reviewed row")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    select: Literal["unlabelled", "sample", "flagged", "label_issues", "all", "none", "low_scores"] = Field(
        "unlabelled",
        description="rows that need a human: rows without a label, an audit sample of labelled rows, the rows "
        "listed in flagged_file (e.g. likely label errors found by evaluate), the rows the label_noise stage "
        "marked (`label_issue`; use with `label_noise.action: review`), all, or none (only `reviews`); "
        "rate / edit: low_scores — the rows a clean signal flags (responses.low_scores)",
    )
    flagged_file: str | None = Field(None, description="select: flagged — file with an `id` column (parquet, csv, jsonl) "
                                     "or one id per line (txt); relative to the config file")
    sample_size: int | None = Field(None, ge=1, description="select: sample — number of rows")
    sample_fraction: float | None = Field(None, gt=0, le=1, description="select: sample — share of the labelled rows")
    stratify: bool = Field(False, description="select: sample — proportional to each source label")
    seed: int = 0
    annotators_per_task: int = Field(1, ge=1, le=20, description="Label Studio's overlap (maximum annotations per task)")
    labels: list[str] | None = Field(None, min_length=2, description="the label set; default: the dataset's labels")
    choice: Literal["single", "multiple"] = "single"
    instructions: str = ""
    min_coverage: float = Field(1.0, ge=0, le=1, description="share of selected rows fully annotated before the run goes on")
    aggregation: Literal["majority", "dawid_skene"] = Field(
        "majority", description="how several people's labels (mode label) or preferences (mode compare) become one: "
        "majority vote (ties unresolved), or dawid_skene (each annotator weighted by their estimated reliability); "
        "ratings and edits have their own rules (responses.rating_aggregation, responses.edit_rule)")
    prefill: bool | None = Field(
        None, description="pre-select a label for the annotator (the source label or predictions_file's); default: on "
        "with one annotator per task, off with more, where it would anchor them and inflate their agreement")
    model_version: str = Field("source-label", description="model_version of the source-label pre-annotations")
    predictions_file: str | None = Field(
        None, description="a model's predictions to pre-annotate with instead of the source label: columns id, label, "
        "and optionally score and model_version (parquet, csv, jsonl); relative to the config file")
    project_title: str | None = Field(None, description="default: 'sftpipe: <dataset>'")
    url_env: str | None = Field(None, description="environment variable holding the server URL (default LABEL_STUDIO_URL)")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (default LABEL_STUDIO_API_KEY)")
    push_batch_size: int = Field(500, ge=1, le=10_000)
    # Review of responses (generation, chat and preference records): stages/annotate/responses/.
    mode: Literal["label", "rate", "edit", "compare"] = Field(
        "label", description="label: pick a class label (classification); rate: grade each response 1..max_rating "
        "with flags; edit: correct the response; compare: pick the better of two responses (preference records)")
    responses: ReviewConfig = Field(default_factory=ReviewConfig, description="rate / edit / compare settings")
    reviews: list[Review] = Field([], description="label reviews whose decisions apply (filled in by sftpipe from the "
                                  "reviews pushed for the dataset)")

    @property
    def prefilled(self) -> bool:
        """Whether tasks carry a pre-selected label (`prefill`, by default only when one person labels each)."""
        return self.prefill if self.prefill is not None else self.annotators_per_task == 1

    @model_validator(mode="after")
    def _check(self) -> "Config":
        if self.select == "sample" and (self.sample_size is None) == (self.sample_fraction is None):
            raise ValueError("select: sample needs exactly one of sample_size or sample_fraction")
        if self.select != "sample" and (self.sample_size is not None or self.sample_fraction is not None or self.stratify):
            raise ValueError("sample_size / sample_fraction / stratify apply to select: sample only")
        if self.mode == "label" and self.select == "low_scores":
            raise ValueError("select: low_scores picks responses to review: it needs mode rate or edit")
        if self.mode != "label" and self.select == "none":
            raise ValueError("select: none is for label reviews only; a review of responses (mode "
                             f"{self.mode}) needs rows to send")
        if self.mode in ("rate", "edit") and self.aggregation == "dawid_skene":
            raise ValueError(f"aggregation: dawid_skene fits categorical answers (mode label or compare), not mode "
                             f"{self.mode}: " + ("ratings are ordinal — set responses.rating_aggregation (median or "
                             "mean, with support)" if self.mode == "rate" else "edits are free text — set "
                             "responses.edit_rule (medoid or first)"))
        if (self.select == "flagged") != (self.flagged_file is not None):
            raise ValueError("select: flagged and flagged_file go together")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self
