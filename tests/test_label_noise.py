"""The label_noise stage on real SMS Spam and TREC rows with planted label flips: evidence columns, the
drop / warn / review actions, the per-class cap, the weak-model guard, and the whole pipeline writing
rejected.parquet, the manifest block and the card line."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipeline.stage import StageContext
from stages.annotate.config import Config as AnnotateConfig
from stages.annotate.selection import select_rows
from stages.label_noise import Config, LabelNoiseStage

from .conftest import TableInput, run_pipeline, write_config


def rows_with_flips(shared_data: Path, name: str, n: int, flip_rate: float, seed: int = 3) -> pd.DataFrame:
    """`n` real rows of a shared data set, `flip_rate` of them given another label (recorded in `true_label`)."""
    df = pd.read_parquet(shared_data / name / "data.parquet")[["text", "label"]].sample(n, random_state=seed)
    df = df.reset_index(drop=True)
    labels = sorted(df["label"].unique())
    rng = random.Random(seed)
    df["true_label"] = df["label"]
    for i in rng.sample(range(n), int(flip_rate * n)):
        df.loc[i, "label"] = rng.choice([lab for lab in labels if lab != df.loc[i, "true_label"]])
    df["id"] = [f"r{i:05d}" for i in range(n)]
    return df


def as_table(df: pd.DataFrame) -> pa.Table:
    n = len(df)
    return pa.table({
        "id": df["id"].tolist(), "source": ["s"] * n, "source_file": ["s.parquet"] * n,
        "source_line": pa.array(range(1, n + 1), pa.int64()), "text": df["text"].tolist(),
        "label": df["label"].tolist(), "meta": ["{}"] * n,
    })


def run_stage(df: pd.DataFrame, labels: list[str] | None = None, **config):
    stage = LabelNoiseStage(Config(**config), StageContext(dataset="t", config_dir=Path("."), work_dir=Path("."),
                                                          labels=labels))
    outputs = list(stage.run(TableInput(as_table(df), 700)))
    kept = pa.Table.from_batches([o.kept for o in outputs if o.kept is not None]).to_pandas()
    rejected = [o.rejected for o in outputs if o.rejected is not None]
    for batch in rejected:
        schemas.check(batch, schemas.REJECTED, "label_noise rejected")
    rejected = pa.Table.from_batches(rejected, schema=schemas.REJECTED).to_pandas()
    return kept, rejected, stage.summarize()


@pytest.fixture(scope="module")
def sms(shared_data) -> pd.DataFrame:
    return rows_with_flips(shared_data, "sms_spam", 2500, 0.05)


def test_drop_sends_confident_label_errors_to_rejected_with_the_suggested_label(sms):
    kept, rejected, summary = run_stage(sms)
    assert len(kept) + len(rejected) == len(sms) and set(kept["id"]).isdisjoint(rejected["id"])
    truth = sms.set_index("id")
    assert summary.ran and summary.action == "drop" and summary.weak_model is None
    assert summary.acted == len(rejected) > 0 and (rejected["reason"] == "label_noise").all()
    flipped = truth.loc[rejected["id"], "label"] != truth.loc[rejected["id"], "true_label"]
    assert flipped.mean() >= 0.7, "most dropped rows are planted flips"
    planted = (truth["label"] != truth["true_label"]).sum()
    assert flipped.sum() >= 0.6 * planted, "and most planted flips are dropped"
    details = [json.loads(d) for d in rejected["details"]]
    assert all(d["suggested_label"] != d["given_label"] and d["suggested_prob"] >= 0.8 for d in details)
    assert all("kappa" in d and "cv_accuracy" in d for d in details)
    right = sum(d["suggested_label"] == truth.loc[i, "true_label"] for d, i in zip(details, rejected["id"]) if
                truth.loc[i, "label"] != truth.loc[i, "true_label"])
    assert right == flipped.sum(), "on two classes the suggestion of a dropped flip is its true label"
    # Evidence travels with every kept row.
    assert kept["label_prob"].notna().all() and kept["suggested_label"].notna().all()
    assert ((kept["label_prob"] > 0) & (kept["label_prob"] <= 1)).all() and not kept["label_issue"].any()
    assert summary.cv_accuracy is not None and summary.kappa > summary.min_kappa


def test_warn_keeps_every_row_and_marks_the_rows_it_would_drop(sms):
    kept, rejected, summary = run_stage(sms, action="warn")
    assert len(kept) == len(sms) and len(rejected) == 0 and summary.acted == 0
    dropped = run_stage(sms)[1]
    assert set(kept.loc[kept["label_issue"], "id"]) == set(dropped["id"])


def test_review_marks_rows_that_annotate_selects(sms):
    kept, rejected, summary = run_stage(sms, action="review")
    assert len(rejected) == 0 and summary.acted == int(kept["label_issue"].sum()) > 0
    chosen = select_rows(kept[["id", "text", "label", "source", "label_issue"]], AnnotateConfig(select="label_issues"))
    assert set(chosen["id"]) == set(kept.loc[kept["label_issue"], "id"]) and "label_issue" not in chosen.columns


def test_per_class_cap_limits_each_label(shared_data):
    trec = rows_with_flips(shared_data, "trec", 3000, 0.1)
    _, rejected, summary = run_stage(trec, max_class_share=0.05)
    sizes = trec["label"].value_counts()
    dropped = rejected["label"].value_counts()
    assert summary.capped > 0
    assert all(dropped[lab] <= int(0.05 * sizes[lab]) for lab in dropped.index)


def test_a_second_pass_refits_on_the_rows_kept_and_finds_more_flips(shared_data):
    trec = rows_with_flips(shared_data, "trec", 3000, 0.2)
    truth = trec.set_index("id")
    one = run_stage(trec, max_class_share=0.3)
    kept, rejected, summary = run_stage(trec, passes=2, max_class_share=0.3)
    assert summary.passes == 2 and len(summary.acted_per_pass) == 2 and summary.acted_per_pass[1] > 0
    assert sum(summary.acted_per_pass) == summary.acted == len(rejected)
    from stages.evaluate.summary import stage_line
    assert f"{summary.acted:,} dropped in 2 passes ({summary.acted_per_pass[0]:,} + {summary.acted_per_pass[1]:,})" \
        in stage_line(summary.model_dump())
    assert set(one[1]["id"]) < set(rejected["id"]), "the first pass is the one-pass run; the second adds rows"

    def flips(ids):
        return int((truth.loc[ids, "label"] != truth.loc[ids, "true_label"]).sum())

    added = sorted(set(rejected["id"]) - set(one[1]["id"]))
    assert flips(added) >= 0.6 * len(added), "the second pass's drops are mostly flips too"
    assert flips(kept["id"]) < flips(one[0]["id"])
    # The cap holds over both passes together, and every kept row's verdict is from the second fit: ranks
    # are unique, and a kept row is marked only where the action would not remove it (drop: none).
    sizes, dropped = trec["label"].value_counts(), rejected["label"].value_counts()
    assert all(dropped[lab] <= int(0.3 * sizes[lab]) for lab in dropped.index)
    assert kept["label_issue_rank"].dropna().is_unique and not kept["label_issue"].any()
    warned = run_stage(trec, action="warn", passes=2, max_class_share=0.3)[0]
    assert set(warned.loc[warned["label_issue"], "id"]) == set(rejected["id"])
    assert warned["label_issue_rank"].dropna().is_unique


def test_a_label_too_small_to_refit_keeps_its_first_verdict():
    # Label z has two rows; the first pass drops one (an "a" text), so the second fit sets z aside (a label
    # needs two rows): its other row keeps the first fit's verdict, and the flags stay consistent.
    from pipeline import label_model
    from stages.label_noise import refit_passes

    rng = random.Random(0)
    fruit, vehicles = "apple banana cherry grape lemon mango melon peach pear plum".split(), \
        "car truck bus train plane boat bike tram ship van".split()
    texts = [" ".join(rng.sample(words, 5)) for _ in range(300) for words in (fruit, vehicles)]
    labels = ["b" if i < 60 and i % 2 == 0 else "ab"[i % 2] for i in range(len(texts))]  # 30 fruit called b
    texts += ["apple banana cherry grape lemon", "zebra zoo lion tiger bear"]
    labels += ["z", "z"]
    cfg = Config(passes=2, min_rows=10)
    ev = label_model.evidence(texts, labels, cfg, min_rows=10)
    first = ev.given_prob.copy()
    passes = refit_passes(ev, texts, labels, cfg)
    z = np.flatnonzero(ev.y == ev.classes.index("z"))
    assert len(passes.acted_per_pass) == 2 and passes.acted[z].tolist() == [True, False]
    assert ev.given_prob[z[1]] == first[z[1]]
    assert set(np.flatnonzero(ev.issue)) == set(ev.ranked.tolist()) and len(set(ev.ranked.tolist())) == len(ev.ranked)
    assert passes.first_fit["labelled_rows"] == len(texts)


def test_a_weak_model_acts_on_nothing_and_says_so(sms):
    shuffled = sms.assign(label=sms["label"].sample(frac=1, random_state=0).to_numpy())  # labels carry no signal
    kept, rejected, summary = run_stage(shuffled)
    assert len(rejected) == 0 and len(kept) == len(sms) and summary.acted == 0
    assert summary.flagged > 0 and "too weak" in summary.weak_model and summary.kappa < summary.min_kappa
    assert not kept["label_issue"].any()


def test_rows_without_labels_or_too_few_pass_through(sms):
    few = sms.head(30)
    kept, rejected, summary = run_stage(few)
    assert len(kept) == 30 and len(rejected) == 0 and not summary.ran and "min_rows" in summary.skipped
    assert kept["label_prob"].isna().all()


def test_pipeline_drops_label_errors_and_says_so_in_manifest_card_and_report(tmp_path, shared_data, monkeypatch):
    from pipeline import label_model

    calls = []
    real = label_model.evidence
    monkeypatch.setattr(label_model, "evidence", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    df = rows_with_flips(shared_data, "sms_spam", 1500, 0.1, seed=5)
    pq.write_table(pa.Table.from_pandas(df[["id", "text", "label"]], preserve_index=False), tmp_path / "rows.parquet")
    config = write_config(tmp_path, {
        "dataset": "sms-flips", "labels": ["ham", "spam"],
        "sources": [{"name": "rows", "path": "rows.parquet", "format": "parquet", "text_field": "text",
                     "label_field": "label", "id_field": "id"}],
        "clean": {"signals": []}})
    result = run_pipeline(config, tmp_path / "data")
    version = tmp_path / "data" / "versions" / "sms-flips" / result.version
    rejected = pq.read_table(version / "rejected.parquet").to_pandas()
    noise = rejected[rejected["reason"] == "label_noise"]
    assert len(noise) > 0 and (noise["stage"] == "label_noise").all()
    published = pd.concat([pq.read_table(version / f"{s}.parquet").to_pandas() for s in ("train", "validation", "test")])
    assert len(published) + len(rejected) == len(df)
    assert {"label_prob", "suggested_label", "suggested_prob", "label_issue"} <= set(published.columns)
    truth = df.set_index("id")
    wrong_in = (truth["label"] != truth["true_label"]).mean()
    wrong_out = (truth.loc[published["id"], "label"] != truth.loc[published["id"], "true_label"]).mean()
    assert wrong_out < wrong_in / 2
    manifest = json.loads((version / "manifest.json").read_text())
    block = manifest["label_noise"]
    assert block["acted"] == len(noise) and block["action"] == "drop" and block["cv_accuracy"] > 0
    card = (version / "README.md").read_text()
    assert f"{len(noise):,} confident ones dropped" in card and "cross-validated accuracy" in card
    report = (version / "report.html").read_text()
    assert "the label_noise stage" in report and "cross-validated accuracy" in report
    # By default the gate reads the stage's verdicts back: one fit per run.
    assert calls == [1] and "read from the published rows" in manifest["evaluation"]["label_noise"]["evidence"]
    issues = pq.read_table(version / "label_issues.parquet").to_pandas()
    assert set(issues["id"]) <= set(published["id"]) and list(issues["rank"]) == list(range(1, len(issues) + 1))


def test_each_folds_model_is_fit_on_at_most_max_fit_rows(shared_data):
    """Large sets: every row still gets an out-of-sample probability, from a model fit on a seeded draw of at
    most `max_fit_rows` rows of the other folds (the solver's cost grows faster than the rows)."""

    from pipeline import label_model

    lines = (shared_data / "sms_spam" / "original" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()[:1500]
    labels, texts = zip(*(line.split("\t", 1) for line in lines))
    full = label_model.evidence(list(texts), list(labels))
    capped = label_model.evidence(list(texts), list(labels), max_fit_rows=600)
    again = label_model.evidence(list(texts), list(labels), max_fit_rows=600)
    assert capped.probs.shape == full.probs.shape == (len(full.rows), 2) and len(full.rows) > 1400
    assert np.allclose(capped.probs.sum(axis=1), 1.0)
    assert not np.array_equal(capped.probs, full.probs)  # the cap was applied
    assert np.array_equal(capped.probs, again.probs)  # and the draw is seeded
    threaded = label_model.evidence(list(texts), list(labels), max_fit_rows=600, workers=2)
    assert np.array_equal(threaded.probs, capped.probs)  # folds fit two at a time: the same probabilities
    assert capped.kappa > 0.3 and full.kappa >= capped.kappa  # a weaker model of spam, but a real one


def test_the_gate_reads_the_stages_verdicts_back_instead_of_fitting_again(tmp_path, shared_data, monkeypatch):
    """By default (`refit: false`) one label model per run: on the published rows (here some of the stage's
    rows, in three splits) the gate's label_issues.parquet is what the stage's fit says of them, in its order
    of suspicion, and nothing is fitted; with other settings, the stage off, or `refit: true`, it fits on
    the published rows."""

    from pipeline import label_model
    from stages.evaluate.candidate import read_candidate
    from stages.evaluate.config import Config as GateConfig
    from stages.evaluate.label_noise import check
    from schemas.summaries import Summaries

    df = rows_with_flips(shared_data, "sms_spam", 1500, 0.1, seed=5)
    kept, _, summary = run_stage(df, labels=["ham", "spam"], action="warn")
    texts = df["text"].tolist()
    fit = label_model.evidence(texts, df["label"].tolist(), label_set=["ham", "spam"])
    assert np.array_equal(kept["label_prob"].to_numpy(), label_model.rounded(fit.given_prob))  # the stage's fit
    # Published: a seeded 85 % of the rows (dedupe and the action removed the others), in three splits.
    rng = np.random.default_rng(1)
    published = kept[rng.random(len(kept)) < 0.85].copy()
    published["split"] = rng.choice(["train", "validation", "test"], len(published), p=[0.8, 0.1, 0.1])
    folder = tmp_path / "v1"
    folder.mkdir()
    for s in schemas.SPLITS:
        pq.write_table(pa.Table.from_pandas(published[published["split"] == s].drop(columns=["split"]),
                                            preserve_index=False), folder / f"{s}.parquet")

    calls = []
    real = label_model.evidence
    monkeypatch.setattr(label_model, "evidence", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    candidate = read_candidate(folder, "sms", ["ham", "spam"], None, Summaries([summary]), None)
    result = check(candidate, GateConfig())  # the default
    assert calls == [], "the gate fitted the model the stage had fitted"
    info = result.summary
    assert info["ran"] and info["evidence"].startswith("the label_noise stage's")

    split_of = published.set_index("id")["split"]
    expected = [
        {"id": df["id"][r], "split": split_of[df["id"][r]], "text": df["text"][r], "given_label": df["label"][r],
         "suggested_label": fit.classes[fit.suggested[i]], "score": float(label_model.rounded(fit.given_prob)[i]),
         "suggested_score": float(label_model.rounded(fit.suggested_prob)[i])}
        for i in fit.ranked.tolist() if (r := int(fit.rows[i])) is not None and df["id"][r] in split_of.index]
    for rank, row in enumerate(expected, start=1):
        row["rank"] = rank
    issues = pq.read_table(folder / "label_issues.parquet").to_pylist()
    assert len(expected) > 20 and issues == expected
    ours = published.set_index("id")
    assert info["flagged"] == len(expected) and info["labelled_rows"] == len(published)
    assert info["cv_accuracy"] == round(float((ours["suggested_label"] == ours["label"]).mean()), 4)
    assert info["by_split"] == dict(pd.Series([x["split"] for x in expected]).value_counts())

    # Other settings than the stage's: a fit on the published rows, and the summary says why.
    result = check(candidate, GateConfig(label_noise={"C": 10.0, "refit": False}))
    assert calls == [1] and result.summary["evidence"].startswith("fitted on the published rows (the label_noise stage fit")
    result = check(candidate, GateConfig(label_noise={"refit": True}))
    assert calls == [1, 1] and "refit is on" in result.summary["evidence"]
    # The stage off: a fit too.
    result = check(read_candidate(folder, "sms", ["ham", "spam"], None, Summaries([]), None),
                   GateConfig(label_noise={"refit": False}))
    assert calls == [1, 1, 1] and "did not run" in result.summary["evidence"]


def test_grouped_folds_hold_a_texts_copies_out_together(shared_data):
    """`group_copies`: with plain folds a row's verbatim copy in another fold gives its label away (the
    out-of-sample accuracy of a set of twins is the memorized one); grouped by text, the twins are held out
    together and the accuracy falls to what the model generalizes."""
    from pipeline import label_model

    df = rows_with_flips(shared_data, "trec", 600, 0.0)
    texts, labels = df["text"].tolist() * 2, df["label"].tolist() * 2  # every question twice, same label
    plain = label_model.evidence(texts, labels, label_model.FitSettings(group_copies=False))
    grouped = label_model.evidence(texts, labels, label_model.FitSettings(group_copies=True))
    assert plain.cv_accuracy > 0.9  # a row whose twin sits in another fold (4 in 5) is predicted from it
    assert grouped.cv_accuracy < plain.cv_accuracy - 0.1
    # the same rows, the same classes: only the folds differ
    assert list(plain.rows) == list(grouped.rows) and plain.classes == grouped.classes


def test_the_stage_holds_copies_out_together_so_a_copied_wrong_label_cannot_vouch_for_itself(shared_data):
    """Before dedupe a planted flip often has a copy carrying the same wrong label (the outcome benchmark
    plants them). With plain folds the copy sits in another fold and the model learns the wrong label from
    it; with `group_copies` (the default) both copies are held out together and caught."""
    df = rows_with_flips(shared_data, "sms_spam", 1500, 0.0)
    rng = np.random.default_rng(3)
    ham = df.index[df["label"] == "ham"]
    victims = rng.choice(ham, 40, replace=False)
    df.loc[victims, "label"] = "spam"  # flipped…
    copies = df.loc[victims].copy()  # …and copied with the same wrong label, up to case and punctuation
    copies["id"] = copies["id"].astype(str) + "-copy"
    copies["text"] = copies["text"].str.upper() + " !"
    df = pd.concat([df, copies], ignore_index=True)
    planted = set(df.loc[victims, "id"]) | set(copies["id"])

    def caught(**cfg) -> int:
        kept, _, summary = run_stage(df, labels=["ham", "spam"], action="warn", **cfg)
        assert summary.group_copies is cfg.get("group_copies", True)
        return int(kept.loc[kept["id"].isin(planted), "label_issue"].sum())

    grouped, plain = caught(), caught(group_copies=False)
    assert grouped >= 0.6 * len(planted), f"grouped folds caught {grouped} of {len(planted)}"
    assert plain < grouped / 2, f"plain folds {plain}, grouped {grouped}"


def test_a_large_set_is_hashed_fold_by_fold_with_the_verdicts_of_the_whole_matrix(shared_data, monkeypatch):
    """Above IN_MEMORY_CHARS characters the model never holds every text's features (1M long texts: GBs): the
    idf comes from a seeded sample and each fold hashes the rows it fits on and predicts, a batch at a time.
    Shrunk here to a third of 3,000 SMS rows' characters in memory and batches of 300: the same flags as the
    whole matrix, up to the idf's sampling."""
    from pipeline import label_model

    df = rows_with_flips(shared_data, "sms_spam", 3000, 0.05)
    texts, labels = df["text"].tolist(), df["label"].tolist()
    flipped = (df["label"] != df["true_label"]).to_numpy()
    whole = label_model.evidence(texts, labels)
    assert label_model.Features(texts).matrix is not None
    monkeypatch.setattr(label_model, "IN_MEMORY_CHARS", sum(map(len, texts)) // 3)
    monkeypatch.setattr(label_model, "FEATURE_BATCH", 300)
    assert label_model.Features(texts).matrix is None  # rows hashed when a fold needs them
    batched = label_model.evidence(texts, labels)
    assert np.abs(whole.probs - batched.probs).mean() < 0.01
    both = (whole.issue & batched.issue).sum()
    assert both >= 0.95 * max(whole.issue.sum(), batched.issue.sum())
    assert abs(int((whole.issue & flipped).sum()) - int((batched.issue & flipped).sum())) <= 3
    assert (batched.issue & flipped).sum() >= 0.8 * flipped.sum()  # and it still finds the flips
