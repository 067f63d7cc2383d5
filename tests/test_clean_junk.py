"""clean: short junk (issue #21), escaped HTML and idempotent normalization (#16 item 1), pre-tokenized text
and the Gopher word rules (#16 item 5) — through the real clean stage, on the shipped samples."""
from __future__ import annotations

import csv
import html
import json
from collections import Counter

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.filters import SIGNALS, apply_rules, signal
from stages.clean import _HTML_HINT, _TAG, NORMALIZERS, normalize_until_stable

from .conftest import SAMPLES
from .test_clean import clean, rows
from .test_records_clean import clean as clean_records
from .test_records_clean import rows as record_rows

# -- short junk -----------------------------------------------------------------------------------------------

# The shapes issue #21's corruption recipe plants (benchmarks/outcome/corrupt.py), written out.
PLANTED = {
    "placeholder_only_above_max": ["n/a", "N/A", "NA", "n.a.", "#N/A", "null", "NULL", "None", "nil", "NaN",
                                   "undefined", "(null)", "[deleted]"],
    "n_words_below_min": ["-", "--", "?", "!!! !!! !!! !!! !!!", "$$$ $$$ $$$ $$$"],
    "url_only_above_max": ["https://bit.ly/3xYz", "http://www.news-site.org/world/markets?id=88123",
                           "www.example.com/", "(https://t.co/abc)"],
    "markup_share_above_max": ['<div class="footer"><a href="https://shop.example.net/sale">Click here</a></div>',
                               '<img src="http://example.com/p.gif" alt="" width="1" height="1"/> x',
                               '<span style="font-size:10px">Unsubscribe</span> | <a href="https://mail.example.org/v">'
                               'View in browser</a>',
                               '<a href="https://news-site.org/a/b">Read more &raquo;</a>',
                               '<ul><li><a href="https://t.co/1">Home</a></li><li><a href="https://t.co/2">Contact'
                               '</a></li></ul>'],
    "empty_after_normalization": ["<p><br/></p>", "<table><tr><td>&nbsp;</td><td>&nbsp;</td></tr></table>",
                                  "<!-- weather --><br><br>"],
    "top_token_share_above_max": ["lol lol lol lol lol", "buy buy buy buy buy buy buy buy", "FREE free Free FREE",
                                  "click click click click . click click"],
    "lang_not_allowed": ["¿dónde está la estación de tren más cercana?", "Ich habe heute keine Zeit für dich.",
                         "je ne sais pas ce que tu veux dire", "Он читает книгу каждый вечер."],
}


def sms_texts() -> list[str]:
    with open(SAMPLES / "sms_spam" / "SMSSpamCollection", encoding="utf-8", newline="") as fh:
        return [r[1] for r in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]


def trec_questions() -> list[str]:
    out = []
    for name in ("train_5500.label", "TREC_10.label"):
        with open(SAMPLES / "trec" / name, encoding="latin-1") as fh:
            out += [line.split(" ", 1)[1].strip() for line in fh if line.strip()]
    return out


def test_planted_short_junk_is_dropped_each_by_its_rule():
    texts = [t for ts in PLANTED.values() for t in ts]
    expected = [r for r, ts in PLANTED.items() for _ in ts]
    kept, rejected, _ = clean(rows(texts), signals=[])
    assert kept is None, kept.column("text").to_pylist()
    got = dict(zip(rejected.column("text").to_pylist(), rejected.column("reason").to_pylist()))
    assert [got[t] for t in texts] == expected


def test_the_junk_rules_keep_real_short_texts():
    """Issue #21: ≤ 0.5 % of the all-English SMS collection and of TREC's questions dropped by the junk rules
    (what the rules cost; benchmarks/clean/ measures the same with the planted junk beside it)."""
    junk = {"placeholder_only_above_max", "url_only_above_max", "markup_share_above_max", "top_token_share_above_max",
            "lang_not_allowed"}
    for texts in (sms_texts(), trec_questions()):
        kept, rejected, _ = clean(rows(texts), signals=[])
        reasons = Counter(rejected.column("reason").to_pylist())
        assert sum(reasons[r] for r in junk) <= 0.005 * len(texts), reasons
    # Short messages that look like the junk shapes and are not junk.
    real = ["Ok", "ok ok", "Bye bye", "Yes yes yes", "None of your business!", "N/A means not applicable, right?",
            "Click here to claim your prize: http://bit.ly/x", "Sorry, I'll call later", "645", "U 2 xxx",
            "What is the URL of the White House website ?", "What does HTML stand for ?", "Null and void :)",
            "Is it true that a < b and b > c ?"]
    kept, rejected, _ = clean(rows(real), signals=[])
    assert rejected.num_rows == 0, rejected.select(["text", "reason"]).to_pylist()


