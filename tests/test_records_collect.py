"""collect for instruction and chat records: every record format on real records, nested field paths, and
every way a record can be malformed rejected with its own reason (issue 13)."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import UserError
from pipeline.stage import StageContext
from schemas.kinds import KINDS
from stages.collect import CollectStage, Config, SourceConfig

from .conftest import SAMPLES

ALPACA_EN = SAMPLES / "alpaca_en" / "alpaca_en_demo.json"
ALPACA_ZH = SAMPLES / "alpaca_zh" / "alpaca_zh_demo.json"
GLAIVE = SAMPLES / "glaive_toolcall" / "glaive_toolcall_en_demo.json"


def collect(tmp_path: Path, kind: str, **source) -> tuple[pa.Table, pa.Table]:
    source.setdefault("name", "src")
    stage = CollectStage(Config(sources=[SourceConfig(**source)]),
                         StageContext(dataset="t", config_dir=tmp_path, work_dir=tmp_path, kind=KINDS[kind]))
    kept, rejected = [], []
    for out in stage.run(None):
        if out.kept is not None:
            kept.append(out.kept)
        if out.rejected is not None:
            rejected.append(out.rejected)
    k = KINDS[kind]
    return (pa.Table.from_batches(kept) if kept else k.schema().empty_table(),
            pa.Table.from_batches(rejected) if rejected else k.rejected_schema.empty_table())


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_alpaca_json_array_to_generation(tmp_path):
    kept, rejected = collect(tmp_path, "generation", path=str(ALPACA_EN), format="json", record_format="alpaca")
    assert kept.num_rows == 999 and rejected.num_rows == 0
    assert kept.schema.equals(KINDS["generation"].schema())
    source = json.loads(ALPACA_EN.read_text())
    rows = kept.to_pylist()
    for rec, row in zip(source, rows):
        # Alpaca's input is joined to the instruction by a blank line; the output is the completion.
        assert row["prompt"] == "\n\n".join(p for p in (rec["instruction"], rec["input"]) if p.strip())
        assert row["completion"] == rec["output"] and row["system"] is None
    assert len({r["id"] for r in rows}) == 999


def test_alpaca_history_becomes_a_conversation_and_is_rejected_for_generation(tmp_path):
    records = [{"instruction": "And in French?", "input": "", "output": "Bonjour.", "system": "Be brief.",
                "history": [["Say hello in German.", "Hallo."]]},
               {"instruction": "Say hi.", "input": "", "output": "Hi."}]
    path = write_jsonl(tmp_path / "a.jsonl", records)
    kept, rejected = collect(tmp_path, "chat", path=str(path), format="jsonl", record_format="alpaca")
    assert kept.column("messages").to_pylist()[0] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello in German."},
        {"role": "assistant", "content": "Hallo."}, {"role": "user", "content": "And in French?"},
        {"role": "assistant", "content": "Bonjour."}]
    assert rejected.num_rows == 0
    kept, rejected = collect(tmp_path, "generation", path=str(path), format="jsonl", record_format="alpaca")
    assert kept.num_rows == 1 and rejected.column("reason").to_pylist() == ["history_needs_chat_kind"]
    assert json.loads(rejected.column("text")[0].as_py())["history"] == [["Say hello in German.", "Hallo."]]


def test_sharegpt_with_tool_roles_and_tools_kept(tmp_path):
    kept, rejected = collect(tmp_path, "chat", path=str(GLAIVE), format="json", record_format="sharegpt")
    assert kept.num_rows == 300 and rejected.num_rows == 0
    source = json.loads(GLAIVE.read_text())
    tags = {"human": "user", "gpt": "assistant", "function_call": "assistant", "observation": "tool"}
    for rec, row in zip(source, kept.to_pylist()):
        assert [(m["role"], m["content"]) for m in row["messages"]] == \
            [(tags[t["from"]], t["value"]) for t in rec["conversations"]]
        assert row["tools"] == rec["tools"]  # the JSON text as the source gave it
    roles = {m["role"] for row in kept.column("messages").to_pylist() for m in row}
    assert roles == {"user", "assistant", "tool"}


def test_messages_in_jsonl_json_and_parquet_and_openai_tool_calls(tmp_path):
    conversation = [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Weather in Wellington?"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "c1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\": \"Wellington\"}"}}]},
                    {"role": "tool", "content": "18C and windy"},
                    {"role": "assistant", "content": "18°C and windy."}]
    records = [{"messages": conversation, "tools": [{"type": "function", "function": {"name": "get_weather"}}]}]
    expected = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Weather in Wellington?"},
                {"role": "assistant", "content": json.dumps({"name": "get_weather", "arguments": {"city": "Wellington"}})},
                {"role": "tool", "content": "18C and windy"}, {"role": "assistant", "content": "18°C and windy."}]
    write_jsonl(tmp_path / "m.jsonl", records)
    (tmp_path / "m.json").write_text(json.dumps(records), encoding="utf-8")
    simple = [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}] * 3
    pq.write_table(pa.Table.from_pylist(simple), tmp_path / "m.parquet")
    for fmt, name in (("jsonl", "m.jsonl"), ("json", "m.json")):
        kept, rejected = collect(tmp_path, "chat", path=str(tmp_path / name), format=fmt)  # messages: chat's default
        assert rejected.num_rows == 0 and kept.column("messages").to_pylist()[0] == expected
        assert json.loads(kept.column("tools")[0].as_py()) == records[0]["tools"]
    kept, rejected = collect(tmp_path, "chat", path=str(tmp_path / "m.parquet"), format="parquet")
    assert kept.num_rows == 3 and len(set(kept.column("id").to_pylist())) == 3  # repeats keep distinct ids
    # One user turn and its answer also make a generation record.
    kept, _ = collect(tmp_path, "generation", path=str(tmp_path / "m.parquet"), format="parquet", record_format="messages")
    assert kept.select(["prompt", "completion", "system"]).to_pylist()[0] == {"prompt": "2+2?", "completion": "4", "system": None}


def test_two_mapped_fields_with_nested_paths(tmp_path):
    # The shape of WMT in Hugging Face datasets (translation.en → translation.ro) and of XSum (document → summary).
    wmt = [{"translation": {"en": "Written statements for entry", "ro": "Declaraţii scrise înscrise"}},
           {"translation": {"en": "Membership of Parliament: see Minutes",
                            "ro": "Componenţa Parlamentului: a se vedea procesul-verbal"}}]
    path = write_jsonl(tmp_path / "wmt.jsonl", wmt)
    kept, rejected = collect(tmp_path, "generation", path=str(path), format="jsonl",
                             fields={"prompt": "translation.en", "completion": "translation.ro"})
    assert rejected.num_rows == 0
    assert kept.column("completion").to_pylist() == ["Declaraţii scrise înscrise",
                                                     "Componenţa Parlamentului: a se vedea procesul-verbal"]
    table = pa.table({"document": ["The warning begins at 22:00 GMT on Saturday."],
                      "summary": ["The Met Office has issued a yellow weather warning for ice."], "doc_id": ["x1"]})
    pq.write_table(table, tmp_path / "xsum.parquet")
    datasets.Dataset(table).save_to_disk(str(tmp_path / "xsum_hf"))
    for fmt, name in (("parquet", "xsum.parquet"), ("hf_disk", "xsum_hf")):
        kept, _ = collect(tmp_path, "generation", path=str(tmp_path / name), format=fmt, id_field="doc_id",
                          fields={"prompt": "document", "completion": "summary"}, meta_fields=["doc_id"])
        assert kept.column("id").to_pylist() == ["x1"] and kept.column("prompt")[0].as_py().startswith("The warning")


MALFORMED = [
    # (record, kind, record_format, reason)
    ({"instruction": "Hi"}, "generation", "alpaca", "missing_field"),
    ({"instruction": ["a", "b"], "output": "x"}, "generation", "alpaca", "field_not_a_string"),
    ({"instruction": "Say hi.", "output": "   "}, "generation", "alpaca", "empty_response"),
    ({"instruction": "  ", "input": "", "output": "Hi."}, "generation", "alpaca", "empty_prompt"),
    ({"instruction": "Q", "output": "A", "history": [["only one"]]}, "chat", "alpaca", "history_not_a_list_of_pairs"),
    ({"instruction": "Q", "output": "A", "history": [["q", "a"]]}, "generation", "alpaca", "history_needs_chat_kind"),
    ({"conversations": "not json"}, "chat", "sharegpt", "conversation_not_a_list"),
    ({"conversations": {"from": "human"}}, "chat", "sharegpt", "conversation_not_a_list"),
    ({"conversations": ["hi", "hello"]}, "chat", "sharegpt", "turn_not_an_object"),
    ({"conversations": [{"from": "robot", "value": "beep"}]}, "chat", "sharegpt", "unknown_role"),
    ({"conversations": [{"value": "no role"}]}, "chat", "sharegpt", "missing_field"),
    ({"conversations": [{"from": "human", "value": 7}, {"from": "gpt", "value": "x"}]}, "chat", "sharegpt", "content_not_a_string"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}, {"from": "gpt", "value": "c"}]},
     "chat", "sharegpt", "consecutive_user_turns"),
    ({"conversations": [{"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}]},
     "chat", "sharegpt", "assistant_before_user"),
    ({"conversations": [{"from": "human", "value": "weather?"}, {"from": "observation", "value": "{\"t\": 18}"},
                        {"from": "gpt", "value": "18"}]}, "chat", "sharegpt", "tool_result_without_call"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}]},
     "chat", "sharegpt", "ends_on_user_turn"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "{}"},
                        {"from": "observation", "value": "{}"}]}, "chat", "sharegpt", "ends_on_tool_result"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "gpt", "value": "c"}]},
     "chat", "sharegpt", "consecutive_assistant_turns"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "system", "value": "s"}, {"from": "gpt", "value": "c"}]},
     "chat", "sharegpt", "system_turn_not_first"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "{}"},
                        {"from": "observation", "value": "{}"}, {"from": "human", "value": "b"}, {"from": "gpt", "value": "c"}]},
     "chat", "sharegpt", "tool_result_without_answer"),
    ({"conversations": []}, "chat", "sharegpt", "no_turns"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}], "tools": "{not json"},
     "chat", "sharegpt", "tools_not_json"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
                        {"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]},
     "generation", "sharegpt", "several_turns_need_chat_kind"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]}, "chat", "messages", "empty_response"),
    ({"messages": [{"role": "system", "content": " "}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
     "chat", "messages", "empty_turn"),
    ({"prompt": "p"}, "generation", "fields", "missing_field"),
    ({"prompt": {"nested": 1}, "completion": "c"}, "generation", "fields", "field_not_a_string"),
]


@pytest.mark.parametrize("record,kind,record_format,reason", MALFORMED, ids=[f"{m[3]}-{m[2]}" for m in MALFORMED])
def test_every_malformed_record_is_rejected_with_its_reason(tmp_path, record, kind, record_format, reason):
    good = {"alpaca": {"instruction": "Say hi.", "output": "Hi."},
            "sharegpt": {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
            "messages": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            "fields": {"prompt": "hi", "completion": "hello"}}[record_format]
    path = write_jsonl(tmp_path / "r.jsonl", [good, record, good])
    kept, rejected = collect(tmp_path, kind, path=str(path), format="jsonl", record_format=record_format)
    assert kept.num_rows == 2, "the good records around it are kept"
    assert rejected.column("reason").to_pylist() == [reason]
    row = rejected.to_pylist()[0]
    assert row["stage"] == "collect" and row["source_line"] == 2
    assert json.loads(row["text"]) == record  # nothing lost: the record as read


def test_json_array_that_is_not_a_list_of_objects_and_broken_json(tmp_path):
    (tmp_path / "mixed.json").write_text(json.dumps([{"instruction": "Q", "output": "A"}, "a string", 3, [1]]))
    kept, rejected = collect(tmp_path, "generation", path=str(tmp_path / "mixed.json"), format="json", record_format="alpaca")
    assert kept.num_rows == 1
    assert rejected.column("reason").to_pylist() == ["json_not_an_object"] * 3
    assert rejected.column("source_line").to_pylist() == [2, 3, 4]
    (tmp_path / "scalar.json").write_text("42")
    _, rejected = collect(tmp_path, "generation", path=str(tmp_path / "scalar.json"), format="json", record_format="alpaca")
    assert rejected.column("reason").to_pylist() == ["json_not_an_array"]
    (tmp_path / "broken.json").write_text('[{"instruction": "Q", "output": "A"},\n {"instruction": ')
    _, rejected = collect(tmp_path, "generation", path=str(tmp_path / "broken.json"), format="json", record_format="alpaca")
    assert rejected.column("reason").to_pylist() == ["invalid_json"] and rejected.column("source_line")[0].as_py() == 2


def test_config_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="fields: 'question' not read by record_format alpaca"):
        SourceConfig(name="s", path="x", format="json", record_format="alpaca", fields={"question": "q"})
    (tmp_path / "a.json").write_text("[]")
    with pytest.raises(UserError, match="record_format fields maps two fields onto a generation record"):
        collect(tmp_path, "chat", path=str(tmp_path / "a.json"), format="json", record_format="fields")
    with pytest.raises(UserError, match="record_format / fields are for generation and chat datasets"):
        collect(tmp_path, "classification", path=str(tmp_path / "a.json"), format="json", record_format="alpaca")


def test_a_missing_column_names_the_field(tmp_path):
    from pipeline.config import load_config

    write_jsonl(tmp_path / "d.jsonl", [{"document": "d", "summary": "s"}])
    (tmp_path / "c.yaml").write_text("dataset: x\nkind: generation\nsources: [{name: s, path: d.jsonl, format: jsonl}]\n")
    with pytest.raises(UserError, match=r"fields.prompt \(fields\) 'prompt' is not a column of .*d.jsonl \(columns: document, summary\)"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("kind, record", [
    ("classification", {"text": "Is it raining?", "label": "q"}),
    ("generation", {"instruction": "Say hi.", "output": "Hi."}),
])
def test_id_and_meta_follow_one_rule_for_every_kind(tmp_path, kind, record):
    # A NaN id (pandas writes one for an empty cell) is a missing id, and a meta field may be a dotted path,
    # whatever the record kind: the id and meta of a row are read by one function.
    rows = [{**record, "uid": "a1", "user": {"name": "ann"}}, {**record, "uid": float("nan"), "user": {}},
            {**record, "user": {"name": "bob"}}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # json writes NaN as NaN
    fmt = {"classification": {"label_field": "label"}, "generation": {"record_format": "alpaca"}}[kind]
    kept, rejected = collect(tmp_path, kind, path=str(path), format="jsonl", id_field="uid",
                             meta_fields=["user.name"], **fmt)
    assert kept.column("id").to_pylist() == ["a1"]
    assert json.loads(kept.column("meta")[0].as_py()) == {"user.name": "ann"}
    assert rejected.column("reason").to_pylist() == ["missing_id", "missing_id"]
    assert rejected.column("source_line").to_pylist() == [2, 3]
