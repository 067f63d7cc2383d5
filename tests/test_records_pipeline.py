"""Instruction and chat versions end to end (issue 13): the shipped alpaca_en and glaive_toolcall configs
through the real executor — accounting, published columns and types, manifest, card, report, loading with
`datasets`, a chat template over the published turns, export → collect round trips — plus Chinese
near-duplicates found by `shingle: auto`, and annotate refusing response review in one line."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import schemas
from pipeline.errors import UserError
from schemas.chat import MESSAGES, hf_messages

from .conftest import REPO, SAMPLES, run_pipeline, sftpipe, write_config


def shipped(name: str, **overrides) -> dict:
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    for source in config["sources"]:
        source["path"] = str((REPO / "configs" / source["path"]).resolve())
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def alpaca_version(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alpaca")
    result = run_pipeline(write_config(folder, shipped("alpaca_en")), folder / "data")
    return result, folder / "data" / "versions" / "alpaca-en" / result.version


@pytest.fixture(scope="module")
def glaive_version(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glaive")
    result = run_pipeline(write_config(folder, shipped("glaive_toolcall")), folder / "data")
    return result, folder / "data" / "versions" / "glaive-toolcall" / result.version


def every_row_once(version: Path, n_in: int) -> None:
    ids = [i for s in schemas.SPLITS for i in pq.read_table(version / f"{s}.parquet", columns=["id"]).column("id").to_pylist()]
    rejected = pq.read_table(version / "rejected.parquet").column("id").to_pylist()
    assert len(ids) == len(set(ids)) and not set(ids) & set(rejected)
    assert len(ids) + len(rejected) == n_in


def test_alpaca_version_columns_types_accounting_manifest_and_card(alpaca_version):
    result, version = alpaca_version
    every_row_once(version, 999)
    train = pq.read_table(version / "train.parquet")
    assert train.schema.field("prompt").type == pa.string() and not train.schema.field("prompt").nullable
    assert train.schema.field("completion").type == pa.string() and train.schema.field("system").type == pa.string()
    assert train.schema.names[:8] == ["id", "source", "source_file", "source_line", "prompt", "completion", "system", "meta"]
    for column in ("completion_refusal", "completion_lang", "prompt_lang", "lang_mismatch", "completion_prompt_ratio",
                   "n_turns", "cluster_id", "split"):
        assert column in train.schema.names
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["kind"] == "generation"
    dropped = manifest["rejected"]["by_stage_reason"]
    assert dropped["clean"]["completion_refusal_above_max"] >= 20 and dropped["dedupe"]["exact_duplicate"] >= 10
    rejected = pq.read_table(version / "rejected.parquet")
    assert rejected.schema.names == [*schemas.REJECTED.names, "record"]
    record = json.loads(rejected.column("record")[0].as_py())
    assert set(record) == {"prompt", "completion", "system"}
    card = (version / "README.md").read_text()
    assert "task_categories:\n- text-generation" in card and "SFTTrainer" in card and "| `completion` | string |" in card
    report = (version / "report.html").read_text()
    for section in ("Length per field", "Refusals and placeholders", "Language mix per field",
                    "Removed rows by reason, with examples", "as an ai language model"):
        assert section in report
    assert result.manifest["evaluation"]["refusals"]["share"] == 0.0


def test_published_versions_load_with_datasets(alpaca_version, glaive_version):
    ds = datasets.load_dataset("parquet", data_dir=str(alpaca_version[1]))
    assert set(ds) == {"train", "validation", "test"}
    assert ds["train"].features["prompt"].dtype == "string" and "completion" in ds["train"].features
    chat = datasets.load_dataset("parquet", data_dir=str(glaive_version[1]))
    row = chat["train"][0]
    assert set(row["messages"][0]) == {"role", "content"}  # no None-valued keys for templates to trip on
    assert row["messages"][-1]["role"] == "assistant"


def test_chat_version_roles_tools_and_a_chat_template(glaive_version):
    from transformers import AutoTokenizer

    from train.config import default_model_path

    result, version = glaive_version
    every_row_once(version, 300)
    table = pq.read_table(version / "train.parquet")
    assert table.schema.field("messages").type.equals(MESSAGES) and table.schema.field("tools").type == pa.string()
    assert json.loads((version / "manifest.json").read_text())["kind"] == "chat"
    rows = table.to_pylist()
    with_tools = next(r for r in rows if any(m["role"] == "tool" for m in r["messages"]))
    # A template that renders tools and tool calls (ChatML with tool tags, as Qwen's does), over the turns
    # in Hugging Face's tool-calling form.
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    tokenizer.chat_template = (
        "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools><|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}"
        "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}")
    turns = hf_messages(with_tools["messages"])
    rendered = tokenizer.apply_chat_template(turns, tools=json.loads(with_tools["tools"]), tokenize=False)
    call = next(t for t in turns if "tool_calls" in t)
    assert "<tool_call>" in rendered and call["tool_calls"][0]["function"]["name"] in rendered
    assert rendered.count("<|im_start|>") == len(turns) + 1
    plain = tokenizer.apply_chat_template(with_tools["messages"], tokenize=False)  # the published form renders as is
    assert with_tools["messages"][-1]["content"] in plain


def collect_payloads(tmp_path: Path, kind: str, record_format: str, files: list[Path]) -> list[dict]:
    config = {"dataset": "back", "kind": kind,
              "sources": [{"name": "back", "path": [str(f) for f in files], "format": "jsonl", "record_format": record_format}]}
    from pipeline.stage import StageContext
    from schemas.kinds import KINDS
    from stages.collect import CollectStage, Config

    stage = CollectStage(Config(sources=config["sources"]),
                         StageContext(dataset="back", config_dir=tmp_path, work_dir=tmp_path, kind=KINDS[kind]))
    payloads = []
    for out in stage.run(None):
        assert out.rejected is None
        payloads += out.kept.select(KINDS[kind].payload_names).to_pylist()
    return payloads


@pytest.mark.parametrize("name,kind,formats", [("alpaca", "generation", ["alpaca", "sharegpt", "messages"]),
                                                ("glaive", "chat", ["sharegpt", "messages"])])
def test_export_then_collect_gives_the_same_rows(tmp_path, alpaca_version, glaive_version, name, kind, formats):
    from pipeline.cli.export import export_version

    version = alpaca_version[1] if name == "alpaca" else glaive_version[1]
    payload_names = ["prompt", "completion", "system"] if kind == "generation" else ["messages", "tools"]
    published = [r for s in schemas.SPLITS for r in pq.read_table(version / f"{s}.parquet", columns=payload_names).to_pylist()]
    for fmt in formats:
        counts = export_version(version, fmt, tmp_path / fmt)
        assert sum(counts.values()) == len(published)
        back = collect_payloads(tmp_path, kind, fmt, [tmp_path / fmt / f"{s}.jsonl" for s in schemas.SPLITS])
        key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
        assert sorted(map(key, back)) == sorted(map(key, published)), fmt


def test_export_refuses_what_a_format_cannot_hold(tmp_path, glaive_version):
    from pipeline.cli.export import export_version

    with pytest.raises(UserError, match="--format alpaca cannot hold row .* \\(tool turns\\); use --format sharegpt or messages"):
        export_version(glaive_version[1], "alpaca", tmp_path / "a")
    cli = subprocess.run([sys.executable, "-m", "pipeline.cli", "export", "glaive-toolcall", "--format", "csv",
                          "--data-dir", str(glaive_version[1].parent.parent.parent)], capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 1 and cli.stderr.strip().splitlines() == ["error: --format 'csv': choose one of alpaca, sharegpt, messages"]


def test_annotate_label_mode_refuses_generative_kinds_in_one_line_unless_skipped(tmp_path):
    """Generation records have no class to pick: the default mode (label) names the review modes instead."""
    config = shipped("alpaca_en", annotate={"select": "sample", "sample_size": 4})
    config["clean"] = {}
    path = write_config(tmp_path, config)
    with pytest.raises(UserError, match=r"annotate: generation records have no class label to pick — set "
                                        r"annotate.mode to rate or edit \(review of responses\), or run with --no-annotate$"):
        run_pipeline(path, tmp_path / "data")
    # As the message says: the same config publishes with --no-annotate (the section is not checked then).
    cli = sftpipe("run", str(path), "--data-dir", str(tmp_path / "data"), "--no-annotate")
    assert cli.returncode == 0 and "published alpaca-en v1" in cli.stdout, cli.stdout + cli.stderr


def test_chinese_near_duplicates_are_found_by_character_shingles(tmp_path):
    """Real Chinese instructions (alpaca_zh) with planted near copies — a changed character and a full-width
    comma written half-width, as re-posted instructions differ — are found by `shingle: auto` (character
    3-grams for Chinese); word shingles (a Chinese sentence is one "word") find none of them."""
    records = json.loads((SAMPLES / "alpaca_zh" / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    rng = random.Random(7)
    prompt = lambda r: "\n\n".join(p for p in (r["instruction"], r["input"]) if p.strip())  # noqa: E731
    originals = [prompt(r) for r in records if 60 <= len(prompt(r)) <= 300]
    assert len(originals) >= 30
    planted = []
    for text in originals:
        text = text.replace("，", ",", 1)
        i = rng.randrange(len(text) // 3, len(text))
        planted.append(text[:i] + "请" + text[i + 1:])
    extra = [{"instruction": p, "input": "", "output": "好的。"} for p in planted]
    (tmp_path / "zh.json").write_text(json.dumps(records + extra, ensure_ascii=False), encoding="utf-8")
    base = {"dataset": "zh", "kind": "generation",
            "sources": [{"name": "zh", "path": "zh.json", "format": "json", "record_format": "alpaca"}],
            "clean": {"filters": {"completion.refusal": None, "completion.placeholders": None,
                                  "completion.unclosed_code_fence": None}},
            "evaluate": {"enabled": False}}

    def removed(data_dir: Path, result) -> list[dict]:
        return pq.read_table(data_dir / "versions" / "zh" / result.version / "rejected.parquet").to_pylist()

    auto = run_pipeline(write_config(tmp_path, base), tmp_path / "auto")
    rejected = [r for r in removed(tmp_path / "auto", auto) if r["reason"] == "near_duplicate"]
    near = {json.loads(r["record"])["prompt"] for r in rejected}
    found = sum(p in near or o in near for p, o in zip(planted, originals))
    assert found >= len(planted) - 2, f"{found} of {len(planted)} planted near-duplicates found"
    assert all(json.loads(r["details"])["jaccard"] >= 0.8 for r in rejected)
    dedupe = next(s for s in auto.stages if s.name == "dedupe")
    assert dedupe.dropped.get("exact_duplicate", 0) >= 5  # alpaca_zh's own repeated instructions
    similarity = auto.summaries.get(__import__("schemas.summaries", fromlist=["DedupeSummary"]).DedupeSummary).similarity
    assert (similarity.key, similarity.shingle, similarity.char_ngram) == ("prompt", "auto", 3)
    words = run_pipeline(write_config(tmp_path, {**base, "dedupe": {"shingle": "word"}}), tmp_path / "words")
    near_words = {json.loads(r["record"])["prompt"] for r in removed(tmp_path / "words", words) if r["reason"] == "near_duplicate"}
    assert sum(p in near_words or o in near_words for p, o in zip(planted, originals)) == 0


# Every column of every published and rejected row of the SMS config, but the source path (it depends on
# where the checkout is). A change to classification's output is a decision: update the digest with the
# reason. SMS_ROWS_DIGEST is with issue #21's label rules switched off (OLD_RULES), which gives main's rows
# back exactly. It was 5ac2cf57… (main at 0d3cfb1, before record kinds existed); changed by issue #21's
# short-junk rules and #16's word and strip_html fixes: 21 more messages rejected (17 lang, 2
# top_token_share, ":)" and ":-) :-)" with no word), and the new signal columns (placeholder_only, url_only,
# markup_share, top_token_share, lang, lang_score) on every row. SMS_ROWS_DIGEST_LABEL_RULES is today's
# default: label_noise drops the messages it is confident are mislabelled, dedupe drops punctuation in short
# texts and keeps a text's majority label, and every row carries the label evidence columns. It was
# a477b94e… until the gate read the stage's verdicts back (issue #18, one label model per run): the same rows,
# splits and rejections, plus the `label_issue_rank` column, and `label_prob` / `suggested_prob` rounded to
# 6 decimals in float64 instead of float32 (at most 1.03e-6 apart on this config, compared row by row). It
# was 179a463d… until the label model held a text's copies in one fold and hashed its n-grams (issues #21,
# #18): label_noise drops 16 messages instead of 10 (the 6 more: spam-service texts whose copies had
# vouched for them), 3 published rows change split (the stratified split over 6 fewer rows), and
# `label_prob` / `suggested_prob` move (mean 0.007; up to 0.9 on texts with copies, which no longer predict
# each other). Compared row by row against main at 3955822.
SMS_ROWS_DIGEST = "c7a748512684f603330fbfd1514a2aef6fa827c506d4ab4e95be5dd019ebaa71"
SMS_ROWS_DIGEST_LABEL_RULES = "176810927c01c9d660cca5dbdf894b741516e63d33c2cbf26687f5569f31519b"
OLD_RULES = {"label_noise": {"enabled": False}, "dedupe": {"label_conflicts": "ignore", "punctuation": "keep"}}


@pytest.mark.parametrize("overrides, expected", [(OLD_RULES, SMS_ROWS_DIGEST), ({}, SMS_ROWS_DIGEST_LABEL_RULES)],
                         ids=["before-issue-21", "defaults"])
def test_classification_publishes_row_for_row_what_it_did(tmp_path, overrides, expected):
    import hashlib

    from .conftest import sms_config

    result = run_pipeline(write_config(tmp_path, sms_config(**overrides)), tmp_path / "data")
    version = tmp_path / "data" / "versions" / "sms-spam" / result.version
    digest = hashlib.sha256()
    for name in [*schemas.SPLITS, "rejected"]:
        table = pq.read_table(version / f"{name}.parquet")
        expected_schema = schemas.SPLIT if name != "rejected" else schemas.REJECTED
        assert table.schema.names[:len(expected_schema)] == expected_schema.names
        rows = [{k: v for k, v in r.items() if k != "source_file"} for r in table.to_pylist()]
        for row in sorted(rows, key=lambda r: (r["id"], r.get("stage") or "")):
            digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    assert digest.hexdigest() == expected
    assert json.loads((version / "manifest.json").read_text())["kind"] == "classification"


def test_two_mapped_fields_example_repairs_mojibake(tmp_path):
    result = run_pipeline(write_config(tmp_path, shipped("xsum_summaries")), tmp_path / "data")
    version = tmp_path / "data" / "versions" / "xsum-summaries" / result.version
    every_row_once(version, 8)
    prompts = [p for s in schemas.SPLITS for p in pq.read_table(version / f"{s}.parquet").column("prompt").to_pylist()]
    assert any("its €78bn (£57bn) international bailout" in p for p in prompts)
    assert not any("â‚¬" in p for p in prompts)
