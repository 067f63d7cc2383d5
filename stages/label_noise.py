"""label_noise: label evidence for every labelled row, and what to do with the rows it says are mislabelled.

Runs after decontaminate and before dedupe, on every record kind with a label (a kind without one passes
through untouched). Out-of-sample class probabilities come from `pipeline.label_model` (TF-IDF + logistic
regression, k-fold, then cleanlab) — the model the quality gate's `label_noise` check uses too. Every row
that gets evidence carries it on as columns (beside clean's signals, so they reach the published version):

- `label_prob`: the out-of-sample probability of the row's own label (low = suspicious);
- `suggested_label`, `suggested_prob`: the most probable label and its probability;
- `label_issue`: the row the action applies to — cleanlab flags it, its suggested label has probability
  >= `min_confidence`, it is within the per-class cap, and the model is strong enough (with `warn`: the
  rows it would act on);
- `label_issue_rank`: cleanlab flags the row (whatever the action): its rank among the flagged rows, 1 =
  most suspicious. With the three above, what the quality gate's `label_noise` check reads back on the
  published rows instead of fitting the same model again (`pipeline.label_model.verdicts_from_columns`).

Dedupe reads `label_prob` / `suggested_label` to decide which label an exact-duplicate cluster keeps when
its labels tie (`dedupe.label_conflicts`). Then `action` decides what happens to the `label_issue` rows:

- `warn`: nothing (the report counts them);
- `drop` (default): they go to rejected.parquet with reason `label_noise`, details naming the suggested
  label and both probabilities;
- `review`: they stay, and the annotate stage's `select: label_issues` sends them to Label Studio.

Two guards keep the action from doing harm (measured in benchmarks/outcome):

- *weak model*: when Cohen's kappa of the out-of-sample predictions against the given labels is below
  `min_kappa`, the model cannot tell a wrong label from a hard one: nothing is acted on, and the summary,
  report and card say so. Kappa, not accuracy: it discounts what always answering the majority class gets.
- *per-class cap*: at most `max_class_share` of a given label's rows are acted on (the most suspicious
  first), so a small class the cheap model confuses with a larger one is not emptied (on clean TREC the
  model's confident flags are a quarter of ABBR's rows, and all but one of 15 sampled were correct labels).

Folds hold every copy of a text (up to case, punctuation and spacing) out together (`group_copies`): the
stage runs before dedupe, where a verbatim copy in another fold would vouch for a row's label (or argue
against it) with the very text being judged. Measured on the outcome benchmark's planted corruptions
(experiments/grouped_folds.py): the precision of the drops rises and half as many correct rows are dropped.

Whole stream: evidence needs every row. The first read takes only id / text / label; rows are held as
Python lists of those (the model needs them in memory anyway), the second read routes them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline import label_model
from pipeline.stage import Stage, StageInput, StageOutput, rejected_rows
from schemas.summaries import LabelNoiseSummary

REASON = "label_noise"
COLUMNS = label_model.COLUMNS


class Config(label_model.FitSettings):  # folds, group_copies, C, seed: the model's, shared with the gate's check

    enabled: bool = Field(True, description="compute label evidence (when the rows have labels)")
    action: Literal["warn", "drop", "review"] = Field(
        "drop", description="what happens to rows flagged with confidence: warn (nothing) | drop (rejected, reason "
                            "label_noise) | review (annotate's `select: label_issues` sends them to Label Studio)")
    min_confidence: float = Field(0.8, ge=0.0, le=1.0,
                                  description="a flagged row is acted on when its suggested label's probability is at least this")
    max_class_share: float = Field(0.5, gt=0.0, le=1.0,
                                   description="at most this share of a label's rows is acted on (most suspicious first)")
    min_kappa: float = Field(0.15, ge=-1.0, le=1.0,
                             description="weak-model guard: no action when Cohen's kappa of the out-of-sample "
                                         "predictions against the given labels is below this")
    min_rows: int = Field(50, ge=2, description="no evidence below this many labelled rows")
    passes: int = Field(1, ge=1, le=5,
                        description="fits: each after the first refits on the rows no earlier pass acted on and acts on "
                                    "what it finds (a wrong label hides others of its kind from a model that learnt it)")


def acted_rows(ev: label_model.LabelEvidence, cfg: Config,
               room: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rule, per evidence row: `confident` (cleanlab flags it and its suggested label has probability ≥
    min_confidence) and `acted` (confident, within the per-class cap: at most max_class_share of a label's
    rows, the most suspicious — lowest probability of the given label — first). `room`: rows of each class
    (index into `ev.classes`) still allowed, when earlier passes used some of the cap. The weak-model guard is
    the stage's (`_decide`)."""
    confident = ev.issue & (ev.suggested_prob >= cfg.min_confidence)
    acted = np.zeros(len(ev.y), dtype=bool)
    class_size = np.bincount(ev.y, minlength=len(ev.classes))
    for c in range(len(ev.classes)):
        cand = np.flatnonzero(confident & (ev.y == c))
        cap = int(np.floor(cfg.max_class_share * class_size[c])) if room is None else int(room[c])
        acted[cand[np.argsort(ev.given_prob[cand], kind="stable")[:cap]]] = True
    return confident, acted


