"""The `evaluate:` section: which checks block, their bounds, and the user's own expectations."""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import schemas
from pipeline import label_model
from schemas.record import MAX_TEXT_CHARS
from stages.evaluate.ge import build_expectation

# Built-in checks, each a group of expectations; `non_blocking` in the config names those that only warn.
CHECKS = (
    "schema",  # the split's columns exist with the published types
    "not_null",  # no null id / text (and label in labelled splits)
    "unique_ids",  # ids unique within each split
    "split_overlap",  # no id in two splits
    "text_length",  # len(text) within bounds
    "label_set",  # labels within the dataset's label set
    "language",  # `lang` within the allowed languages
    "min_rows",  # enough rows per split
    "class_share",  # each label's share of a split between floor and ceiling
    "agreement",  # annotators' Krippendorff's alpha / Fleiss' kappa at or above a floor
    "leakage",  # no near duplicate of a train row in validation / test / the previous test split
    "label_noise",  # share of labelled rows flagged as likely label errors at most a ceiling
    "label_conflicts",  # duplicate clusters whose members carry different labels
    "field_length",  # generative kinds: len(prompt), len(completion) within bounds
    "role_order",  # chat: every conversation's roles in order (schemas.chat.ROLE_ORDER)
    "refusals",  # generative kinds: share of published rows whose response is a refusal at most a ceiling
    "decontamination",  # published rows matching an evaluation set (re-checked) at most a ceiling
    "rejected_share",  # share of a stage's input it removed, in all and per reason, at most a ceiling
)


