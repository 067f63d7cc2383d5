"""clean on instruction and chat records: code answers survive normalization byte for byte, rules name the
field their signal reads, and the instruction signals find what they promise on real records (issue 13)."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from pipeline.errors import UserError
from pipeline.markdown import segments
from pipeline.stage import StageContext
from schemas.kinds import KINDS
from stages.clean import CleanStage, Config

from .conftest import SAMPLES, TableInput


def rows(kind: str, payloads: list[dict]) -> pa.Table:
    k = KINDS[kind]
    base = [{"id": f"r{i}", "source": "s", "source_file": "f", "source_line": i + 1, "meta": None, **p}
            for i, p in enumerate(payloads)]
    for r in base:
        for f in k.payload_names:
            r.setdefault(f, None)
    return pa.Table.from_pylist(base, schema=k.schema())


def clean(table: pa.Table, kind: str, tmp_path, **config) -> tuple[pa.Table, pa.Table, CleanStage]:
    stage = CleanStage(Config(**config), StageContext(dataset="t", config_dir=tmp_path, work_dir=tmp_path, kind=KINDS[kind]))
    kept, rejected = [], []
    for out in stage.run(TableInput(table, batch_size=50)):
        if out.kept is not None and out.kept.num_rows:
            kept.append(out.kept)
        if out.rejected is not None:
            rejected.append(out.rejected)
    return (pa.Table.from_batches(kept) if kept else None,
            pa.Table.from_batches(rejected) if rejected else KINDS[kind].rejected_schema.empty_table(), stage)


def alpaca(language: str = "en") -> list[dict]:
    path = SAMPLES / f"alpaca_{language}" / f"alpaca_{language}_demo.json"
    return [{"prompt": "\n\n".join(p for p in (r["instruction"], r["input"]) if p.strip()), "completion": r["output"]}
            for r in json.loads(path.read_text(encoding="utf-8"))]


# Answers written the way real ones are: code whose every character matters, in fences and inline.
WRITTEN = [
    "Here is a template:\n\n```html\n<div class=\"card\">\n  <h1>{{ title }}</h1>\n  <p>&nbsp;Price: ½ off</p>\n</div>\n```\n\n"
    "Use `<div>` for blocks and `&amp;` for ampersands.",
    "```python\ndef area(r):\n\n\n\n    # four blank lines above are kept inside code\n    return 3.14159 * r ** 2\t# tab\n```",
    "Install it:\n\n~~~bash\npip install x²\r\n~~~\n\nThen run `x²  --help`.",
]


def code_parts(text: str) -> list[str]:
    return [piece for is_code, piece in segments(text) if is_code]


def test_code_in_real_and_written_answers_survives_byte_for_byte(tmp_path):
    real = [r for r in alpaca() if "```" in r["completion"]]
    zh = [r for r in alpaca("zh") if "```" in r["completion"]]
    assert len(real) >= 30 and len(zh) >= 30
    # Noise a normalizer should remove from the prose: mojibake, CRLF, control characters, blank-line runs.
    noisy = [{"prompt": r["prompt"], "completion": "Hereâ€™s the\x07 answer:\r\n\r\n\r\n" + r["completion"]}
             for r in real + zh] + [{"prompt": "Write HTML.", "completion": c} for c in WRITTEN]
    table = rows("generation", noisy)
    kept, rejected, stage = clean(table, "generation", tmp_path, filters={"completion.unclosed_code_fence": None})
    assert rejected.num_rows == 0 or set(rejected.column("reason").to_pylist()) <= {"completion_refusal_above_max"}
    out = {r["id"]: r["completion"] for r in kept.to_pylist()}
    for row in table.to_pylist():
        if row["id"] in out:
            assert code_parts(out[row["id"]]) == code_parts(row["completion"]), row["id"]
    first = out["r0"]
    assert first.startswith("Here’s the answer:\n\n") and "\x07" not in first and "\r" not in first
    written = [out[f"r{len(real) + len(zh) + i}"] for i in range(3)]
    assert "<h1>{{ title }}</h1>" in written[0] and "`<div>`" in written[0] and "&nbsp;" in written[0]
    assert "\n\n\n\n    # four blank lines" in written[1] and "\t# tab" in written[1]
    assert "pip install x²\r\n" in written[2] and "`x²  --help`" in written[2]
    assert stage.stats["normalized_rows"]["fix_mojibake"] >= len(real) + len(zh)


def test_classification_normalizers_on_a_field_touch_prose_only(tmp_path):
    table = rows("generation", [{"prompt": "What does <b>bold</b> do?  Explain  it.",
                                 "completion": "It makes text bold: `<b>x</b>`.\n\n```html\n<b>  x  </b>\n```"}])
    kept, _, _ = clean(table, "generation", tmp_path, normalize={"strip_html": ["prompt"], "collapse_whitespace": True,
                                                                 "nfkc": ["prompt"]})
    row = kept.to_pylist()[0]
    assert "<b>" not in row["prompt"] and "bold" in row["prompt"] and "  " not in row["prompt"]
    assert "`<b>x</b>`" in row["completion"] and "<b>  x  </b>" in row["completion"]  # the completion was not named


def test_chat_turns_are_normalized_per_role(tmp_path):
    messages = [{"role": "system", "content": "Be   brief."}, {"role": "user", "content": "Caf\u00c3\u00a9?\r\n"},
                {"role": "assistant", "content": "Yes  \u2014 caf\u00e9.\n\n\n\nBye."}]
    kept, _, _ = clean(rows("chat", [{"messages": messages}]), "chat", tmp_path, normalize={"collapse_whitespace": ["system"]})
    out = kept.column("messages").to_pylist()[0]
    assert [m["content"] for m in out] == ["Be brief.", "Café?", "Yes  \u2014 café.\n\nBye."]


def test_rules_name_fields_and_columns_are_plain_identifiers(tmp_path):
    table = rows("generation", [{"prompt": "Name a fruit.", "completion": "Apple."},
                                {"prompt": "Write two sentences about the sea.", "completion": "The sea is vast. It is blue."}])
    kept, rejected, stage = clean(table, "generation", tmp_path, filters={"completion.n_words": {"min": 3}},
                                  signals=["prompt.n_words", "completion_prompt_ratio", "n_turns"])
    assert rejected.column("reason").to_pylist() == ["completion_n_words_below_min"]
    detail = json.loads(rejected.column("details")[0].as_py())
    assert detail == {"column": "completion_n_words", "value": 1.0, "min": 3.0}
    assert json.loads(rejected.column("record")[0].as_py()) == {"prompt": "Name a fruit.", "completion": "Apple.", "system": None}
    for column in ("completion_n_words", "prompt_n_words", "completion_prompt_ratio", "n_turns", "completion_refusal"):
        assert column in kept.column_names
    assert kept.column("n_turns").to_pylist() == [1.0]
    assert stage.summarize().rules["completion_n_words"] == {"min": 3.0}


def test_rule_mistakes_are_one_line_errors(tmp_path):
    table = rows("generation", [{"prompt": "p", "completion": "c"}])
    with pytest.raises(UserError, match=r"say which field n_words reads, e.g. completion.n_words"):
        clean(table, "generation", tmp_path, filters={"n_words": {"min": 1}})
    with pytest.raises(UserError, match=r"generation records have no field 'answer'"):
        clean(table, "generation", tmp_path, filters={"answer.n_words": {"min": 1}})
    with pytest.raises(UserError, match=r"n_turns reads the whole record; name it without a field"):
        clean(table, "generation", tmp_path, filters={"prompt.n_turns": {"max": 3}})
    with pytest.raises(UserError, match=r"clean.normalize.strip_html: generation records have no part 'user'"):
        clean(table, "generation", tmp_path, normalize={"strip_html": ["user"]})
    with pytest.raises(ValueError, match="unknown signal 'completion.wordcount'"):
        Config(filters={"completion.wordcount": {"min": 1}})


def test_instruction_signals_on_the_real_alpaca_sample(tmp_path):
    kept, rejected, _ = clean(rows("generation", alpaca()), "generation", tmp_path)
    reasons = rejected.column("reason").to_pylist()
    details = [json.loads(d) for d in rejected.column("details").to_pylist()]
    phrases = {d["completion_refusal_phrase"] for d, r in zip(details, reasons) if r == "completion_refusal_above_max"}
    assert reasons.count("completion_refusal_above_max") >= 20 and {"as an ai language model", "as an ai,"} <= phrases
    placeholders = {d["completion_placeholder"] for d, r in zip(details, reasons) if r == "completion_placeholders_above_max"}
    assert {"[Your Name]", "[Recipient]", "[Customer’s Name]"} <= placeholders
    assert reasons.count("completion_unclosed_code_fence_above_max") == 1
    texts = rejected.column("text").to_pylist()
    assert not any("[The lights fade" in (d.get("completion_placeholder") or "") for d in details)
    assert all(t.startswith("[prompt]\n") for t in texts)  # a readable rendering beside the JSON record
    assert kept.num_rows + rejected.num_rows == 999


def test_signals_each_find_what_they_promise(tmp_path):
    table = rows("generation", [
        {"prompt": "Write a function.", "completion": "Sure:\n\n```python\ndef f():\n    return 1\n"},  # cut inside code
        {"prompt": "Tell me about Rome.", "completion": "Rome was founded, according to legend, in 753 BC by"},
        {"prompt": "Email the client.", "completion": "Hello {{client_name}}, see <ATTACHMENT_LINK>."},
        {"prompt": "Repeat after me: hello", "completion": "Repeat after me:   HELLO"},
        {"prompt": "你好吗？", "completion": "作为一个人工智能，我没有感情。"},
        {"prompt": "List three fruits.", "completion": "1. Apple\n2. Pear\n3. Plum"},
    ])
    kept, rejected, _ = clean(table, "generation", tmp_path, filters={"completion.ends_mid_sentence": {"max": 0}})
    by_id = dict(zip(rejected.column("id").to_pylist(), rejected.column("reason").to_pylist()))
    assert by_id == {"r0": "completion_unclosed_code_fence_above_max", "r1": "completion_ends_mid_sentence_above_max",
                     "r2": "completion_placeholders_above_max", "r3": "repeated_turns_above_max",
                     "r4": "completion_refusal_above_max"}
    assert kept.column("id").to_pylist() == ["r5"] and kept.column("completion_ends_mid_sentence")[0].as_py() is None


def test_repeated_turns_and_turn_counts_in_conversations(tmp_path):
    looped = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
              {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!  How can I help?"}]
    fine = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye!"}]
    kept, rejected, _ = clean(rows("chat", [{"messages": looped}, {"messages": fine}]), "chat", tmp_path,
                              signals=["n_turns"])
    assert rejected.column("reason").to_pylist() == ["repeated_turns_above_max"]
    assert json.loads(rejected.column("details")[0].as_py())["value"] == 2.0  # the user turn and the answer
    assert kept.column("n_turns").to_pylist() == [2.0]


def test_language_per_field_on_chinese_and_code_answers(tmp_path):
    zh = alpaca("zh")[:60]
    code_only = [{"prompt": "Write Python that prints the numbers one to ten, one per line, please.",
                  "completion": "```python\nfor i in range(1, 11):\n    print(i)\n```"}]
    kept, rejected, _ = clean(rows("generation", zh + code_only), "generation", tmp_path,
                              filters={"completion.refusal": None}, signals=["prompt.lang", "completion.lang"])
    assert rejected.num_rows == 0
    langs = kept.column("completion_lang").to_pylist()
    assert sum(lang == "zh" for lang in langs[:60]) >= 50  # the rest: a few characters, or code
    assert langs[-1] is None  # the code answer has no prose: not applicable
    assert kept.column("prompt_lang").to_pylist()[-1] == "en"
    # A rule allowing English keeps the code answer (a null passes) and drops a Chinese answer.
    kept, rejected, _ = clean(rows("generation", [zh[0], *code_only]), "generation", tmp_path,
                              filters={"completion.lang": {"allowed": ["en"]}})
    assert kept.column("id").to_pylist() == ["r1"] and rejected.column("reason").to_pylist() == ["completion_lang_not_allowed"]
    # An English answer to a Chinese instruction is a language mismatch.
    mixed = rows("generation", [{"prompt": "请用三句话介绍一下长城的历史和它在中国文化中的地位。",
                                 "completion": "The Great Wall was built over many centuries to protect northern China "
                                               "from invasions, and today it is a symbol of the country."}])
    _, rejected, _ = clean(mixed, "generation", tmp_path, filters={"lang_mismatch": {"max": 0}})
    assert rejected.column("reason").to_pylist() == ["lang_mismatch_above_max"]


def test_language_of_japanese_thai_and_korean_answers(tmp_path):
    answers = {
        "ja": "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。多くの観光客が毎年訪れます。",
        "th": "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย และเป็นศูนย์กลางทางเศรษฐกิจที่สำคัญของภูมิภาค",
        "ko": "서울은 대한민국의 수도이며 정치, 경제, 문화의 중심지입니다. 많은 사람들이 살고 있습니다.",
    }
    table = rows("generation", [{"prompt": "Describe the capital in one or two sentences, please.", "completion": a}
                                for a in answers.values()])
    kept, rejected, _ = clean(table, "generation", tmp_path, signals=["completion.lang"])
    assert rejected.num_rows == 0 and kept.column("completion_lang").to_pylist() == list(answers)
