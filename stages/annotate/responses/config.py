"""`annotate.responses`: how responses are rated, edited or compared (used when `annotate.mode` is not `label`)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_FLAGS = ("factually_wrong", "harmful", "refusal", "off_topic", "incomplete")


class ReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_rating: int = Field(5, ge=2, le=10, description="rate: ratings run from 1 to this")
    min_rating: float = Field(3.0, ge=1, description="rate: rows whose median rating is below this are rejected (low_rating)")
    rating_aggregation: Literal["median", "mean"] = Field("median", description="rate: how a row's ratings are combined")
    flags: list[str] = Field(list(DEFAULT_FLAGS), description="rate: the problems an annotator can tick")
    flag_share: float = Field(
        0.5, gt=0, le=1,
        description="rate: a row is rejected (flagged_<flag>) when at least this share of its annotators tick one flag")
    edit_rule: Literal["medoid", "first"] = Field(
        "medoid",
        description="edit: when annotators' edits differ — medoid: the text closest to the others (mean similarity; "
        "ties: the text most annotators submitted, then an edit over the original, then the earliest annotation); "
        "first: the earliest annotation")
    low_scores: list[str] = Field(
        ["completion_refusal", "completion_placeholders", "completion_unclosed_code_fence",
         "completion_ends_mid_sentence", "repeated_turns"],
        description="select: low_scores (sftpipe annotate push --review-low-scores) — clean's signal columns whose "
        "non-zero value sends a row for review (a row clean's rules dropped never reaches annotate: turn a rule off "
        "with `null` to review its rows instead)")
    reject_ties: bool = Field(True, description="compare: a pair whose majority is a tie (or split) goes to rejected.parquet "
                              "(preference_tie); False keeps the source order")

    @field_validator("flags")
    @classmethod
    def _flags(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or any(not f.strip() for f in v):
            raise ValueError("flags must be distinct, non-empty names")
        return v