@dataclass
class Passes:
    """The verdicts of every pass merged into the first pass's evidence (each row's from the last fit that
    judged it), which rows were acted on, and how many per pass."""

    ev: label_model.LabelEvidence
    confident: np.ndarray
    acted: np.ndarray
    acted_per_pass: list[int]
    first_fit: dict[str, Any]  # the first fit's figures (`Verdicts.figures`): the model on the rows as they came
    strong_enough: bool  # the first fit passes the weak-model guard (else nothing may be acted on)

    def acted_at(self, n: int) -> np.ndarray:
        """Which of the n rows read the action applies to (their positions): none when the model is too weak."""
        act = np.zeros(n, dtype=bool)
        if self.strong_enough:
            act[self.ev.rows[self.acted]] = True
        return act


def judge(texts: list[str | None], labels: list[str | None], cfg: Config, *, label_set: list[str] | None = None,
          workers: int = 1) -> Passes | str:
    """The stage's whole verdict on these rows — evidence, then `cfg.passes` fits — or why there is none (a
    sentence). The benchmarks call this too, so what they measure is what the stage does."""
    ev = label_model.evidence(texts, labels, cfg, label_set=label_set, min_rows=cfg.min_rows, workers=workers)
    return ev if isinstance(ev, str) else refit_passes(ev, texts, labels, cfg, label_set=label_set, workers=workers)


def refit_passes(ev: label_model.LabelEvidence, texts: list[str | None], labels: list[str | None], cfg: Config,
                 label_set: list[str] | None = None, workers: int = 1) -> Passes:
    """Act on `ev` (the first fit, over all rows), then refit on the rows not acted on and act again, up to
    `cfg.passes` fits; stop after a pass that acts on nothing, or at one with no evidence or too weak a model.
    The per-class cap holds over all passes together. `ev` is updated in place: each row's verdict is from
    the last fit that judged it, and `ranked` lists the rows acted on, pass by pass, before the last fit's
    flags. Measured on the outcome benchmark's pipeline arms (benchmarks/outcome/README.md, "Label noise in
    passes"): at 10 % / 20 % flips a second pass finds 100 / 167 more wrong labels of TREC for 43 / 44 correct
    rows; of SMS, with the cap at 0.7, 36 / 152 for 6 / 13."""
    first_fit, strong = ev.figures(), ev.strong_enough(cfg.min_kappa)
    confident, acted = acted_rows(ev, cfg)
    per_pass = [int(acted.sum())]
    if not strong:  # no refit: the stage's guard acts on nothing
        return Passes(ev, confident, acted, per_pass, first_fit, strong)
    cap = np.floor(cfg.max_class_share * np.bincount(ev.y, minlength=len(ev.classes))).astype(np.int64)
    order = [ev.ranked[acted[ev.ranked]]]  # the rows each pass acted on, in its order of suspicion
    while len(per_pass) < cfg.passes and per_pass[-1]:
        left = np.flatnonzero(~acted)  # positions in ev's rows
        sub = label_model.evidence([texts[i] for i in ev.rows[left]], [labels[i] for i in ev.rows[left]], cfg,
                                   label_set=label_set, min_rows=cfg.min_rows, workers=workers)
        if isinstance(sub, str) or not sub.strong_enough(cfg.min_kappa):
            break
        to_ev = np.array([ev.classes.index(c) for c in sub.classes], dtype=np.int64)
        room = cap - np.bincount(ev.y[acted], minlength=len(ev.classes))
        sub_confident, sub_acted = acted_rows(sub, cfg, room=room[to_ev])
        at = left[sub.rows]  # a label with < 2 rows left is not judged again: its rows keep their verdicts
        kept_verdict = np.setdiff1d(left, at)
        ev.given_prob[at], ev.suggested_prob[at] = sub.given_prob, sub.suggested_prob
        ev.suggested[at], ev.issue[at] = to_ev[sub.suggested], sub.issue
        ev.probs[at] = 0.0
        ev.probs[np.ix_(at, to_ev)] = sub.probs
        confident[at], acted[at] = sub_confident, sub_acted
        stale = ev.ranked[np.isin(ev.ranked, kept_verdict)]
        ev.ranked = np.concatenate([*order, at[sub.ranked], stale]).astype(np.int64)
        order.append(at[sub.ranked[sub_acted[sub.ranked]]])
        per_pass.append(int(sub_acted.sum()))
    return Passes(ev, confident, acted, per_pass, first_fit, strong)


