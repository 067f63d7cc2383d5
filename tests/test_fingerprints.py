"""Fingerprints that tell the truth.

Code: a stage's code fingerprint covers its own module and what it imports in the project, so editing the
CLI (a help string) recomputes nothing, and editing a signal recomputes clean — checked on a copy of the
code, through the real CLI. Content: every column of every split and of rejected.parquet, nested types
included, independent of row order and batching; a version differing only in `meta` is a new version.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipeline.fingerprint import code_fingerprint, content_fingerprint
from pipeline.imports import closure

from .conftest import REPO, run_pipeline, sms_config, write_config

STAGE_MODULES = ["stages.collect.stage", "stages.clean", "stages.decontaminate", "stages.dedupe", "stages.annotate.stage",
                 "stages.split"]


@pytest.mark.parametrize("stage", STAGE_MODULES)
def test_a_stage_fingerprint_covers_its_code_and_not_the_cli_report_or_other_stages(stage):
    modules = closure(stage)
    assert stage in modules and "pipeline.stage" in modules
    assert not [m for m in modules if m.startswith("pipeline.cli") or m.startswith("stages.evaluate")
                or m.startswith("train")]
    others = [s for s in STAGE_MODULES if s != stage]
    assert not [m for m in modules if any(m.startswith(o.rsplit(".stage", 1)[0]) for o in others)]


def test_the_near_duplicate_code_is_in_dedupe_and_the_gate_not_in_clean():
    assert "pipeline.minhash" in closure("stages.dedupe") and "pipeline.minhash" in closure("stages.evaluate.gate")
    assert "pipeline.minhash" not in closure("stages.clean")
    assert "stages.evaluate.report" in closure("stages.evaluate.gate")


def test_the_eval_set_readers_and_engines_are_in_decontaminate_and_the_gate():
    """Editing how sources are read (or the decontamination engine) recomputes decontaminate, as it does
    collect; the gate re-checks with the same code."""
    for module in ("pipeline.sources.readers", "pipeline.sources.records", "pipeline.decontamination",
                   "pipeline.decontamination_near"):
        assert module in closure("stages.decontaminate") and module in closure("stages.evaluate.gate")
    assert "pipeline.sources.readers" in closure("stages.collect.stage")
    assert "pipeline.decontamination" not in closure("stages.collect.stage")


# -- through the real CLI, on a copy of the code -------------------------------------------------------------


def copy_of_the_code(folder: Path) -> Path:
    for package in ("pipeline", "stages", "schemas", "train"):
        shutil.copytree(REPO / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def sftpipe(code: Path, *args: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(code), "COLUMNS": "250"}
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, env=env,
                         cwd=cwd, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_editing_the_cli_recomputes_nothing_and_editing_a_signal_recomputes_clean(tmp_path):
    code = copy_of_the_code(tmp_path / "code")
    config = write_config(tmp_path, sms_config(evaluate={"enabled": False}))
    run = ("run", str(config), "--data-dir", str(tmp_path / "data"), "--workers", "1")
    first = sftpipe(code, *run, cwd=tmp_path)
    assert "published sms-spam v1" in first

    # A help string of the CLI: every stage's code is unchanged, so its output is reused; nothing new.
    edit(code / "pipeline" / "cli" / "run.py", 'help="rows per Arrow record batch"', 'help="rows per Arrow batch"')
    second = sftpipe(code, *run, cwd=tmp_path)
    for stage in ("collect", "clean", "dedupe"):
        assert f"{stage}: unchanged since an earlier run, reusing" in second, second
    assert "nothing new: the output is identical to sms-spam v1" in second

    # The code of a signal: clean and what follows it are recomputed, collect is not.
    edit(code / "stages" / "clean" / "__init__.py", '    return {"n_chars": pc.utf8_length(texts).cast(pa.float64())}',
         '    # counted in code points\n    return {"n_chars": pc.utf8_length(texts).cast(pa.float64())}')
    third = sftpipe(code, *run, cwd=tmp_path)
    assert "collect: unchanged since an earlier run" in third
    assert "clean: unchanged" not in third and "dedupe: unchanged" not in third
    assert "nothing new: the output is identical to sms-spam v1" in third  # same rows, so the same version
    stage_folders = {p.name.split("-")[1] for p in (tmp_path / "data" / "runs" / "sms-spam" / "stages").iterdir()}
    assert stage_folders == {"collect", "clean", "label_noise", "dedupe", "split"}
    assert len(list((tmp_path / "data" / "runs" / "sms-spam" / "stages").glob("01-clean-*"))) == 2


# -- content ---------------------------------------------------------------------------------------------


MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def version_folder(folder: Path, rows: list[dict], schema: pa.Schema, row_group: int = 2) -> Path:
    """A folder holding every split (all rows in train) and an empty rejected.parquet."""
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "train.parquet", row_group_size=row_group)
    for s in ("validation", "test"):
        pq.write_table(schema.empty_table(), folder / f"{s}.parquet")
    pq.write_table(schemas.REJECTED.empty_table(), folder / "rejected.parquet")
    return folder


def test_content_fingerprint_covers_nested_columns_and_ignores_row_order(tmp_path):
    schema = pa.schema([("id", pa.string()), ("messages", MESSAGES), ("meta", pa.string()), ("score", pa.float64())])
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"question {i}"},
                                          {"role": "assistant", "content": f"answer {i}"}],
             "meta": json.dumps({"k": i}), "score": i / 3} for i in range(7)]
    names = ("train", "validation", "test", "rejected")
    base = content_fingerprint(version_folder(tmp_path / "a", rows, schema), names)
    shuffled = rows[3:] + rows[:3]
    assert content_fingerprint(version_folder(tmp_path / "b", shuffled, schema, row_group=3), names) == base
    # Any value of any column changes it: inside a nested list, the order of turns, meta, a score.
    changes = {
        "content": lambda r: r["messages"][1].update(content="another answer"),
        "turn order": lambda r: r.update(messages=r["messages"][::-1]),
        "meta": lambda r: r.update(meta=json.dumps({"k": -1})),
        "score": lambda r: r.update(score=None),
    }
    for name, change in changes.items():
        edited = json.loads(json.dumps(rows))
        change(edited[4])
        assert content_fingerprint(version_folder(tmp_path / name, edited, schema), names) != base, name


def test_a_version_differing_only_in_meta_is_published_as_new(tmp_path):
    rows = [{"text": f"sentence number {i} about the topic {i % 5}, long enough to stay", "label": "a" if i % 2 else "b",
             "bucket": i % 3, "origin": "web"} for i in range(120)]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    base = {"dataset": "meta", "labels": ["a", "b"],
            "sources": [{"name": "s", "path": "in.jsonl", "format": "jsonl", "label_field": "label",
                         "meta_fields": ["bucket"]}],
            "clean": {"signals": []}, "dedupe": {"near": False}, "evaluate": {"enabled": False}}
    config = write_config(tmp_path, base)
    v1 = run_pipeline(config, tmp_path / "data")
    assert v1.published and v1.version == "v1"
    # The same config, a source whose `bucket` changed for one row: ids, texts, labels and splits are the
    # same; the published `meta` is not, so this is a new version.
    rows[7]["bucket"] = 99
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    v2 = run_pipeline(config, tmp_path / "data")
    assert v2.published and v2.version == "v2"
    assert v2.manifest["content_fingerprint"] != v1.manifest["content_fingerprint"]
    assert v2.manifest["config_hash"] == v1.manifest["config_hash"]
    # A new meta_fields entry: a new version, and its content differs too (not only its config).
    base["sources"][0]["meta_fields"] = ["bucket", "origin"]
    v3 = run_pipeline(write_config(tmp_path, base), tmp_path / "data")
    assert v3.published and v3.version == "v3"
    assert v3.manifest["content_fingerprint"] != v2.manifest["content_fingerprint"]
    train = pq.read_table(tmp_path / "data" / "versions" / "meta" / "v3" / "train.parquet")
    assert all(set(json.loads(m)) == {"bucket", "origin"} for m in train.column("meta").to_pylist())
    # And the same inputs and config again: identical, nothing published.
    again = run_pipeline(write_config(tmp_path, base), tmp_path / "data")
    assert not again.published and again.version == "v3"


def test_code_fingerprint_is_the_version_and_a_hash():
    fp = code_fingerprint("stages.split")
    assert fp.startswith("0.1.0+") and fp == code_fingerprint("stages.split")
    assert code_fingerprint("stages.split") != code_fingerprint("stages.dedupe")
