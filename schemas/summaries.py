"""Typed summaries: the facts a stage computes that someone downstream needs (the quality gate, the
manifest, the report).

A stage class names its summary type (`Stage.summary_type`) and returns one from `Stage.summarize()` once
its output is written; the executor saves it in the stage folder's `stats.json` and reloads it when the
stage is reused from cache, then hands every summary of the run to the gate in one `Summaries` object,
looked up by type. The types that cross a stage boundary live here, so that the gate reads them without
importing the stage that made them; a type only its own stage reads stays in that stage's module.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict


class Summary(BaseModel):
    """Base of every stage summary: frozen, unknown keys rejected, JSON round-trip (`model_dump(mode="json")`
    / `model_validate`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def notes(self) -> list[str]:
        """Lines a person should read beside the stage's row in the funnel (what the stage decided from the
        data, not from the config): `sftpipe run`, `versions show` and the report print them."""
        return []


S = TypeVar("S", bound=Summary)


class Summaries:
    """The summaries of one run, one per type: `summaries.get(DedupeSummary)` is dedupe's, or None when no
    stage of the run made one."""

    def __init__(self, items: Iterable[Summary] = ()):
        self._by_type: dict[type[Summary], Summary] = {}
        for item in items:
            self.add(item)

    def add(self, summary: Summary) -> None:
        if type(summary) in self._by_type:
            raise ValueError(f"two stages of one run made a {type(summary).__name__}")
        self._by_type[type(summary)] = summary

    def get(self, kind: type[S]) -> S | None:
        return self._by_type.get(kind)  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Summary]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)


# -- clean ------------------------------------------------------------------------------------------------


class FoundLanguages(Summary):
    """What `lang: {allowed: auto}` found: the languages making up at least `min_share` of the sampled rows
    that have a language (share of those rows, most first), from `sample_rows` evenly spaced input rows."""

    languages: dict[str, float]
    sample_rows: int  # input rows read
    identified_rows: int  # of those, rows that reached the rule and have a language (the shares' base)
    min_share: float

    def line(self, column: str) -> str:
        base = f"of {self.identified_rows:,} sampled rows with a language"
        if not self.languages:
            return (f"{column} auto: no language makes up {self.min_share:.0%} {base}; the rule is off"
                    if self.identified_rows else f"{column} auto: no sampled row has a language; the rule is off")
        found = ", ".join(f"{code} {share:.0%}" for code, share in self.languages.items())
        return f"{column} auto: {found} ({base}, {self.sample_rows:,} rows read)"


class CleanSummary(Summary):
    """The rules clean applied, by signal column: `{"lang": {"allowed": ["en"]}, "n_chars": {"min": 1, ...}}`
    (a `lang: {allowed: auto}` rule with the languages it found), and what each auto rule found."""

    rules: dict[str, dict[str, Any]]
    auto_languages: dict[str, FoundLanguages] = {}  # by signal column (`lang`, `completion_lang`)

    def notes(self) -> list[str]:
        return [found.line(column) for column, found in self.auto_languages.items()]

    def allowed(self, column: str) -> list[str] | None:
        """The values a string rule allows (the gate's default languages), or None without such a rule."""
        rule = self.rules.get(column) or {}
        allowed = rule.get("allowed")
        return list(allowed) if isinstance(allowed, list) and allowed else None  # never "auto": clean resolves it

    def bound(self, column: str, side: str) -> float | None:
        """A numeric rule's `min` or `max` on a signal column (`n_chars`, `prompt.n_chars`), or None."""
        value = (self.rules.get(column) or {}).get(side)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- dedupe -----------------------------------------------------------------------------------------------


class Similarity(Summary):
    """What "duplicate" meant: the key compared, the shingling and the Jaccard threshold (the leakage check
    uses the same)."""

    shingle: str  # word | char | auto
    ngram: int
    threshold: float
    key: str = "text"  # the record kind's dedupe key: text | prompt | completion | pair | conversation
    char_ngram: int | None = None  # shingle auto: characters per shingle for texts written without spaces
    punctuation: str = "keep"  # keep | drop | drop_short (texts under 50 words): dedupe.punctuation
    labels_distinguish: bool = False  # a near copy with another label is another example (label_conflicts: hybrid)


class ConflictRow(Summary):
    id: str
    text: str | None
    label: str | None
    kept: bool