def test_markup_share_reads_the_text_before_normalization():
    """After strip_html a footer link is "Click here" — a message, to any rule on the normalized text. The
    signal reads the row as it came in; the rejected row is the original too."""
    footer = '<div class="footer"><a href="https://example.com/x?id=4">Click here</a></div>'
    kept, rejected, _ = clean(rows([footer, "Click here"]), signals=[])
    assert kept.column("text").to_pylist() == ["Click here"] and kept.column("markup_share").to_pylist() == [0.0]
    assert rejected.column("text").to_pylist() == [footer]
    detail = json.loads(rejected.column("details")[0].as_py())
    assert detail["column"] == "markup_share" and detail["value"] > 0.8
    # Switched off, the footer is kept as its normalized text.
    kept, _, _ = clean(rows([footer]), signals=[], filters={"markup_share": None})
    assert kept.column("text").to_pylist() == ["Click here"]


def test_a_raw_signal_gets_the_original_rows_from_the_framework():
    """Any signal may read the text before normalization (`raw=True`): apply_rules gives it `original`."""
    try:
        @signal("raw_length_probe", raw=True)
        def raw_length_probe(texts):
            return {"raw_length_probe": pa.compute.utf8_length(texts).cast(pa.float64())}

        batch = rows(["x"]).to_batches()[0]
        original = rows(["<b>x</b>"]).to_batches()[0]
        out = apply_rules(batch, {}, "clean", ["raw_length_probe"], original=original)
        assert out.kept.column("raw_length_probe").to_pylist() == [8.0]
        with pytest.raises(ValueError, match="raw applies to text signals"):
            signal("raw_record_probe", raw=True, reads="record")(lambda batch, kind: {})
    finally:
        SIGNALS.pop("raw_length_probe", None)


def test_generative_kinds_drop_a_placeholder_prompt_but_keep_answers_of_junk_shape(tmp_path):
    """An answer may rightly be "None", a URL, HTML or a word repeated; a prompt of "n/a" asks nothing."""
    table = record_rows("generation", [
        {"prompt": "n/a", "completion": "Paris is the capital of France."},
        {"prompt": "https://example.com/article?id=3", "completion": "This is a summary of the article."},
        {"prompt": "What does `print(print('x'))` print on its second line?", "completion": "None"},
        {"prompt": "What is the URL of Python's documentation?", "completion": "https://docs.python.org/3/"},
        {"prompt": "Write an HTML link to example.com.", "completion": '<a href="https://example.com">example.com</a>'},
        {"prompt": "Say hello five times.", "completion": "hello hello hello hello hello"},
    ])
    kept, rejected, _ = clean_records(table, "generation", tmp_path)
    assert rejected.column("reason").to_pylist() == ["prompt_placeholder_only_above_max", "prompt_url_only_above_max"]
    assert kept.num_rows == 4


def test_plausible_is_for_language_rules_only():
    from pydantic import ValidationError

    from stages.clean import Config

    with pytest.raises(ValidationError, match="`plausible` applies to lang rules only"):
        Config(filters={"n_words": {"min": 1, "plausible": 0.1}})
    # A user's language rule uses clean.language.plausible (0.04) unless it says otherwise.
    assert Config(filters={"lang": {"allowed": ["de"]}}).plausible_by_field() == {}
    assert Config().plausible_by_field() == {"text": 0.01}


# -- escaped HTML and idempotent normalization (issue #16, item 1) -----------------------------------------------

# News items as a feed publishes them, links escaped (AG News' shape: `&lt;A HREF="..."&gt;`).
NEWS = [
    'Oil prices rise on supply worries (Reuters) Reuters - Oil prices rose on Tuesday as traders worried about '
    'supplies from Iraq and Nigeria ahead of the winter, while the dollar fell against the euro and the yen. '
    'Shares of Exxon Mobil Corp. &lt;A HREF="http://www.investor.reuters.com/FullQuote.aspx?ticker=XOM.N target=/'
    'stocks/quickinfo/fullquote"&gt;XOM.N&lt;/A&gt; and Chevron &lt;A HREF="http://www.investor.reuters.com/FullQuote'
    '.aspx?ticker=CVX.N target=/stocks/quickinfo/fullquote"&gt;CVX.N&lt;/A&gt; gained more than two percent in early '
    'trading in New York, and analysts said prices could climb further if stocks keep falling.',
    'Fish &amp; chips shop wins award A family-run shop in Whitby has been named the best in the country, beating '
    'hundreds of rivals. &lt;b&gt;Read more&lt;/b&gt; about the judges, who visited every finalist twice over the '
    'summer and tasted the batter, the chips and the mushy peas before making their choice, said the owner.',
]