class TextLength(BaseModel):
    """Length bounds in characters. `max` left out: clean's `n_chars` rule's max for the same text (one
    limit, one source: `schemas.record.MAX_TEXT_CHARS` unless the config changed clean's rule), so the
    gate never blocks what clean was told to keep."""

    model_config = ConfigDict(extra="forbid")
    min: int | None = Field(1, ge=0, description="shortest text allowed, in characters")
    max: int | Literal["auto"] | None = Field(
        "auto", description="longest text allowed, in characters (auto: clean's n_chars max; null: no bound)")

    @field_validator("max")
    @classmethod
    def _positive(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 (or auto, or null)")
        return value

    def resolved(self, clean_max: float | None) -> tuple[int | None, int | None]:
        """(min, max), `auto` taken from clean's rule (its n_chars max), else MAX_TEXT_CHARS."""
        if self.max != "auto":
            return self.min, self.max
        return self.min, int(clean_max) if clean_max is not None else MAX_TEXT_CHARS


class Leakage(BaseModel):
    """Near duplicates across splits. Shingling and threshold default to the dataset's `dedupe` section (so
    what the dedupe stage calls distinct is distinct here too), else casefolded word 5-grams at 0.8."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    shingle: Literal["word", "char", "auto"] | None = Field(None, description="n-grams of words or of characters")
    ngram: int | None = Field(None, ge=1, le=64, description="shingle length; shorter texts get one shingle of all tokens")
    threshold: float | None = Field(None, gt=0.0, le=1.0, description="Jaccard at or above which a pair is a leak")
    key: str | None = Field(None, description="what is compared (a record kind's dedupe key); default: dedupe's")
    char_ngram: int | None = Field(None, ge=1, le=64, description="shingle auto: characters per shingle (CJK, Thai)")
    punctuation: Literal["keep", "drop", "drop_short"] | None = Field(
        None, description="punctuation in the compared text (default: as the dedupe section)")
    labels_distinguish: bool | None = Field(
        None, description="a near copy with another label is no leak (default: as dedupe.label_conflicts: hybrid)")
    lsh_threshold: float = Field(0.5, gt=0.0, le=1.0, description="LSH tuning point; candidates are verified")
    num_perm: int = Field(128, ge=16, le=1024)
    max_leaked: int = Field(0, ge=0, description="leaked rows allowed per comparison")
    previous_version: bool = Field(True, description="also compare train with the previous version's test split")

    def resolved(self, dedupe: Any = None) -> "Leakage":
        """Fill the unset shingling fields from what dedupe called similar (`schemas.summaries.Similarity`,
        or any object with `shingle`, `ngram` and `threshold`)."""
        fill = {
            "shingle": self.shingle or getattr(dedupe, "shingle", None) or "word",
            "ngram": self.ngram or getattr(dedupe, "ngram", None) or 5,
            "threshold": self.threshold or getattr(dedupe, "threshold", None) or 0.8,
            "key": self.key or getattr(dedupe, "key", None),
            "char_ngram": self.char_ngram or getattr(dedupe, "char_ngram", None) or 3,
            "punctuation": self.punctuation if self.punctuation is not None else getattr(dedupe, "punctuation", "keep"),
            "labels_distinguish": self.labels_distinguish if self.labels_distinguish is not None
            else getattr(dedupe, "labels_distinguish", False),
        }
        out = self.model_copy(update=fill)
        out.lsh_threshold = min(out.lsh_threshold, out.threshold)
        return out


class RejectedShare(BaseModel):
    """Ceilings on what the stages removed, each a share of the rows the stage read. A label set that misses
    a class, a wrong format or encoding, a rule that misfires: the run still has rows to publish, and
    only this looks at what was not kept. A per-stage or per-reason entry replaces the general ceiling
    (null: unbounded)."""

    model_config = ConfigDict(extra="forbid")
    stage: float | None = Field(0.5, ge=0.0, le=1.0, description="any one stage removes at most this share of its input")
    reason: float | None = Field(0.25, ge=0.0, le=1.0, description="any one reason removes at most this share")
    per_stage: dict[str, float | None] = Field(default_factory=dict, description="a stage's own ceiling, by stage name")
    per_reason: dict[str, float | None] = Field(
        default_factory=lambda: dict(REASON_CEILINGS),
        description="a reason's own ceiling, by reason, over the defaults (labels outside `labels`: at most 1 % of "
                    "the rows read — more is a class the label set misses, not a stray typo)")

    @field_validator("per_reason")
    @classmethod
    def _over_defaults(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        return {**REASON_CEILINGS, **value}


REASON_CEILINGS: dict[str, float | None] = {"label_not_in_label_set": 0.01}


class LabelNoise(label_model.FitSettings):  # folds, group_copies, C, seed: as the label_noise stage's config
    enabled: bool = True
    max_share: float | None = Field(
        0.1, ge=0.0, le=1.0, description="gate: share of labelled rows flagged as label issues at most this"
    )
    min_rows: int = Field(50, ge=2, description="skip the check below this many labelled rows")
    # Default off since the stage holds a text's copies in one fold (`label_noise.group_copies`): before
    # that, a copy in another fold vouched for a row's label and reading back under-reported on duplicate-heavy
    # data (a 1M corpus, a third copies: 2 flags against a refit's 775); with grouped folds the same corpus
    # reads back 800 against 786, Tatoeba 230k 5 against 0 — at 3.7 s instead of 207 s (benchmarks/README.md).
    refit: bool = Field(
        False, description="fit the label model again on the published rows instead of reading the label_noise "
                            "stage's verdicts back from the rows' columns (the default: seconds instead of a second "
                            "fit; a fit is made anyway when the stage did not run or ran with other settings)")


class UserExpectation(BaseModel):
    """One Great Expectations expectation in GE's own terms, e.g.
    `{expectation_type: expect_column_values_to_match_regex, kwargs: {column: text, regex: "\\\\S"}}`."""

    model_config = ConfigDict(extra="forbid")
    expectation_type: str
    kwargs: dict[str, Any] = {}
    blocking: bool = True
    on: Literal["rows", "dataset"] = Field(
        "rows", description="rows: each split's rows; dataset: the one-row table of dataset-level figures"
    )
    splits: list[str] | None = Field(None, description="splits to run a rows expectation on (default all)")
    meta: dict[str, Any] = {}

    @model_validator(mode="after")
    def _buildable(self) -> "UserExpectation":
        if not re.fullmatch(r"expect_[a-z0-9_]+", self.expectation_type):
            raise ValueError(f"expectation_type {self.expectation_type!r} is not an expectation name (expect_...)")
        try:
            build_expectation(self.expectation_type, self.kwargs, {})
        except Exception as exc:  # GE raises many kinds; the message is what the user needs
            raise ValueError(f"{self.expectation_type}: {exc}") from None
        for s in self.splits or []:
            if s not in schemas.SPLITS:
                raise ValueError(f"unknown split {s!r} (splits: {', '.join(schemas.SPLITS)})")
        return self


class Config(BaseModel):
    """The `evaluate:` section of a dataset config."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_rows: dict[str, int] = Field(
        default_factory=lambda: {"train": 10, "validation": 1, "test": 1}, description="minimum rows per split"
    )
    text_length: TextLength = TextLength()
    class_share_min: float | Literal["auto"] | None = Field(
        "auto", description="each label's share of a split at least (default: min(0.01, 0.25 / number of "
                                          "classes) — a quarter of an even share, so 77 balanced intents pass)")
    class_share_max: float | None = Field(0.99, ge=0.0, le=1.0, description="each label's share of a split at most")
    labelled_splits: list[str] = Field(
        default_factory=lambda: list(schemas.SPLITS), description="splits where every row must have a label"
    )
    allowed_languages: list[str] | None = Field(
        None, description="languages (`lang` column) allowed; default: the clean stage's lang rule, if any"
    )
    languages_mostly: float = Field(1.0, ge=0.0, le=1.0, description="share of rows that must be in allowed_languages")
    agreement_min: float | None = Field(0.4, ge=-1.0, le=1.0, description="floor for Krippendorff's alpha / Fleiss' kappa")
    max_label_conflict_clusters: int | None = Field(0, ge=0, description="duplicate clusters with conflicting labels")
    field_length: dict[str, TextLength] = Field(
        default_factory=lambda: {"prompt": TextLength(min=1), "completion": TextLength(min=1)},
        description="generative kinds: length bounds (characters) per field (prompt, completion, or any field view); "
                    "an unset max is clean's `<field>.n_chars` max")
    max_refusal_share: float | None = Field(
        0.02, ge=0.0, le=1.0, description="generative kinds: share of published rows whose response is a refusal "
                                          "(clean's `refusal` signal on completion / last_assistant) at most this")
    max_contaminated: int | None = Field(
        0, ge=0, description="published rows that still match an evaluation set of the decontaminate section, "
                             "re-checked after removal (null: reported, not bounded)")
    leakage: Leakage = Leakage()
    label_noise: LabelNoise = LabelNoise()
    rejected_share: RejectedShare = RejectedShare()
    non_blocking: list[str] = Field(
        default_factory=lambda: ["label_conflicts", "label_noise"],
        description="built-in checks that warn instead of blocking",
    )
    expectations: list[UserExpectation] = Field(default_factory=list, description="your own GE expectations")
    report_label_issues: int = Field(50, ge=0, description="label issues listed in report.html")

    @field_validator("non_blocking")
    @classmethod
    def _known_checks(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in CHECKS]
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)} (checks: {', '.join(CHECKS)})")
        return names

    @field_validator("min_rows", "labelled_splits")
    @classmethod
    def _known_splits(cls, value):
        unknown = [s for s in value if s not in schemas.SPLITS]
        if unknown:
            raise ValueError(f"unknown split(s) {', '.join(unknown)} (splits: {', '.join(schemas.SPLITS)})")
        return value

    def blocking(self, check: str) -> bool:
        return check not in self.non_blocking

    def class_share_floor(self, classes: int) -> float | None:
        """Each label's least share of a split: the configured floor, or one that scales with the number of
        classes (a quarter of an even share, at most 1 %)."""
        if self.class_share_min != "auto":
            return self.class_share_min
        return min(0.01, 0.25 / classes) if classes else None

    @field_validator("class_share_min")
    @classmethod
    def _share(cls, value):
        if isinstance(value, (int, float)) and not 0 <= value <= 1:
            raise ValueError("must be a share between 0 and 1 (or auto, or null)")
        return value
