"""A source's own train / validation / test split kept (issue 16 item 6): `split_field` and `split_map` on a
source, on TREC (its 5,452 training and 500 test questions in one file with a `split` column, from
../shared/data) and on TREC questions written as JSONL with `dev` / empty / unknown split values.

Each test runs the real local executor on real Parquet / JSONL and reads the published version."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipeline.store import VersionStore

from .conftest import run_pipeline, sftpipe, write_config

TREC_LABELS = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


def published(data_dir, dataset, version):
    folder = VersionStore(data_dir).path(dataset, version)
    splits = {s: pq.read_table(folder / f"{s}.parquet").to_pandas() for s in ("train", "validation", "test")}
    return splits, pq.read_table(folder / "rejected.parquet").to_pandas()


def split_stats(result):
    return next(s for s in result.manifest["stages"] if s["name"] == "split")["stats"]


def trec_config(path, **source):
    return {"dataset": "trec-own", "labels": TREC_LABELS,
            "sources": [{"name": "trec", "path": str(path), "format": "parquet", "text_field": "text",
                         "label_field": "label", **source}],
            "clean": {"signals": []}, "split": {"ratios": {"train": 0.9, "validation": 0.1}, "seed": 1},
            # As the shipped configs/trec.yaml: TREC's labels are curated, the label model's flags only reported.
            "label_noise": {"action": "warn"}}


def test_trec_keeps_its_test_questions_and_splits_its_training_questions(shared_data, tmp_path):
    """TREC's 500 test questions are published in test and nowhere else, its training questions never in
    test (`split_map: {train: null}` sends them to `split.ratios`, here train 0.9 / validation 0.1); every
    source row is accounted for (a test question removed names its reason: the 11 also among the training
    questions are exact duplicates)."""
    source = pq.read_table(shared_data / "trec" / "data.parquet").to_pandas()
    config = write_config(tmp_path, trec_config(shared_data / "trec" / "data.parquet", split_field="split",
                                                split_map={"train": None}))
    result = run_pipeline(config, tmp_path / "data")
    splits, rejected = published(tmp_path / "data", "trec-own", result.version)
    origin = {name: source["split"].iloc[df["source_line"] - 1].tolist() for name, df in splits.items()}
    assert set(origin["test"]) == {"test"} and "test" not in origin["train"] + origin["validation"]
    assert splits["test"]["source_split"].eq("test").all()
    assert splits["train"]["source_split"].isna().all() and splits["validation"]["source_split"].isna().all()
    test_rows = int((source["split"] == "test").sum())
    removed = rejected[source["split"].iloc[rejected["source_line"] - 1].eq("test").to_numpy()]
    assert len(splits["test"]) + len(removed) == test_rows == 500
    assert set(removed["reason"]) <= {"exact_duplicate", "near_duplicate"} and len(removed) <= 11
    trained = len(splits["train"]) + len(splits["validation"])
    assert abs(len(splits["validation"]) / trained - 0.1) < 0.005
    assert sum(len(df) for df in splits.values()) + len(rejected) == len(source)
    stats = split_stats(result)
    assert stats["source_split"] == {"train": 0, "validation": 0, "test": len(splits["test"])}
    assert stats["moved_to_source_split"] == 0
    card = (VersionStore(tmp_path / "data").path("trec-own", result.version) / "README.md").read_text()
    assert f"Rows whose source names its own split are in that split (test {len(splits['test'])}; column" in card


def trec_jsonl(shared_data, path, values):
    """TREC questions as JSONL records with a `part` field cycling through `values` (None: no field)."""
    source = pq.read_table(shared_data / "trec" / "data.parquet").to_pandas().iloc[::8]
    with path.open("w", encoding="utf-8") as fh:
        for k, (text, label) in enumerate(zip(source["text"], source["label"])):
            record = {"question": text, "coarse": label}
            if values[k % len(values)] is not None:
                record["part"] = values[k % len(values)]
            fh.write(json.dumps(record) + "\n")
    return len(source)


def jsonl_config(path, **source):
    return {"dataset": "trec-parts", "labels": TREC_LABELS,
            "sources": [{"name": "q", "path": str(path), "format": "jsonl", "text_field": "question",
                         "label_field": "coarse", **source}],
            "clean": {"signals": []}, "dedupe": {"near": False}, "evaluate": {"enabled": False}}


def test_split_map_renames_values_and_rows_without_one_are_split_as_usual(shared_data, tmp_path):
    """`dev` → validation; `train` / `test` kept; an empty or missing value → the ratios; a value that names
    no split → rejected as `unknown_source_split` (nothing lost)."""
    n = trec_jsonl(shared_data, tmp_path / "q.jsonl", ["train", "dev", "test", "", None, "holdout", "train", "test"])
    config = write_config(tmp_path, jsonl_config(tmp_path / "q.jsonl", split_field="part", split_map={"dev": "validation"}))
    result = run_pipeline(config, tmp_path / "data")
    splits, rejected = published(tmp_path / "data", "trec-parts", result.version)
    records = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    part = {name: [records[i - 1].get("part") for i in df["source_line"]] for name, df in splits.items()}
    expected = {"train": "train", "validation": "dev", "test": "test"}
    for name, values in part.items():
        own = [v for v in values if v not in ("", None)]
        assert own and set(own) == {expected[name]}, name  # a row with its own split is in that split only
    unsplit = sum(v in ("", None) for values in part.values() for v in values)
    assert unsplit > 0 and all(sum(v in ("", None) for v in part[s]) > 0 for s in splits)  # dealt by the ratios
    unknown = rejected[rejected["reason"] == "unknown_source_split"]
    assert len(unknown) == sum(r.get("part") == "holdout" for r in records)
    assert json.loads(unknown["details"].iloc[0])["value"] == "holdout"
    assert sum(len(df) for df in splits.values()) + len(rejected) == n


def test_own_splits_are_stable_across_versions_and_a_row_moved_is_counted(shared_data, tmp_path):
    """v1 without split_field; v2 with it: rows move to their source's split and the move is counted; v3
    with rows added: every row keeps v2's split, new rows without a value are dealt by the ratios."""
    path = tmp_path / "q.jsonl"
    trec_jsonl(shared_data, path, ["train", "test", None, "dev"])
    cfg = jsonl_config(path)
    v1 = run_pipeline(write_config(tmp_path, cfg), tmp_path / "data")
    cfg["sources"][0].update(split_field="part", split_map={"dev": "validation"})
    v2 = run_pipeline(write_config(tmp_path, cfg), tmp_path / "data")
    one, _ = published(tmp_path / "data", "trec-parts", v1.version)
    two, _ = published(tmp_path / "data", "trec-parts", v2.version)
    before = {i: s for s, df in one.items() for i in df["id"]}
    own = {i: s for s, df in two.items() for i, o in zip(df["id"], df["source_split"]) if o is not None}
    moved = sum(before[i] != s for i, s in own.items())
    assert moved > 0 and split_stats(v2)["moved_to_source_split"] == moved
    unsplit_v2 = {i: s for s, df in two.items() for i, o in zip(df["id"], df["source_split"]) if o is None}
    assert all(before[i] == s for i, s in unsplit_v2.items())  # rows without a value keep their split
    with path.open("a", encoding="utf-8") as fh:
        for k in range(60):
            fh.write(json.dumps({"question": f"What is the name of new question number {k} about rivers ?",
                                 "coarse": "ENTY", **({"part": "test"} if k % 3 == 0 else {})}) + "\n")
    v3 = run_pipeline(write_config(tmp_path, cfg), tmp_path / "data")
    three, _ = published(tmp_path / "data", "trec-parts", v3.version)
    after = {i: s for s, df in three.items() for i in df["id"]}
    v2_rows = {i: s for s, df in two.items() for i in df["id"]}
    assert all(after[i] == s for i, s in v2_rows.items())
    assert split_stats(v3)["moved_to_source_split"] == 0
    new = {i: s for s, df in three.items() for i, t in zip(df["id"], df["text"]) if "new question number" in t}
    assert len(new) == 60 and {s for s in new.values()} == {"train", "validation", "test"}


