"""Aggregation and agreement figures against hand-computed and published values (no server)."""
from __future__ import annotations

import pandas as pd
import pytest

from stages.annotate import agreement as ag


def frame(rows):
    return pd.DataFrame(rows, columns=["item", "annotator", "label"])


def from_counts(table: list[list[int]], categories: list[str]) -> pd.DataFrame:
    rows = []
    for i, counts in enumerate(table):
        r = 0
        for cat, n in zip(categories, counts):
            for _ in range(n):
                rows.append((i, f"rater{r}", cat))
                r += 1
    return frame(rows)


def test_fleiss_wikipedia_example():
    # Fleiss' kappa worked example (14 raters, 10 subjects, 5 categories): kappa = 0.210
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    cats = list("abcde")
    assert ag.fleiss_kappa(from_counts(table, cats), cats) == pytest.approx(0.2099, abs=1e-4)


def test_two_annotators_hand_computed():
    a, b = "hhhhhhssss", "hhhhhssssh"
    ann = frame([(i, "A", x) for i, x in enumerate(a)] + [(i, "B", x) for i, x in enumerate(b)])
    labels = ["h", "s"]
    (pair,) = ag.cohen_pairs(ann, labels)
    assert pair["observed_agreement"] == 0.8 and pair["kappa"] == pytest.approx(0.583333, abs=1e-6)
    assert ag.fleiss_kappa(ann, labels) == pytest.approx(0.583333, abs=1e-6)
    assert ag.krippendorff_alpha(ann, labels) == pytest.approx(0.604167, abs=1e-6)
    maj = ag.majority(ann)
    assert maj.loc[maj["unresolved"], "item"].tolist() == [5, 9]
    assert maj.loc[0, "support"] == 1.0 and maj.loc[5, "support"] == 0.5
    conf = ag.confusion(ann, labels)
    assert conf == {"h": {"h": 5, "s": 2}, "s": {"h": 2, "s": 3}}


def test_perfect_agreement_on_one_label_is_undefined_not_an_error():
    ann = frame([(i, who, "x") for i in range(3) for who in "AB"])
    assert ag.fleiss_kappa(ann, ["x", "y"]) is None
    assert ag.krippendorff_alpha(ann, ["x", "y"]) is None
    assert ag.cohen_pairs(ann, ["x", "y"])[0]["kappa"] is None


def test_dawid_skene_down_weights_an_unreliable_annotator():
    # Two careful annotators agree with the truth on 18 of 20 items, at different places; a third answers the
    # opposite of the truth on 15 of 20. Majority ties where one careful annotator slips; Dawid–Skene does not.
    truth = ["p" if i % 2 else "n" for i in range(20)]
    flip = {"p": "n", "n": "p"}
    rows = []
    for i, t in enumerate(truth):
        rows.append((i, "good1", flip[t] if i in (0, 1) else t))
        rows.append((i, "good2", flip[t] if i in (2, 3) else t))
        rows.append((i, "bad", t if i >= 15 else flip[t]))
    ann = frame(rows)
    result, accuracy = ag.dawid_skene(ann, ["n", "p"])
    assert result["label"].tolist() == truth
    assert accuracy["bad"] < 0.4 < 0.8 < min(accuracy["good1"], accuracy["good2"])
    assert (result["support"] > 0.5).all()


def test_label_pairs_are_counted_once_and_add_up_to_the_pairs():
    """The A/B pattern of test_labelstudio (ten rows, two annotators, rows 5 and 9 disagree): the symmetric
    `confusion` counts each disagreement in both cells (12 in all for 10 pairs); `pair_confusion` counts each
    pair once, rows the annotator first by name: 10."""
    a, b = "hhhhhhssss", "hhhhhssssh"
    names = {"h": "ham", "s": "spam"}
    ann = frame([(i, "ann.a", names[x]) for i, x in enumerate(a)] + [(i, "ann.b", names[y]) for i, y in enumerate(b)])
    symmetric = ag.confusion(ann, ["ham", "spam"])
    assert sum(sum(r.values()) for r in symmetric.values()) == 12
    pairs, n, axes = ag.pair_confusion(ann, ["ham", "spam"])
    assert n == 10 and sum(sum(r.values()) for r in pairs.values()) == 10 and axes == ["ann.a", "ann.b"]
    assert pairs == {"ham": {"ham": 5, "spam": 1}, "spam": {"ham": 1, "spam": 3}}  # row 5: a ham, b spam; row 9: a spam, b ham
    # Three annotators on one row: three pairs, whatever the order the annotations come in.
    three = frame([(0, "c", "spam"), (0, "a", "ham"), (0, "b", "ham")])
    m, n, axes = ag.pair_confusion(three, ["ham", "spam"])
    assert n == 3 and m["ham"] == {"ham": 1, "spam": 2} and m["spam"] == {"ham": 0, "spam": 0}
    assert axes == ["the annotator first by name", "the other annotator"]
    report = ag.report(ann, ["ham", "spam"], ag.majority(ann))
    assert report["pairs"] == 10 and report["pair_confusion"] == pairs