def test_escaped_markup_never_becomes_a_tag():
    kept, rejected, stats = clean(rows(NEWS), signals=[])
    assert rejected.num_rows == 0, rejected.select(["reason", "details"]).to_pylist()
    texts = kept.column("text").to_pylist()
    for text in texts:
        assert not _TAG.search(text) and "&lt;" not in text and "HREF" not in text, text
    assert "Shares of Exxon Mobil Corp. XOM.N and Chevron CVX.N gained" in texts[0]
    assert texts[1].startswith("Fish & chips shop wins award") and "Read more about the judges" in texts[1]
    # Escaped markup is markup, however often escaped; a `<` that opens no tag is text.
    for raw, want in [("Fish &amp; chips &lt;b&gt;bold&lt;/b&gt;", "Fish & chips bold"),
                      ("double &amp;lt;i&amp;gt;escaped&amp;lt;/i&amp;gt;", "double escaped"),
                      ("if x &lt; 3 and y &gt; 2", "if x < 3 and y > 2"), ("I <3 you & a < b", "I <3 you & a < b"),
                      ("Your code is &lt;#&gt;. Do not share it.", "Your code is <#>. Do not share it.")]:
        # Short and mostly entities: the language and markup rules would judge these, not the normalizer.
        kept, _, _ = clean(rows([raw]), signals=[], filters={"lang": None, "markup_share": None})
        assert kept.column("text").to_pylist() == [want]


def hostile_texts() -> list[str]:
    """Markup, entities and Unicode built to make one normalizer feed another."""
    return [
        "<<b>b>bold</b>", "<a <b>>x", "&amp<b>;", "&amp;amp;lt;b&amp;amp;gt;", "&lt;scr&lt;script&gt;ipt&gt;x",
        "＜ｂ＞full-width tag＜／ｂ＞", "﹤i﹥small form﹤/i﹥", "＆ａｍｐ；lt;b＆gt;", "<\u200bb>zero width</b>",
        "&Atilde;&copy;t&Atilde;&copy;", "CafÃ&copy; &amp; bar", "<!-- unclosed comment", "<!-- a --> b <!-- c -->",
        "&#60;b&#62;numeric&#60;/b&#62;", "&#x3C;i&#x3E;hex&#x3C;/i&#x3E;", "&lt;br&gt;&lt;br&gt;line",
        "tab\t<p>\r\nline</p>\u00a0\u00a0end", "&nbsp;&nbsp;&ensp;spaces&emsp;", "<EMAIL> and <b>x</b>",
        "a\u0000b<\u0007i>c", "&frac12; &sup2; ＡＢＣ", "<script>alert(1)</script>&lt;script&gt;alert(2)&lt;/script&gt;",
        "x\u2028y\u2029z", "<style>p{}</style>&lt;style&gt;p{}&lt;/style&gt;kept", "&amp;#60;b&amp;#62;",
        "&lt;!-- comment --&gt;text", "< b>not a tag</ b>", "<3 <3 <3", "AT&T &copy 2004", "&unknownentity; &;",
    ]


