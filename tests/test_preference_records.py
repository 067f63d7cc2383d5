"""The preference record kind (schemas/preference.py): collect reads preference sets in the usual shapes
(TRL's standard and conversational forms, ShareGPT-style conversations + chosen + rejected), rejects
malformed records with their reason, and publishes TRL's prompt / chosen / rejected columns."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from .conftest import run_pipeline, write_config


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_preference_sets_in_three_shapes_publish_trl_columns(tmp_path):
    answer = "Rivers carry water from high ground to the sea; the Nile, for example, flows north into the Mediterranean."
    _jsonl(tmp_path / "sharegpt.jsonl", [
        {"conversations": [{"from": "human", "value": f"Where does river number {i} flow, and why does it go there?"}],
         "chosen": {"from": "gpt", "value": f"{answer} ({i})"}, "rejected": {"from": "gpt", "value": f"Nowhere at all {i}."}}
        for i in range(6)] + [
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}],
         "chosen": {"from": "gpt", "value": "x"}, "rejected": {"from": "gpt", "value": "y"}},
        {"conversations": [{"from": "human", "value": "Say something kind to the reader"}],
         "chosen": {"from": "gpt", "value": "  "}, "rejected": {"from": "gpt", "value": "y"}},
        {"conversations": [{"from": "human", "value": "Say something kind to the reader"}], "chosen": {"from": "gpt", "value": "hi"}},
    ])
    _jsonl(tmp_path / "trl_conv.jsonl", [
        {"prompt": [{"role": "user", "content": f"Name a lake in country number {i}, please, and describe it."}],
         "chosen": [{"role": "assistant", "content": f"Lake number {i} is deep, cold and clear all year long."}],
         "rejected": [{"role": "assistant", "content": f"Lakes do not exist {i}."}]} for i in range(4)])
    _jsonl(tmp_path / "trl_std.jsonl", [
        {"question": f"What colour is sky number {i} at noon on a clear day?", "good": f"Sky {i} is blue at noon.",
         "bad": f"Sky {i} is green."} for i in range(4)])
    config = write_config(tmp_path, {
        "dataset": "prefs", "kind": "preference",
        "sources": [{"name": "sharegpt", "path": "sharegpt.jsonl", "format": "jsonl", "record_format": "sharegpt"},
                    {"name": "conv", "path": "trl_conv.jsonl", "format": "jsonl"},
                    {"name": "std", "path": "trl_std.jsonl", "format": "jsonl",
                     "fields": {"prompt": "question", "chosen": "good", "rejected": "bad"}}],
        "split": {"ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}},
        "evaluate": {"min_rows": {"train": 4, "validation": 1, "test": 1}},  # a handful of records
    })
    result = run_pipeline(config, tmp_path / "data")
    assert result.published
    version = tmp_path / "data" / "versions" / "prefs" / result.version
    rows = pa.concat_tables([pq.read_table(version / f"{s}.parquet") for s in ("train", "validation", "test")])
    assert rows.schema.field("prompt").type == pa.string() and rows.schema.field("chosen").type == pa.string()
    assert rows.num_rows == 14
    by_source = {r["source"]: r for r in rows.to_pylist()}
    assert by_source["conv"]["chosen"].startswith("Lake number") and by_source["std"]["rejected"].endswith("is green.")
    rejected = pq.read_table(version / "rejected.parquet").to_pandas()
    collect = sorted(rejected.loc[rejected["stage"] == "collect", "reason"])
    assert collect == ["empty_response", "missing_field", "preference_prompt_not_single_turn"]
