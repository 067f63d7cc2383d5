"""Aggregation and agreement of response reviews (rate / edit / compare) on numbers worked out by hand; the
labelling configs and what a task shows; config errors. No server: the pure functions the stage uses."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from pipeline.errors import UserError
from stages.annotate.responses import edits, interface, ordinal, preferences
from stages.annotate.responses.export import reviews_from_export

from .conftest import write_config

A = [1, 2, 3, 4, 5]
B = [1, 3, 3, 5, 5]


def ratings(*columns: list[int], names: str = "ab") -> pd.DataFrame:
    return pd.DataFrame([{"item": f"i{j}", "annotator": a, "rating": float(r), "flags": []}
                         for a, col in zip(names, columns) for j, r in enumerate(col) if r is not None])


def test_interval_alpha_by_hand():
    # Do: per item (m=2) both ordered pairs, (c−k)²: diffs 0,1,0,1,0 → 4, over n=10 values → 0.4.
    # De: all ordered pairs of the 10 values, Σ(x_i−x_j)² = 2·n·SS, SS = Σ(x−3.2)² = 21.6 → 432 / (10·9) = 4.8.
    # alpha = 1 − 0.4 / 4.8 = 11/12.
    ann = ratings(A, B)
    assert ordinal.krippendorff_alpha(ann, "interval", 5) == pytest.approx(11 / 12, abs=1e-6)


def test_ordinal_alpha_by_hand():
    # Value counts n_1..n_5 = 2,1,3,1,3. Ordinal δ(c,k) = (Σ_{g=c..k} n_g − (n_c+n_k)/2)².
    # Do: items (2,3) and (4,5) each δ = (4 − 2)² = 4, both orders → 16 / 10 = 1.6.
    # De: Σ_{c<k} n_c·n_k·δ = 4.5+73.5+60.5+337.5+12+16+108+12+144+12 = 780, both orders 1560 / 90 = 17.333.
    # alpha = 1 − 1.6 / 17.333 = 0.907692.
    assert ordinal.krippendorff_alpha(ratings(A, B), "ordinal", 5) == pytest.approx(1 - 1.6 / (1560 / 90), abs=1e-6)


def test_weighted_kappa_and_bias_by_hand():
    # Quadratic weights: kappa = 1 − E[(a−b)²]_observed / E[(X−Y)²]_independent
    # observed (0+1+0+1+0)/5 = 0.4; expected Var(A)+Var(B)+(mean diff)² = 2 + 2.24 + 0.16 = 4.4 → 1 − 1/11.
    ann = ratings(A, B)
    (pair,) = ordinal.weighted_kappa_pairs(ann, 5)
    assert pair["kappa"] == pytest.approx(10 / 11, abs=1e-6) and pair["observed_agreement"] == 0.6 and pair["n"] == 5
    consensus = ordinal.aggregate(ann, min_rating=3, flags=[], flag_share=0.5)
    bias = ordinal.annotator_bias(ann, consensus)
    # medians 1, 2.5, 3, 4.5, 5: a's offsets 0, −.5, 0, −.5, 0 → −0.2; b's the opposite.
    assert bias["a"]["bias"] == pytest.approx(-0.2) and bias["b"]["bias"] == pytest.approx(0.2)


def test_alpha_undefined_is_none():
    assert ordinal.krippendorff_alpha(ratings([3, 3], [3, 3]), "ordinal", 5) is None  # one value only
    assert ordinal.krippendorff_alpha(ratings([3, 4], names="a"), "ordinal", 5) is None  # nothing rated twice


def test_rating_decisions_support_and_flags():
    ann = pd.DataFrame([
        {"item": "x", "annotator": "a", "rating": 2.0, "flags": []},
        {"item": "x", "annotator": "b", "rating": 4.0, "flags": []},
        {"item": "x", "annotator": "c", "rating": 5.0, "flags": []},  # median 4: kept, 2 of 3 at or above 3
        {"item": "y", "annotator": "a", "rating": 4.0, "flags": ["harmful", "refusal"]},
        {"item": "y", "annotator": "b", "rating": 4.0, "flags": ["refusal"]},
        {"item": "y", "annotator": "c", "rating": 5.0, "flags": []},  # refusal 2/3 ≥ 0.5, harmful 1/3 < 0.5
        {"item": "z", "annotator": "a", "rating": 2.0, "flags": ["refusal"]},  # low rating wins over flags
    ])
    got = ordinal.aggregate(ann, min_rating=3, flags=["harmful", "refusal"], flag_share=0.5).set_index("item")
    assert got.loc["x", "decision"] == "keep" and got.loc["x", "support"] == pytest.approx(2 / 3, abs=1e-6)
    assert got.loc["y", "decision"] == "flagged_refusal" and got.loc["y", "flags"] == {"harmful": 1, "refusal": 2}
    assert got.loc["z", "decision"] == "low_rating" and got.loc["z", "support"] == 1.0
    mean = ordinal.aggregate(ann, min_rating=3.7, flags=[], flag_share=0.5, method="mean").set_index("item")
    assert mean.loc["x", "rating"] == pytest.approx(11 / 3, abs=1e-6) and mean.loc["x", "decision"] == "low_rating"


def test_edit_rule():
    def frame(texts):
        return pd.DataFrame([{"item": "r", "annotator": f"p{i}", "annotation_id": 10 + i, "edited": t}
                             for i, t in enumerate(texts)])

    orig = {"r": "The capital is Paris."}
    # Three texts: the one closest to the other two wins (the medoid; mean similarity .812 against .722, .726).
    texts = [None, "The capital of France is Paris.", "The capital of France is Paris, on the Seine."]
    got = edits.choose(frame(texts), orig).iloc[0]
    assert got["text"] == "The capital of France is Paris." and got["edited"] and got["n_edits"] == 2
    # Two annotators, one edit: the similarity ties, the edit beats the original.
    got = edits.choose(frame([None, "Paris."]), orig).iloc[0]
    assert got["text"] == "Paris." and got["annotator"] == "p1"
    # Two different edits: the earlier annotation; `first` always the earliest.
    assert edits.choose(frame(["Paris.", "It is Paris."]), orig).iloc[0]["text"] == "Paris."
    assert edits.choose(frame([None, "Paris."]), orig, "first").iloc[0]["text"] == orig["r"]
    # The same edit twice beats a third (most submitted, when similarity ties).
    got = edits.choose(frame(["Paris.", "Paris.", "Lyon."]), orig).iloc[0]
    assert got["text"] == "Paris." and got["texts"] == 2


def test_preference_majority_ties_and_fleiss_by_hand():
    votes = {"r0": ["chosen", "chosen", "rejected"], "r1": ["rejected", "rejected", "tie"],
             "r2": ["chosen", "rejected", "tie"], "r3": ["tie", "tie", "chosen"]}
    ann = pd.DataFrame([{"item": i, "annotator": f"p{k}", "preference": v} for i, vs in votes.items() for k, v in enumerate(vs)])
    agg, details = preferences.aggregate(ann)
    agg = agg.set_index("item")
    assert details == {}
    assert agg.loc["r0", "preference"] == "chosen" and agg.loc["r1", "preference"] == "rejected"
    assert agg.loc["r2", "unresolved"] and agg.loc["r3", "unresolved"] and pd.isna(agg.loc["r3", "preference"])
    rep = preferences.report(ann, agg.reset_index())
    # P_i = (Σn_ij² − n)/(n(n−1)): 1/3, 1/3, 0, 1/3 → P̄ = 0.25; p_j = 4/12 each → P_e = 1/3; (0.25−1/3)/(2/3).
    assert rep["fleiss_kappa"] == pytest.approx(-0.125, abs=1e-6) and rep["ties"] == 2


def test_preference_dawid_skene_discounts_an_annotator_whose_vote_says_nothing():
    # a and b agree on six pairs (four chosen, two rejected); c answers "tie" to everything. c's answer is the
    # same whatever the truth, so it carries no information: Dawid–Skene estimates c's accuracy near 0 (c is
    # right only where the truth is a tie, and no pair is one) and a's and b's near 1. On r6 (a: chosen,
    # c: tie) and r7 (b: rejected, c: tie) a majority vote is split and leaves the pair unresolved; Dawid–Skene
    # follows the reliable annotator.
    votes = {f"r{i}": {"a": v, "b": v, "c": "tie"} for i, v in enumerate(["chosen"] * 4 + ["rejected"] * 2)}
    votes["r6"] = {"a": "chosen", "c": "tie"}
    votes["r7"] = {"b": "rejected", "c": "tie"}
    ann = pd.DataFrame([{"item": i, "annotator": a, "preference": v} for i, vs in votes.items() for a, v in vs.items()])
    majority, _ = preferences.aggregate(ann, "majority")
    assert majority.set_index("item").loc[["r6", "r7"], "unresolved"].tolist() == [True, True]
    ds, details = preferences.aggregate(ann, "dawid_skene")
    ds = ds.set_index("item")
    acc = details["annotator_accuracy"]
    assert acc["c"] < 0.05 and acc["a"] > 0.95 and acc["b"] > 0.95
    assert ds.loc["r6", "preference"] == "chosen" and ds.loc["r7", "preference"] == "rejected"
    assert not ds["unresolved"].any() and (ds["support"] > 0.9).all()
    assert ds.loc[[f"r{i}" for i in range(6)], "preference"].tolist() == ["chosen"] * 4 + ["rejected"] * 2
    # A pair where the reliable annotators say tie stays unresolved, as with a majority.
    tied = pd.concat([ann, pd.DataFrame([{"item": "r8", "annotator": x, "preference": "tie"} for x in "abc"])])
    got, _ = preferences.aggregate(tied, "dawid_skene")
    row = got.set_index("item").loc["r8"]
    assert row["unresolved"] and pd.isna(row["preference"])


@pytest.mark.parametrize("mode, hint", [("rate", "ratings are ordinal — set responses.rating_aggregation"),
                                        ("edit", "edits are free text — set responses.edit_rule")])
def test_dawid_skene_for_ratings_or_edits_is_one_config_line(tmp_path, mode, hint):
    from pipeline.config import load_config

    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    config = {"dataset": "m", "kind": "generation",
              "sources": [{"name": "s", "path": "d.jsonl", "format": "jsonl", "record_format": "alpaca"}],
              "annotate": {"mode": mode, "aggregation": "dawid_skene"}}
    with pytest.raises(UserError) as err:
        load_config(write_config(tmp_path, config))
    message = str(err.value)
    assert "\n" not in message.strip() and f"not mode {mode}" in message and hint in message, message


def test_export_sets_odd_annotations_aside():
    def task(i, result, cancelled=False):
        return {"id": i, "data": {"row_id": f"r{i}"},
                "annotations": [{"id": 100 + i, "completed_by": 1, "result": result, "was_cancelled": cancelled}]}

    def rate(v, flags=()):
        return [{"from_name": "rating", "type": "rating", "value": {"rating": v}},
                {"from_name": "flags", "type": "choices", "value": {"choices": list(flags)}}]

    export = [task(1, rate(4, ["refusal"])), task(2, rate(0)), task(3, rate(2.5)), task(4, rate(3, ["toxic"])),
              task(5, []), task(6, rate(5), cancelled=True)]
    ann, aside = reviews_from_export(export, {1: "p@example.com"}, "rate", flags=["refusal"], max_rating=5)
    assert ann["row_id"].tolist() == ["r1"] and ann["flags"].tolist() == [["refusal"]]
    reasons = dict(zip(aside["row_id"], aside["reason"]))
    assert reasons == {"r2": "rating out of range 1..5: 0", "r3": "rating out of range 1..5: 2.5",
                       "r4": "flag not in the configured set: toxic", "r5": "no rating in the annotation"}


def test_labelling_configs_are_valid_xml_and_escape_values():
    for mode in ("rate", "edit", "compare"):
        root = ET.fromstring(interface.label_config(mode, flags=['a"<b>', "ok"], instructions="<script>x</script>"))
        assert root.tag == "View"
        assert next(root.iter("Paragraphs")).get("layout") == "dialogue"
    rate = ET.fromstring(interface.label_config("rate", flags=['a"<b>'], max_rating=7))
    assert next(rate.iter("Rating")).get("maxRating") == "7"
    assert [c.get("value") for c in rate.iter("Choice")] == ['a"<b>']
    assert next(ET.fromstring(interface.label_config("edit")).iter("TextArea")).get("editable") == "true"


def test_task_data_shows_turns_and_stable_sides():
    data = interface.task_data("generation", "rate", {"id": "g", "prompt": "P", "completion": "C", "system": "S"})
    assert data == {"row_id": "g", "context": [{"role": "system", "content": "S"}, {"role": "user", "content": "P"}],
                    "response": "C"}
    sides = [interface.a_is_chosen(f"row-{i}") for i in range(200)]
    assert 70 < sum(sides) < 130 and sides == [interface.a_is_chosen(f"row-{i}") for i in range(200)]


@pytest.mark.parametrize("task, mode, message", [
    ("generation", "label", "generation records have no class label to pick — set annotate.mode to rate or edit"),
    ("generation", "compare", "annotate.mode compare reviews preference records, not generation"),
    ("classification", "rate", "annotate.mode rate reviews generation or chat records, not classification"),
])
def test_mode_and_kind_mismatch_is_one_line(tmp_path, task, mode, message):
    from pipeline.config import load_config

    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    source = {"name": "s", "path": "d.jsonl", "format": "jsonl"}
    if task == "generation":
        source["record_format"] = "alpaca"
    else:
        source.update(text_field="instruction", label_field="output")
    config = {"dataset": "m", "kind": task, "sources": [source], "annotate": {"mode": mode}}
    if task == "classification":
        config["labels"] = ["b", "c"]
    with pytest.raises(UserError, match=message):
        load_config(write_config(tmp_path, config))