@pytest.mark.parametrize("source, message", [
    ({"split_map": {"dev": "validation"}}, "split_map renames the values of split_field: set split_field too"),
    ({"split_field": "part", "split_map": {"dev": "dev"}}, "split_map: 'dev' is not a split"),
    ({"split_field": "section"}, "split_field 'section' is not a column"),
], ids=["map without field", "map to no split", "misspelt field"])
def test_split_config_errors_are_one_line(shared_data, tmp_path, source, message):
    trec_jsonl(shared_data, tmp_path / "q.jsonl", ["train", "test"])
    config = write_config(tmp_path, jsonl_config(tmp_path / "q.jsonl", **source))
    out = sftpipe("validate", str(config))
    assert out.returncode == 1, out.stdout + out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_alpaca_records_with_a_nested_split_field(tmp_path):
    """A generation source reads the split at a nested path (`info.part`); the column is on every row,
    null where a record has none, and absent from a dataset whose sources name no split field."""
    from pipeline.stage import StageContext
    from schemas.kinds import KINDS
    from stages.collect import CollectStage, Config, SourceConfig

    from .conftest import SAMPLES

    records = json.loads((SAMPLES / "alpaca_en" / "alpaca_en_demo.json").read_text())[:40]
    parts = ["train", "dev", None, "test"]
    for k, r in enumerate(records):
        if parts[k % 4] is not None:
            r["info"] = {"part": parts[k % 4]}
    path = tmp_path / "alpaca.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")

    def collect(**extra):
        source = SourceConfig(name="a", path=str(path), format="jsonl", record_format="alpaca", **extra)
        stage = CollectStage(Config(sources=[source]), StageContext(dataset="t", config_dir=tmp_path, work_dir=tmp_path,
                                                                    kind=KINDS["generation"]))
        return [o.kept for o in stage.run(None) if o.kept is not None]

    (batch,) = collect(split_field="info.part", split_map={"dev": "validation"})
    assert batch.column("source_split").to_pylist() == [{"dev": "validation"}.get(p, p) for p in parts] * 10
    assert batch.num_rows == 40 and batch.column("prompt").to_pylist()[0].startswith(records[0]["instruction"])
    (plain,) = collect()
    assert "source_split" not in plain.schema.names


def test_numeric_split_codes_are_mapped(tmp_path):
    """Split codes written as numbers (`{0: train, 1: test}` in YAML, integers in the records) are mapped."""
    from pipeline.config import load_config

    trec_jsonl_path = tmp_path / "q.jsonl"
    rows = [{"question": f"What is question {k} about ?", "coarse": "DESC", "part": k % 2} for k in range(6)]
    trec_jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "c.yaml"
    config.write_text("dataset: d\nlabels: [DESC]\nsources: [{name: q, path: q.jsonl, format: jsonl, text_field: question,"
                      " label_field: coarse, split_field: part, split_map: {0: train, 1: test}}]\n")
    from stages.collect.stage import _source_split

    (source,) = load_config(config).sources
    assert [_source_split(source, r)[1] for r in rows] == ["train", "test"] * 3
