"""The decontamination engine (pipeline/decontamination.py) on real text: TREC questions, SMS messages and
Alpaca-style records from ../shared/data as evaluation sets and as our rows, with planted contamination,
and a few Chinese and Japanese instruction sentences written for these tests.

Every n-gram result is also compared with benchmarks/decontaminate/truth.py, a reference implementation
of the same rules written without the engine's hashing (Python token tuples and dicts).
"""
from __future__ import annotations

import importlib.util
import json
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import decontamination as dc
from pipeline import decontamination_near as near_mode
from tests.conftest import REPO, SHARED_DATA

_spec = importlib.util.spec_from_file_location("decontam_truth", REPO / "benchmarks" / "decontaminate" / "truth.py")
truth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(truth)

ZH_ITEMS = [  # realistic Chinese instruction prompts of several lengths
    "请用三句话解释什么是机器学习，并举一个日常生活中的例子。",
    "根据以下描述，写一封邀请朋友参加周末生日聚会的简短邮件，语气要轻松友好。",
    "小明有十二个苹果，他给了妹妹三个，又买了五个，现在他一共有多少个苹果？",
    "请简要介绍一下万里长城的历史和它的文化意义。",  # 21 characters: compared whole, inside a row
    "中国的首都是哪里？",  # 8 characters: only a row that is exactly this question
]
JA_ITEM = "次の文章を読んで、筆者が最も伝えたいことを五十字以内で説明しなさい。"


@pytest.fixture(scope="module")
def trec() -> pd.DataFrame:
    return pd.read_parquet(SHARED_DATA / "trec" / "data.parquet")


@pytest.fixture(scope="module")
def sms() -> list[str]:
    return pd.read_parquet(SHARED_DATA / "sms_spam" / "data.parquet")["text"].tolist()


@pytest.fixture(scope="module")
def alpaca() -> list[dict]:
    return json.loads((SHARED_DATA / "alpaca_en_demo" / "original" / "alpaca_en_demo.json").read_text())


def prompt_of(record: dict) -> str:
    return record["instruction"] + ("\n" + record["input"] if record["input"] else "")


def matches_of(index: dc.NgramIndex, rows: list[str | None], batch_size: int = 1000) -> dict[int, tuple[int, str, str]]:
    batches = (pa.array(rows[i:i + batch_size], pa.string()) for i in range(0, len(rows), batch_size))
    found = dc.NgramMatches.concat(list(dc.scan(index, batches)))
    return {r: (i, h, g) for r, i, h, g in zip(found.row.tolist(), found.item.tolist(), found.how, found.ngram)}


def reference_of(items: list[str], rows: list[str | None], lengths=truth.DEFAULT_LENGTHS) -> dict[int, tuple[int, str, str]]:
    ref = truth.Reference(items, lengths)
    out = {}
    for r, text in enumerate(rows):
        m = ref.match(text)
        if m is not None:
            out[r] = m
    return out


@pytest.fixture(scope="module")
def eval_items(trec, alpaca) -> list[str]:
    """An evaluation set of real items: the 500 TREC test questions, 300 Alpaca prompts, 300 answers."""
    return (trec[trec.split == "test"]["text"].tolist() + [prompt_of(r) for r in alpaca[:300]]
            + [r["output"] for r in alpaca[:300]])