class LabelConflict(Summary):
    """A duplicate cluster whose labelled rows disagree, with up to 10 of its rows."""

    cluster_id: int
    rows: list[ConflictRow]


class DedupeSummary(Summary):
    """What dedupe decided, over every row it read (kept and removed)."""

    similarity: Similarity
    exact_removed: int
    near_removed: int
    cluster_sizes: dict[int, int]  # cluster size (rows, kept + removed) → number of clusters of that size
    label_conflict_clusters: int  # clusters whose labelled rows carry different labels
    label_conflict_examples: list[LabelConflict]  # up to 10


# -- label_noise -----------------------------------------------------------------------------------------


class LabelNoiseSummary(Summary):
    """What the label_noise stage found and did, over every row it read (before dedupe).

    `flagged` rows are those cleanlab finds contradicted by the out-of-sample probabilities; `confident`
    those of them whose suggested label has probability >= `min_confidence`; `acted` how many the action
    touched (dropped, or marked for review) after the per-class cap — 0 when the model is too weak
    (`weak_model` says why) or the action is `warn`."""

    ran: bool
    skipped: str | None = None  # why no evidence was computed
    action: str  # warn | drop | review
    model: str | None = None
    # The fit's settings (the stage's config; `folds` as used: fewer when a class has fewer rows): the gate
    # reads the stage's verdicts back instead of fitting again when its own settings are the same.
    folds_configured: int | None = None
    folds: int | None = None
    C: float | None = None
    seed: int | None = None
    group_copies: bool | None = None
    labelled_rows: int = 0
    cv_accuracy: float | None = None
    majority_rate: float | None = None
    kappa: float | None = None
    min_kappa: float | None = None
    weak_model: str | None = None  # set when the model is too weak to act on
    flagged: int = 0
    share: float = 0.0
    confident: int = 0
    min_confidence: float | None = None
    capped: int = 0  # confident rows left alone by the per-class cap
    acted: int = 0
    acted_by_label: dict[str, int] = {}  # given label → rows acted on
    by_label_pair: dict[str, int] = {}  # "given → suggested" of the rows acted on (top 20)
    passes: int = 1  # fits configured (`passes`): each after the first on the rows not acted on before
    acted_per_pass: list[int] = []  # rows each fit acted on (warn: would act on); empty when the model is too weak


def acted_in_passes(block: dict) -> str:
    """" in 2 passes (644 + 143)" when more than one fit of the label_noise stage acted (`block`: its summary as
    the manifest holds it), else "": the card's and the terminal's line on label noise say it so."""
    per = block.get("acted_per_pass") or []
    return f" in {len(per)} passes ({' + '.join(f'{k:,}' for k in per)})" if len(per) > 1 else ""


# -- decontaminate ----------------------------------------------------------------------------------------


class EvalFile(Summary):
    """One file of an evaluation set: path relative to the config, size, sha256."""

    path: str
    bytes: int
    sha256: str


class ContaminationExample(Summary):
    """A removed row and the eval item it matched (`details` of its rejected row, plus an excerpt)."""

    id: str
    field: str  # our field compared
    eval_id: str
    eval_field: str
    match: str  # ngram | whole_item | whole_row | near
    ngram: str | None = None  # the overlapping normalized text (n-gram modes)
    jaccard: float | None = None  # near mode
    text: str  # our field's text, up to 300 characters


class EvalSetFigures(Summary):
    """One evaluation set: what was read, how its items are compared, and the rows removed for it."""

    name: str
    files: list[EvalFile]
    fields: list[str]  # its fields compared
    items: int  # items read
    unreadable: dict[str, int]  # records that could not be read, by reason
    empty: int  # items with nothing to compare (every compared text empty once normalized)
    compared_as: dict[str, int]  # entries (item × field) by rule: ngram, whole_item, whole_row (or near)
    rows_removed: int  # rows removed for an item of this set (a row matching two sets counts for the first)
    examples: list[ContaminationExample]


class DecontaminationSummary(Summary):
    """What the decontaminate stage checked and removed, and the section it ran with (`settings`), so the
    gate re-checks the published rows with the same eval sets and rules (paths relative to the config)."""

    mode: str  # ngram | near | both
    fields: list[str]  # our fields compared
    settings: dict[str, Any]  # the decontaminate section as run (pipeline.sources.eval_sets.Config)
    rows_checked: int
    rows_removed: int
    eval_sets: list[EvalSetFigures]


