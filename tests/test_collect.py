"""collect: every format, real quirky files, and bad rows rejected with their reason and location."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipeline.errors import UserError
from pipeline.stage import StageContext
from stages.collect import CollectStage, Config, SourceConfig

from .conftest import SAMPLES


def collect(tmp_path: Path, labels=None, batch_size=1000, **source) -> tuple[pa.Table, pa.Table]:
    source.setdefault("name", "src")
    stage = CollectStage(Config(sources=[SourceConfig(**source)]),
                         StageContext(dataset="t", config_dir=tmp_path, work_dir=tmp_path, batch_size=batch_size, labels=labels))
    kept, rejected = [], []
    for out in stage.run(None):
        if out.kept is not None:
            schemas.check(out.kept, schemas.COLLECTED, "collect")
            kept.append(out.kept)
        if out.rejected is not None:
            schemas.check(out.rejected, schemas.REJECTED, "collect rejected")
            rejected.append(out.rejected)
    empty_kept = schemas.COLLECTED.empty_table()
    return (pa.Table.from_batches(kept) if kept else empty_kept,
            pa.Table.from_batches(rejected) if rejected else schemas.REJECTED.empty_table())


def test_sms_original_tsv_with_quotes_and_header(tmp_path):
    kept, rejected = collect(tmp_path, path=str(SAMPLES / "sms_spam" / "SMSSpamCollection"), format="tsv",
                             quoting="none", text_field="message", label_field="output")
    assert kept.num_rows == 5574 and rejected.num_rows == 0
    labels = kept.column("label").to_pylist()
    assert labels.count("ham") == 4827 and labels.count("spam") == 747
    # Quote characters are text, not CSV quoting: a message that starts with one keeps it.
    assert any(t.startswith('"') for t in kept.column("text").to_pylist())
    assert kept.column("source_line").to_pylist()[:2] == [2, 3]  # line 1 is the header
    assert len(set(kept.column("id").to_pylist())) == 5574  # exact duplicates still get distinct ids


def test_trec_latin1_with_pattern(tmp_path):
    kept, rejected = collect(tmp_path, path=str(SAMPLES / "trec" / "*.label"), format="text", encoding="latin-1",
                             pattern=r"^(?P<label>[A-Z]+):(?P<fine>\S+) (?P<text>.+)$", label_field="label",
                             meta_fields=["fine"])
    assert kept.num_rows == 5952 and rejected.num_rows == 0
    assert set(kept.column("label").to_pylist()) == {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    assert json.loads(kept.column("meta")[0].as_py()).keys() == {"fine"}
    assert any("sister\u00f0city" in t for t in kept.column("text").to_pylist())  # the Latin-1 byte 0xF0, decoded


def test_trec_read_as_utf8_rejects_undecodable_lines_with_location(tmp_path):
    kept, rejected = collect(tmp_path, path=str(SAMPLES / "trec" / "train_5500.label"), format="text",
                             pattern=r"^(?P<label>[A-Z]+):(?P<fine>\S+) (?P<text>.+)$", label_field="label")
    assert rejected.num_rows > 0
    assert set(rejected.column("reason").to_pylist()) == {"undecodable"}
    assert kept.num_rows + rejected.num_rows == 5452
    raw = (SAMPLES / "trec" / "train_5500.label").read_bytes().split(b"\n")
    for line in rejected.column("source_line").to_pylist():
        with pytest.raises(UnicodeDecodeError):
            raw[line - 1].decode("utf-8")


def test_malformed_jsonl(tmp_path):
    lines = [
        json.dumps({"text": "fine row", "label": "a", "extra": 1}),
        '{"text": "broken json',
        json.dumps(["not", "an", "object"]),
        json.dumps({"label": "a"}),
        json.dumps({"text": {"nested": "value"}}),
        json.dumps({"text": 42, "label": 7}),
        "",
        json.dumps({"text": "   "}),
        json.dumps({"text": "second fine row", "label": None}),
    ]
    f = tmp_path / "in.jsonl"
    f.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))  # a BOM and CRLF line ends
    kept, rejected = collect(tmp_path, path="in.jsonl", format="jsonl", label_field="label", meta_fields=["extra"])
    assert kept.column("text").to_pylist() == ["fine row", "42", "second fine row"]
    assert kept.column("label").to_pylist() == ["a", "7", None]
    assert json.loads(kept.column("meta")[0].as_py()) == {"extra": 1}
    reasons = dict(zip(rejected.column("source_line").to_pylist(), rejected.column("reason").to_pylist()))
    assert reasons == {2: "invalid_json", 3: "json_not_an_object", 4: "missing_text_field", 5: "text_not_a_string",
                       8: "empty_text"}
    assert rejected.column("text").to_pylist()[0] == '{"text": "broken json'


def test_csv_quoting_delimiter_and_label_set(tmp_path):
    (tmp_path / "a.csv").write_text('id;body;tag\n1;"semi; colon";x\n2;plain;y\n3;other;z\n4;"multi\nline";x\n', encoding="utf-8")
    kept, rejected = collect(tmp_path, labels=["x", "y"], path="a.csv", format="csv", delimiter=";", text_field="body",
                             label_field="tag", id_field="id")
    assert kept.column("id").to_pylist() == ["1", "2", "4"]
    assert kept.column("text").to_pylist() == ["semi; colon", "plain", "multi\nline"]
    assert rejected.column("reason").to_pylist() == ["label_not_in_label_set"]


def test_parquet_hf_disk_and_several_files(tmp_path):
    pq.write_table(pa.table({"text": ["p1", "p2"], "label": ["a", "b"]}), tmp_path / "x.parquet")
    datasets.Dataset.from_dict({"sentence": ["h1", "h2", "h3"], "y": [0, 1, 0]}).save_to_disk(str(tmp_path / "hf"))
    kept, _ = collect(tmp_path, path="x.parquet", format="parquet", label_field="label")
    assert kept.column("text").to_pylist() == ["p1", "p2"]
    kept, _ = collect(tmp_path, path="hf", format="hf_disk", text_field="sentence", label_field="y")
    assert kept.column("label").to_pylist() == ["0", "1", "0"]
    for i in range(3):
        (tmp_path / f"doc{i}.txt").write_text(f"document {i}\nsecond line", encoding="utf-8")
    kept, _ = collect(tmp_path, path="doc*.txt", format="text", unit="file")
    assert kept.column("text").to_pylist() == [f"document {i}\nsecond line" for i in range(3)]


def test_ids_are_stable_when_rows_are_added_or_reordered(tmp_path):
    (tmp_path / "a.txt").write_text("alpha\nbeta\nbeta\ngamma\n", encoding="utf-8")
    before, _ = collect(tmp_path, path="a.txt", format="text")
    (tmp_path / "a.txt").write_text("new first line\ngamma\nbeta\nalpha\nbeta\n", encoding="utf-8")
    after, _ = collect(tmp_path, path="a.txt", format="text")
    ids_before = dict(zip(before.column("id").to_pylist(), before.column("text").to_pylist()))
    ids_after = dict(zip(after.column("id").to_pylist(), after.column("text").to_pylist()))
    assert set(ids_before.items()) <= set(ids_after.items())


def test_batch_size_does_not_change_rows(tmp_path):
    src = dict(path=str(SAMPLES / "sms_spam" / "SMSSpamCollection"), format="tsv", quoting="none",
               text_field="message", label_field="output")
    a, _ = collect(tmp_path, batch_size=97, **src)
    b, _ = collect(tmp_path, batch_size=100_000, **src)
    assert a.equals(b)


def test_glob_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(UserError, match="matches no file"):
        collect(tmp_path, path="missing/*.jsonl", format="jsonl")


def test_sources_at_fsspec_urls_read_as_local_files(tmp_path):
    """A source may be an fsspec URL (s3://, gs://, ... where the package is installed); file:// takes the
    same code path without a network."""
    data = tmp_path / "remote"
    data.mkdir()
    pq.write_table(pa.table({"t": ["a parquet row", "another"], "y": ["x", "y"]}), data / "p.parquet")
    (data / "a.jsonl").write_text('{"t": "first", "y": "x"}\n{not json\n{"t": "third", "y": "y"}\n')
    (data / "b.jsonl").write_text('{"t": "second file", "y": "x"}\n')
    local, local_rejected = collect(tmp_path, path=str(data / "*.jsonl"), format="jsonl", text_field="t", label_field="y")
    url = f"file://{data}/*.jsonl"
    remote, remote_rejected = collect(tmp_path, path=url, format="jsonl", text_field="t", label_field="y")
    assert remote.column("text").to_pylist() == local.column("text").to_pylist() == ["first", "third", "second file"]
    assert remote.column("id").to_pylist() == local.column("id").to_pylist()  # ids do not depend on the path
    assert remote.column("source_file").to_pylist()[0] == f"file://{data}/a.jsonl"
    assert remote_rejected.column("reason").to_pylist() == local_rejected.column("reason").to_pylist() == ["invalid_json"]
    parquet, _ = collect(tmp_path, path=f"file://{data}/p.parquet", format="parquet", text_field="t", label_field="y")
    assert parquet.column("text").to_pylist() == ["a parquet row", "another"]

    stage = CollectStage(Config(sources=[SourceConfig(name="s", path=url, format="jsonl", text_field="t")]),
                         StageContext(dataset="t", config_dir=tmp_path, work_dir=tmp_path))
    digests = json.loads(stage.fingerprint_inputs())
    assert [d["path"] for d in digests] == [f"file://{data}/a.jsonl", f"file://{data}/b.jsonl"]
    assert digests[1]["bytes"] == len('{"t": "second file", "y": "x"}\n')

    with pytest.raises(UserError, match="matches no file"):
        collect(tmp_path, path=f"file://{data}/*.csv", format="csv", text_field="t")
    with pytest.raises(UserError, match=r"cannot read nosuchfs://bucket/x\.jsonl"):
        collect(tmp_path, path="nosuchfs://bucket/x.jsonl", format="jsonl", text_field="t")
    with pytest.raises(UserError, match="inputs_within allows only local files"):
        CollectStage(Config(sources=[SourceConfig(name="s", path=url, format="jsonl", text_field="t")], inputs_within="."),
                     StageContext(dataset="t", config_dir=tmp_path, work_dir=tmp_path))


def test_integer_labels_in_the_config_match_integer_labels_in_the_data(tmp_path):
    """`labels: [0, 1]` (YAML integers) is the label set "0", "1" — what collect writes for a source's integer
    labels — not a validation error (issue 16, item 9). Real SMS messages, labelled 0 / 1 in JSON."""
    from pipeline.config import load_config

    lines = (SAMPLES / "sms_spam" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()[:200]
    rows = [{"text": text, "label": int(label == "spam")} for label, text in (line.split("\t", 1) for line in lines)]
    (tmp_path / "sms.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("dataset: sms01\nlabels: [0, 1]\nsources:\n  - {name: sms, path: sms.jsonl, format: jsonl,"
                      " text_field: text, label_field: label, label_map: {1: 1}}\n", encoding="utf-8")
    loaded = load_config(config)
    assert loaded.labels == ["0", "1"]
    kept, rejected = collect(tmp_path, labels=loaded.labels, path=str(tmp_path / "sms.jsonl"), format="jsonl",
                             text_field="text", label_field="label")
    assert rejected.num_rows == 0
    assert sorted(set(kept.column("label").to_pylist())) == ["0", "1"]
    assert kept.column("label").to_pylist().count("1") == sum(r["label"] for r in rows)

    config.write_text("dataset: sms01\nlabels: [yes, no]\nsources:\n  - {name: sms, path: sms.jsonl, format: jsonl,"
                      " text_field: text, label_field: label}\n", encoding="utf-8")
    with pytest.raises(UserError, match="boolean by YAML.*quote it"):
        load_config(config)