def test_planted_contamination_is_found_and_agrees_with_the_reference(eval_items, trec, sms, alpaca):
    rng = random.Random(7)
    questions = trec[trec.split == "test"]["text"].tolist()
    medium = next(k for k, q in enumerate(questions) if 9 <= len(truth.analyse(q)[0]) <= 12)
    ours = trec[trec.split == "train"]["text"].tolist()[:1500] + sms[:1500] + [r["output"] for r in alpaca[600:]]
    tests = {  # planted row → the item it was made from
        "verbatim": (alpaca[12]["output"], 800 + 12),
        "case and punctuation": (prompt_of(alpaca[40]).upper().replace(",", "").replace(".", "!!"), 500 + 40),
        "embedded answer": (f"{sms[3000]} Here is what I found: {alpaca[77]['output']} Does that help?", 800 + 77),
        "embedded question": (f"Quiz time!! {questions[medium]} reply with the answer", medium),
    }
    at = {}
    for name, (text, item) in tests.items():
        at[name] = rng.randrange(len(ours))
        ours.insert(at[name], text)
    at = {name: ours.index(tests[name][0]) for name in tests}

    index = dc.NgramIndex.build(pa.array(eval_items))
    got = matches_of(index, ours)
    for name, (text, item) in tests.items():
        assert at[name] in got, name
        found_item, how, ngram = got[at[name]]
        # The planted item, or an earlier one that shares an n-gram with the row too (real Alpaca records
        # quote each other: answer 77 shares "we are the ones we've been waiting for ..." with prompt 29).
        assert found_item <= item, name
        assert ngram in " ".join(truth.analyse(text)[0]) and ngram in " ".join(truth.analyse(eval_items[found_item])[0])
    assert got[at["embedded question"]][1] == "whole_item_inside"  # a 9-12 word TREC question is compared whole
    assert got[at["verbatim"]][1] == "ngrams" and len(got[at["verbatim"]][2].split()) == 13
    assert got == reference_of(eval_items, ours)


def test_a_near_miss_of_12_words_is_not_flagged_and_13_words_are(alpaca, sms):
    item = alpaca[0]["output"]
    words = truth.analyse(item)[0]  # normalized tokens: a raw "-" would not count as a word
    assert len(words) >= 40
    index = dc.NgramIndex.build(pa.array([item]))
    rows = [f"{sms[100]} {' '.join(words[10:10 + k])} {sms[200]}" for k in (11, 12, 13, 14)]
    got = matches_of(index, rows)
    assert sorted(got) == [2, 3]
    assert got[2][2] == " ".join(words[10:23])
    assert got == reference_of([item], rows)


def test_chinese_and_japanese_items_are_found_by_characters(sms):
    items = ZH_ITEMS + [JA_ITEM]
    index = dc.NgramIndex.build(pa.array(items))
    summary = index.summary()
    assert summary["cjk"] == {"ngrams": 4, "whole_item_inside": 1, "whole_row_equal": 1, "empty": 0}
    assert index.sizes == {"ngrams": {"cjk": 23}, "prefixes": {"cjk": 14}}
    maths = ZH_ITEMS[2].replace("，", ", ").replace("？", "?")  # other punctuation, spaces
    chars = [c for c in ZH_ITEMS[0] if c not in "，。"]
    rows = [
        f"下面是一道题目：{maths} 请一步一步地思考。",  # inside a longer Chinese prompt
        f"Translate into English, keeping the tone: {ZH_ITEMS[1]} Thanks!",  # inside an English prompt
        "".join(chars[:22]) + "，谢谢。",  # 22 characters in a row: one short of n = 23
        "".join(chars[:23]) + "，谢谢。",
        f"作业：{ZH_ITEMS[3]}字数不限。",  # a 21-character item, whole, inside a row
        "中国的首都是哪里",  # the short item as the whole row (punctuation dropped)
        "请问中国的首都是哪里？北京吗？",  # ... but not inside a longer row
        f"Please answer in Japanese. {JA_ITEM}",
        sms[5],
    ]
    got = matches_of(index, rows)
    assert sorted(got) == [0, 1, 3, 4, 5, 7]
    assert got[0][:2] == (2, "ngrams") and len(got[0][2]) == 23  # characters, shown without spaces
    assert got[1][0] == 1 and got[3][0] == 0
    assert got[4][1:] == ("whole_item_inside", "请简要介绍一下万里长城的历史和它的文化意义")
    assert got[5][:2] == (4, "whole_row_equal")
    assert got[7][0] == 5
    assert got == reference_of(items, rows)


