"""The quality gate on instruction and chat versions (issue 13): Great Expectations suites per kind —
non-null payload fields, per-field length bounds, role order, the share of refusals — and leakage on the
dedupe key, each shown failing on a real version made bad on purpose."""
from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.executor import GateFailed
from stages.evaluate import Config, evaluate_candidate

from .conftest import REPO, run_pipeline, write_config


def shipped(name: str, **overrides) -> dict:
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    for source in config["sources"]:
        source["path"] = str((REPO / "configs" / source["path"]).resolve())
    config.update(overrides)
    return config


def writable_copy(version: Path, to: Path) -> Path:
    shutil.copytree(version, to)
    for p in [to, *to.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    return to


def test_refusal_share_blocks_when_refusals_are_kept(tmp_path):
    """glaive_toolcall keeps refusals on purpose and lifts the bound; with the default bound (2 %) its ~9 %
    of conversations ending in a refusal stop publication."""
    config = shipped("glaive_toolcall")
    del config["evaluate"]
    with pytest.raises(GateFailed) as failed:
        run_pipeline(write_config(tmp_path, config), tmp_path / "data")
    summary = failed.value.result.manifest["evaluation"]
    refusal = [f for f in summary["failures"] if f["check"] == "refusals"]
    assert refusal and refusal[0]["blocking"] and 0.05 < refusal[0]["observed"] < 0.15
    assert summary["refusals"]["refusal_phrases"]  # which phrases, for the report


def test_leakage_is_checked_on_the_prompt_key(tmp_path):
    """Dedupe off, every instruction written twice with different answers: copies land in train and test,
    and the leakage check — on the prompt, as dedupe would compare — finds them."""
    records = json.loads((REPO / "data" / "samples" / "alpaca_en" / "alpaca_en_demo.json").read_text())[:150]
    twice = records + [{**r, "output": r["output"] + " (second answer)"} for r in records]
    (tmp_path / "a.json").write_text(json.dumps(twice))
    config = {"dataset": "leaky", "kind": "generation",
              "sources": [{"name": "a", "path": "a.json", "format": "json", "record_format": "alpaca"}],
              "dedupe": {"exact": False, "near": False}, "evaluate": {"non_blocking": ["leakage"]}}
    result = run_pipeline(write_config(tmp_path, config), tmp_path / "data")
    leak = result.manifest["evaluation"]["leakage"]
    assert leak["key"] == "prompt" and leak["leaked"]["test"] > 0 and leak["leaked"]["validation"] > 0
    pairs = pq.read_table(tmp_path / "data" / "versions" / "leaky" / result.version / "quality" / "leakage.parquet")
    assert all(a == b for a, b in zip(pairs.column("text").to_pylist(), pairs.column("train_text").to_pylist()))
    assert result.manifest["gates"] == "passed"  # a warning here, as configured


def test_role_order_not_null_and_field_length_expectations(tmp_path):
    config = shipped("glaive_toolcall")
    result = run_pipeline(write_config(tmp_path, config), tmp_path / "data")
    version = tmp_path / "data" / "versions" / "glaive-toolcall" / result.version
    bad = writable_copy(version, tmp_path / "bad")
    test = pq.read_table(bad / "test.parquet")
    rows = test.to_pylist()
    rows[0]["messages"] = [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "hi"}]
    rows[1]["messages"][-1]["content"] = "x" * 300
    pq.write_table(pa.Table.from_pylist(rows, schema=test.schema), bad / "test.parquet")
    dataset = SimpleNamespace(dataset="glaive-toolcall", labels=None, kind="chat")
    evaluation = evaluate_candidate(bad, Config(field_length={"completion": {"min": 1, "max": 200}}), dataset)
    failures = {(f.check, f.split) for f in evaluation.failures}
    assert ("role_order", "test") in failures and ("field_length", "test") in failures
    assert not evaluation.passed
    role = next(f for f in evaluation.failures if f.check == "role_order")
    assert role.observed == 1 and "assistant_before_user" in role.details
    # The published version itself passes every expectation, and its suites name the kind's columns.
    suites = json.loads((version / "quality" / "suites.json").read_text())
    columns = {e["kwargs"].get("column") for e in suites["test"]["expectations"]}
    assert {"messages", "role_order_problem", "completion_text", "prompt_text"} <= columns and "text" not in columns