def real_texts(shared_data) -> list[str]:
    texts = sms_texts() + trec_questions() + pd.read_csv(SAMPLES / "tatoeba" / "test.csv").text.tolist()
    records = json.loads((shared_data / "alpaca_en_demo" / "original" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    return texts + [r["output"] for r in records] + [r["instruction"] + "\n" + r["input"] for r in records]


def test_normalization_is_idempotent_on_real_and_hostile_texts(shared_data):
    """Normalizing twice changes nothing the first time did not, on every real text of the shared data
    and on hostile cases; and what strip_html leaves holds no tag and no entity."""
    steps = list(NORMALIZERS)
    texts = real_texts(shared_data) + hostile_texts()
    once, changed = normalize_until_stable(pa.array(texts, pa.string()), steps)
    twice, again = normalize_until_stable(once, steps)
    assert twice.to_pylist() == once.to_pylist()
    assert not any(mask.any() for mask in again.values())
    assert changed["strip_html"].sum() > len(hostile_texts()) - 5  # the cases reach strip_html
    import re

    entity = re.compile(_HTML_HINT.split("|", 1)[1])
    for text in once.to_pylist():  # an unknown `&name;` is text, and stays
        assert not _TAG.search(text) and (not entity.search(text) or html.unescape(text) == text), text
    # Each normalizer alone, too (a config may switch the others off).
    for step in steps:
        one = NORMALIZERS[step](pa.array(texts, pa.string()))
        assert NORMALIZERS[step](one).to_pylist() == one.to_pylist(), step
    assert html.unescape("&amp;lt;") == "&lt;"  # why strip_html decodes until nothing is left


def test_generative_normalization_is_idempotent_with_every_normalizer_on(shared_data, tmp_path):
    """The same on instruction data, per field and around code blocks (which stay byte for byte)."""
    records = json.loads((shared_data / "alpaca_en_demo" / "original" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    payloads = [{"prompt": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else ""), "completion": r["output"]}
                for r in records]
    payloads += [{"prompt": f"Explain this: {h}", "completion": f"Here: {h}\n\n```html\n{h}\n```"} for h in hostile_texts()]
    every = {name: True for name in ("strip_html", "nfkc", "collapse_whitespace", "mask_pii")}
    off = {"prompt.placeholder_only": None, "prompt.url_only": None, "completion.refusal": None,
           "completion.placeholders": None, "completion.unclosed_code_fence": None, "repeated_turns": None}

    def normalized(table):
        kept, rejected, _ = clean_records(table, "generation", tmp_path, normalize=every, filters=off)
        assert rejected.num_rows == 0
        return [{"prompt": p, "completion": c} for p, c in zip(kept.column("prompt").to_pylist(),
                                                               kept.column("completion").to_pylist())]

    once = normalized(record_rows("generation", payloads))
    assert normalized(record_rows("generation", once)) == once
    assert "```html\n＜ｂ＞full-width tag＜／ｂ＞\n```" in once[len(records) + 5]["completion"]  # code untouched


def test_the_stage_counts_each_normalizer_once_per_row():
    kept, _, stats = clean(rows(["＜ｂ＞bold＜／ｂ＞ words", "plain"]), signals=[], filters={"lang": None})
    assert kept.column("text").to_pylist() == ["bold words", "plain"]
    assert stats["normalized_rows"]["strip_html"] == 1 and stats["normalized_rows"]["nfkc"] == 1


# -- pre-tokenized text and the Gopher word rules (issue #16, item 5) -------------------------------------------

# Sentences as tokenized corpora store them (Penn Treebank / CoNLL style: punctuation split off, `` '' quotes).
TOKENIZED = [
    "The company said it expects to complete the acquisition by the end of the year , subject to regulatory "
    "approval , and that the combined group would have annual sales of about $ 2.5 billion . Analysts said the "
    "deal , which values the target at 14 times earnings , was expensive but , given the pressure on margins in "
    "the sector , made sense . `` We are not surprised , '' one of them said . Shares rose 3 % in early trading .",
    "In the morning , the rain stopped ; by noon , the streets were dry , the shops were open , and the market "
    "square -- empty for a week -- was full again . Children ran between the stalls , dogs barked , and the old "
    "man who sells apples ( and , some say , the best cider in town ) shouted his prices : three for a pound , "
    "six for two . Nobody , it seemed , wanted to go home .",
    "`` Where are you going ? '' she asked . `` To the station , '' he said , `` and then , if the trains are "
    "running , to the coast . '' She nodded , picked up her coat , and followed him out ; neither of them spoke "
    "again until they reached the bridge , where he stopped , looked at the river , and said : `` It 's higher "
    "than last year . ''",
]


def test_standalone_punctuation_is_not_a_word_for_the_gopher_rules():
    kept, rejected, _ = clean(rows(TOKENIZED), signals=[])
    assert rejected.num_rows == 0, rejected.select(["reason", "details"]).to_pylist()
    n_words = kept.column("n_words").to_pylist()
    assert n_words[0] == len([t for t in TOKENIZED[0].split() if any(c.isalnum() for c in t)])
    assert all(n >= 50 for n in n_words)  # long enough for Gopher's rules: they were applied, and passed
    assert all(v >= 0.8 for v in kept.column("alpha_word_share").to_pylist())
    assert all(3 <= v <= 10 for v in kept.column("mean_word_length").to_pylist())
    # The same text untokenized gets the same word count.
    untokenized = TOKENIZED[1].replace(" ,", ",").replace(" .", ".").replace(" ;", ";").replace(" :", ":")
    kept2, _, _ = clean(rows([untokenized]), signals=[])
    assert kept2.column("n_words").to_pylist() == [n_words[1]]