def test_fullwidth_forms_match_their_plain_spelling():
    """NFKC: Chinese text often writes digits and Latin letters fullwidth."""
    item = "计算１２３加４５６等于多少，并用ＡＢＣ三种方法写出每一步的计算过程。"
    index = dc.NgramIndex.build(pa.array([item]))
    rows = ["作业：计算123加456等于多少并用ABC三种方法写出每一步的计算过程", "计算123加456等于多少"]
    got = matches_of(index, rows)
    assert sorted(got) == [0] and got[0][2].startswith("计算 123 加 456 等于多少并用 abc 三种方法")
    assert got == reference_of([item], rows)


def test_a_thai_item_uses_the_southeast_asian_length():
    item = "กรุณาอธิบายความแตกต่างระหว่างการเรียนรู้ของเครื่องและการเรียนรู้เชิงลึก พร้อมยกตัวอย่างการใช้งานในชีวิตประจำวัน"
    index = dc.NgramIndex.build(pa.array([item]))
    assert index.sizes["ngrams"] == {"southeast_asian": 54}
    chars = truth.analyse(item)[0]  # code points, marks included
    rows = [f"Answer in Thai: {item}", "".join(chars[:53]), "".join(chars[:54]), "".join(chars[5:35])]
    got = matches_of(index, rows)
    assert sorted(got) == [0, 2]
    assert got == reference_of([item], rows)


def test_short_items_are_compared_whole(trec, sms):
    questions = trec[trec.split == "test"]["text"].tolist()
    nine = next(q for q in questions if len(truth.analyse(q)[0]) == 9)
    five = next(q for q in questions if len(truth.analyse(q)[0]) == 5)
    index = dc.NgramIndex.build(pa.array([nine, five]))
    assert index.summary()["word"] == {"ngrams": 0, "whole_item_inside": 1, "whole_row_equal": 1, "empty": 0}
    rows = [f"{sms[1]} {nine} {sms[2]}", " ".join(truth.analyse(nine)[0][:8]) + " something else entirely",
            five.upper(), f"{five} {sms[3]}", sms[4]]
    got = matches_of(index, rows)
    assert sorted(got) == [0, 2]
    assert got[0][:2] == (0, "whole_item_inside") and got[2][:2] == (1, "whole_row_equal")
    assert got == reference_of([nine, five], rows)
    # min_ngram = 1: every item shorter than n is looked for whole inside rows, the short one too.
    inside = matches_of(dc.NgramIndex.build(pa.array([nine, five]), dc.NgramParams(min_ngram=1)), rows)
    assert sorted(inside) == [0, 2, 3] and inside[3][:2] == (1, "whole_item_inside")
    assert inside == reference_of([nine, five], rows, dict(truth.DEFAULT_LENGTHS, word=(13, 1)))


def test_hash_collisions_never_report_a_row(eval_items, sms, trec):
    """With 16-bit window hashes nearly every window collides with an indexed one; verification on the
    bytes must still report exactly what the full hashes report."""
    ours = sms + trec[trec.split == "train"]["text"].tolist()[:2000] + eval_items[::7]
    full = matches_of(dc.NgramIndex.build(pa.array(eval_items)), ours)
    weak_index = dc.NgramIndex.build(pa.array(eval_items), dc.NgramParams(hash_bits=16))
    weak = matches_of(weak_index, ours)
    assert weak == full and len(full) > 100
    # The weak hashes did collide: raw table hits far outnumber the rows reported.
    rows = dc.normalize(pa.array(ours))
    w = dc.windows(rows, dc._SubstringHasher(rows.data), 13, np.arange(len(ours)), 16)
    hits, _ = weak_index.ngrams.lookup(w.hash)
    assert len(np.unique(w.doc[hits])) > 5 * len(full)