# -- annotate ---------------------------------------------------------------------------------------------


class Agreement(Summary):
    """How much the annotators agree; None where a figure is undefined. `level` says what
    `krippendorff_alpha` measures: nominal (labels, preferences) or ordinal (ratings: then the interval
    alpha, quadratic-weighted kappa per pair and each annotator's bias are beside it)."""

    level: str = "nominal"
    krippendorff_alpha_interval: float | None = None
    weighted_kappa: list[dict[str, Any]] = []  # ratings: per annotator pair, quadratic-weighted Cohen's kappa
    annotator_bias: dict[str, dict[str, Any]] = {}  # ratings: mean offset from the rows' aggregated rating

    items: int | None = None
    items_with_2plus: int | None = None
    annotations: int | None = None
    krippendorff_alpha: float | None = None
    fleiss_kappa: float | None = None
    cohen_kappa: list[dict[str, Any]] = []  # per annotator pair: a, b, n, observed_agreement, kappa
    annotator_consensus: dict[str, dict[str, Any]] = {}
    per_label_agreement: dict[str, float | None] = {}
    confusion: dict[str, dict[str, int]] = {}  # label from one annotator → label from another → pairs (symmetric)
    pairs: int | None = None  # pairs of annotations of the same item
    pair_confusion: dict[str, dict[str, int]] = {}  # each pair once: first annotator's label → the other's
    pair_axes: list[str] = []  # who the rows and the columns of pair_confusion are


class Tie(Summary):
    """A row whose annotators' votes tied: no label decided, its source label kept."""

    id: str
    votes: dict[str, int]


class LabelChange(Summary):
    """A row whose label the annotate stage changed: from the source label to people's."""

    id: str
    before: str | None
    after: str
    by: str  # "annotation", or "review of vN"


class ReviewSummary(Summary):
    """One label review's outcome (`stages.annotate.review`): its rows, the decisions, where they applied."""

    version: str  # the version whose label issues were reviewed
    url: str  # the review project's page
    project_id: int
    rows: int
    done: int
    decided: int
    unresolved: int  # ties: no decision
    applied: int  # decisions applied to a row whose text is what the reviewer saw
    relabelled: int  # of those, rows whose label changed
    stale: int  # not applied: the row's text changed since it was reviewed
    absent: int  # not applied: the row is no longer in the data


class AnnotationSummary(Summary):
    """The annotate stage's outcome: where the labels came from, coverage, aggregation and agreement, and
    the label reviews applied. Never a token: the server is named by its URL. The project fields are None
    where the section selects no rows of its own (only reviews)."""

    url: str | None
    project_id: int | None
    project_title: str | None
    select: str
    annotators_per_task: int
    selected: int
    done: int
    coverage: float
    annotations: int
    annotations_aside: int
    annotators: list[str]
    aggregation: str
    labelled_rows: int
    unresolved: int
    changed_from_source: int
    agreement: Agreement
    annotator_accuracy: dict[str, float | None] | None = None
    relabelled: int = 0  # rows whose label the stage changed (people's labels and review decisions)
    relabelled_rows: list[LabelChange] = []  # the first 100 of them
    ties: list[Tie] = []  # the first 100 unresolved rows (all of them: annotations/agreement.json)
    reviews: list[ReviewSummary] = []
    warnings: list[str] = []
    mode: str = "label"  # label, or a review of responses: rate, edit, compare
    response_review: dict[str, Any] | None = None  # rate / edit / compare: what the review decided (rejected, edited, swapped, ties)

    def notes(self) -> list[str]:
        """A review of responses says what people changed beside the funnel's row (its `relabelled` column
        counts the edited responses, or the swapped pairs)."""
        r = self.response_review or {}
        if self.mode == "edit":
            return [f"{r.get('edited', 0):,} response(s) edited by people (each original in meta.review.original)"]
        if self.mode == "compare":
            fate = "set aside as preference_tie" if r.get("reject_ties", True) else "kept in the source's order"
            return [f"{r.get('swapped', 0):,} pair(s) swapped (people preferred the source's rejected response); "
                    f"{r.get('ties', 0):,} tie(s) {fate}"]
        return []