class LabelNoiseStage(Stage):
    name = "label_noise"
    Config = Config
    whole_stream = True
    summary_type = LabelNoiseSummary

    def run(self, inputs: StageInput | None) -> Iterator[StageOutput]:
        cfg: Config = self.config
        kind = self.ctx.kind
        label_field, text_field = kind.label_field, kind.text_field
        if inputs is None or inputs.num_rows == 0 or not cfg.enabled or label_field is None or text_field is None:
            why = ("disabled in the config" if not cfg.enabled else
                   f"{kind.name} records have no labels" if label_field is None or text_field is None else "no rows")
            self._summary = LabelNoiseSummary(ran=False, skipped=why, action=cfg.action)
            for batch in (inputs.batches() if inputs is not None and inputs.num_rows else ()):
                self.ctx.progress(batch.num_rows)
                yield StageOutput(kept=batch)
            return

        texts: list[str | None] = []
        labels: list[str | None] = []
        for batch in inputs.batches(columns=[text_field, label_field]):
            texts.extend(batch.column(text_field).to_pylist())
            labels.extend(batch.column(label_field).cast(pa.string()).to_pylist())
        passes = judge(texts, labels, cfg, label_set=self.ctx.labels, workers=self.ctx.workers)
        del texts
        n = len(labels)
        self._figures: dict[str, Any] = {}
        if isinstance(passes, str):
            self._summary = LabelNoiseSummary(ran=False, skipped=passes, action=cfg.action)
            columns = {f.name: pa.nulls(n, f.type) for f in COLUMNS}
            act = np.zeros(n, dtype=bool)
        else:
            columns, act = self._decide(passes, labels)
        yield from self._route(inputs, columns, act, labels)

    def _decide(self, passes: Passes, labels: list[str | None]) -> tuple[dict[str, pa.Array], np.ndarray]:
        """The evidence columns for all rows, and which rows the action touches."""
        cfg: Config = self.config
        n = len(labels)
        ev, figures = passes.ev, passes.first_fit
        confident = passes.confident
        capped = int(confident.sum() - passes.acted.sum())
        weak = None
        if not passes.strong_enough:  # its flags are not presented as errors: no row is marked
            weak = (f"model too weak to act on: kappa {figures['kappa']:.3f} < min_kappa {cfg.min_kappa:g} "
                    f"(cv accuracy {figures['cv_accuracy']:.3f}, majority-class rate {figures['majority_rate']:.3f})")
        marked = passes.acted & passes.strong_enough  # `label_issue`: what drop would drop / review sends (warn: would act on)
        acted = marked & (cfg.action != "warn")
        classes = np.array(ev.classes, dtype=object)
        given_p, sugg, sugg_p = ev.given_prob, ev.suggested, ev.suggested_prob

        def spread(values: np.ndarray, typ: pa.DataType) -> pa.Array:
            out = np.full(n, None, dtype=object)
            out[ev.rows] = values
            return pa.array(out.tolist(), typ)

        rank = np.full(len(ev.y), None, dtype=object)
        rank[ev.ranked] = np.arange(1, len(ev.ranked) + 1)
        columns = {
            "label_prob": spread(label_model.rounded(given_p), pa.float64()),
            "suggested_label": spread(classes[sugg], pa.string()),
            "suggested_prob": spread(label_model.rounded(sugg_p), pa.float64()),
            "label_issue": spread(marked, pa.bool_()),
            "label_issue_rank": spread(rank, pa.int64()),
        }
        act = passes.acted_at(n) if cfg.action != "warn" else np.zeros(n, dtype=bool)
        flagged = int(ev.issue.sum())  # by the last fit that judged each row
        pairs = Counter(f"{classes[ev.y[i]]} → {classes[sugg[i]]}" for i in np.flatnonzero(acted))
        self._summary = LabelNoiseSummary(
            ran=True, action=cfg.action, model=figures["model"], folds_configured=cfg.folds, folds=ev.folds,
            C=cfg.C, seed=cfg.seed, group_copies=cfg.group_copies, labelled_rows=figures["labelled_rows"],
            cv_accuracy=figures["cv_accuracy"], majority_rate=figures["majority_rate"], kappa=figures["kappa"],
            min_kappa=cfg.min_kappa, weak_model=weak, flagged=flagged, share=round(flagged / len(ev.y), 6),
            confident=int(confident.sum()), min_confidence=cfg.min_confidence, capped=capped,
            acted=int(acted.sum()), acted_by_label=dict(Counter(classes[ev.y[acted]].tolist())),
            by_label_pair=dict(pairs.most_common(20)), passes=cfg.passes,
            acted_per_pass=[] if weak else passes.acted_per_pass)
        self._figures = {"kappa": figures["kappa"], "cv_accuracy": figures["cv_accuracy"]}
        return columns, act

    def _route(self, inputs: StageInput, columns: dict[str, pa.Array], act: np.ndarray,
               labels: list[str | None]) -> Iterator[StageOutput]:
        cfg: Config = self.config
        drop = act if cfg.action == "drop" else np.zeros(len(act), dtype=bool)
        start = 0
        for batch in inputs.batches():
            m = batch.num_rows
            sl = slice(start, start + m)
            for f in COLUMNS:
                if f.name in batch.schema.names:  # a re-run over a version that already carries them
                    batch = batch.drop_columns([f.name])
                batch = batch.append_column(f, columns[f.name].slice(start, m))
            keep = ~drop[sl]
            kept = batch.filter(pa.array(keep)) if not keep.all() else batch
            rejected = None
            if not keep.all():
                idx = np.flatnonzero(~keep)
                rows = batch.take(pa.array(idx))
                details = [{"given_label": labels[start + i], "suggested_label": columns["suggested_label"][start + i].as_py(),
                            "suggested_prob": columns["suggested_prob"][start + i].as_py(),
                            "label_prob": columns["label_prob"][start + i].as_py(), **self._figures}
                           for i in idx.tolist()]
                rejected = rejected_rows(rows, self.name, REASON, details, kind=self.ctx.kind)
            self.ctx.progress(m)
            start += m
            yield StageOutput(kept=kept if kept.num_rows else None, rejected=rejected)
        s = self._summary
        self.stats.update(flagged=s.flagged, confident=s.confident, acted=s.acted, action=cfg.action,
                          cv_accuracy=s.cv_accuracy, kappa=s.kappa, weak_model=s.weak_model)

    def summarize(self) -> LabelNoiseSummary | None:
        return getattr(self, "_summary", None)

    @classmethod
    def manifest_entries(cls, summary: LabelNoiseSummary | None, skipped: str | None) -> dict[str, Any]:
        """The manifest's `label_noise` block (the dataset card's line is drawn from it)."""
        if summary is None:
            return {"label_noise": {"ran": False, "skipped": skipped or "not run"}}
        return {"label_noise": summary.model_dump(mode="json")}