def test_same_matches_whatever_the_batch_size(eval_items, sms, alpaca):
    ours = [r["output"] for r in alpaca] * 3 + sms  # ~2.5 MB: cut into several pieces inside one batch
    index = dc.NgramIndex.build(pa.array(eval_items))
    reference = matches_of(index, ours, batch_size=len(ours))
    assert len(reference) > 900
    for size in (97, 1000):
        assert matches_of(index, ours, batch_size=size) == reference
    # One row per batch, on 150 matched and 150 unmatched rows (a call costs milliseconds).
    some = sorted(reference)[:150] + [r for r in range(len(ours)) if r not in reference][:150]
    alone = matches_of(index, [ours[r] for r in some], batch_size=1)
    assert {some[k]: m for k, m in alone.items()} == {r: reference[r] for r in some if r in reference}


def test_a_saved_index_loads_memory_mapped_with_the_same_matches(tmp_path, eval_items, sms):
    index = dc.NgramIndex.build(pa.array(eval_items + ZH_ITEMS))
    ours = pa.array(sms[:2000] + eval_items[::5] + [f"Translate: {ZH_ITEMS[0]}"])
    expected = dc.find_ngram_overlaps(index, ours, first_row=10)
    loaded = dc.NgramIndex.load(index.save(tmp_path / "index"))
    assert isinstance(loaded.ngrams.hash, np.memmap) and loaded.summary() == index.summary()
    for got in (dc.find_ngram_overlaps(loaded, ours, first_row=10),
                dc.find_ngram_overlaps_saved(str(tmp_path / "index"), ours, first_row=10)):
        assert (got.row == expected.row).all() and (got.item == expected.item).all()
        assert got.how == expected.how and got.ngram == expected.ngram
    assert len(expected) > 100 and expected.row.min() >= 10


def test_real_sms_against_real_sms_agrees_with_the_reference(sms):
    """SMS spam repeats templates with small changes: natural overlaps of all three kinds."""
    items, ours = sms[:1500], sms[1500:] + [None, "", "!!!"]
    got = matches_of(dc.NgramIndex.build(pa.array(items)), ours)
    hows = {h for _, h, _ in got.values()}
    assert hows == {"ngrams", "whole_item_inside", "whole_row_equal"}
    assert got == reference_of(items, ours)


def test_null_empty_and_punctuation_only_texts_match_nothing():
    index = dc.NgramIndex.build(pa.array(["...", None, "", "?!"]))
    assert index.summary()["word"]["empty"] == 4
    assert len(dc.find_ngram_overlaps(index, pa.array(["...", "", None, "hello"]))) == 0
    near_index = near_mode.NearIndex.build(pa.array(["...", None, "", "?!", "hello"]))
    found = near_mode.find_near_copies(near_index, pa.array(["...", "", None, "hello!"]))
    assert found.row.tolist() == [3] and found.item.tolist() == [4]


def word_shingles(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = truth.analyse(text)[0]
    return {tuple(tokens)} if len(tokens) < n else {tuple(tokens[k:k + n]) for k in range(len(tokens) - n + 1)}


def test_near_mode_finds_paraphrases_verified_by_exact_jaccard(alpaca, sms):
    rng = random.Random(3)
    items = [r["output"] for r in alpaca[:400]]
    params = near_mode.NearParams()
    index = near_mode.NearIndex.build(pa.array(items), params)
    planted = {}
    ours = list(sms[:2000])
    for k in [k for k in range(400) if len(items[k].split()) >= 40][::20]:
        words = items[k].split()
        for _ in range(max(1, len(words) // 25)):  # light edits: one word replaced per ~25
            words[rng.randrange(len(words))] = rng.choice(["perhaps", "indeed", "very", "also"])
        planted[len(ours)] = k
        ours.append(" ".join(words))
    found = near_mode.find_near_copies(index, pa.array(ours))
    got = dict(zip(found.row.tolist(), zip(found.item.tolist(), found.jaccard.tolist())))
    assert len(planted) >= 10 and set(planted) <= set(got)
    for row, (item, jaccard) in got.items():
        a, b = word_shingles(ours[row], params.ngram), word_shingles(items[item], params.ngram)
        assert jaccard == pytest.approx(len(a & b) / len(a | b), abs=0.02)  # fingerprints, not strings
        assert jaccard >= params.threshold
        if row in planted:
            assert item == planted[row]
