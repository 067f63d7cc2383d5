"""Hostile configs, names and machines: a YAML alias bomb, self-referencing anchors and deep nesting; user
mistakes in a config (an unknown encoding, a multi-character delimiter or quotechar, a 300-character
dataset name); dataset and version names that would escape the store; a version edited after publication;
a read-only data folder and a full disk (a real tmpfs of a few hundred kilobytes, mounted by the test as
root). Each is one line naming the key or the path — from `validate` too where a config can tell — and a
non-zero exit; nothing is published half-way.
"""
from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.errors import UserError
from pipeline.store import VersionStore

from .conftest import REPO, run_pipeline, sms_config, write_config

GIB = 1 << 30


def cli(*args, cwd=None, memory: int | None = None, timeout: float = 120):
    """`sftpipe ARGS` in a child process (optionally under an address-space limit, so that a bomb that
    gets through fails fast instead of taking the machine's memory)."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_AS, (memory, memory))) if memory else None
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env={**os.environ, "COLUMNS": "400"}, preexec_fn=limit, timeout=timeout)


def one_line_error(out, *needles: str) -> None:
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()  # progress bars first, where a run got that far
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and errors[0] == lines[-1] and errors[0].startswith("error:"), out.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def small_source(folder: Path) -> dict:
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": f"an ordinary message, number {i}", "label": "a"}) + "\n"
                                            for i in range(40)))
    return {"name": "s", "path": "a.jsonl", "format": "jsonl", "label_field": "label"}


# -- the config file itself -----------------------------------------------------------------------------------

BOMB = "\n".join(["dataset: bomb", "sources: [{name: s, path: a.jsonl, format: jsonl}]", "evaluate:",
                  "  expectations:", "    - expectation_type: expect_column_values_to_be_in_set",
                  "      kwargs: {column: text, value_set: *i}"])
LEVELS = "\n".join(['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'] +
                   [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")])


@pytest.mark.parametrize("case, text, message", [
    ("alias bomb", "x-anchors:\n" + "\n".join("  " + line for line in LEVELS.splitlines()) + "\n" + BOMB,
     "expands (aliases resolved) to over"),
    ("anchor containing itself", BOMB.replace("value_set: *i}", "value_set: &self [a, *self]}"), "contains an alias to itself"),
    ("nested 10,000 deep", BOMB.replace("value_set: *i}", "value_set: " + "[" * 10_000 + "]" * 10_000 + "}"),
     "nested too deeply"),
], ids=["alias bomb", "anchor containing itself", "nested 10,000 deep"])
def test_hostile_yaml_is_refused_in_one_line_by_validate_and_run(tmp_path, case, text, message):
    small_source(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(text)  # (the bomb's anchors sit under a key of their own: refused before any key is read)
    t0 = time.perf_counter()
    for command in ("validate", "run"):
        out = cli(command, str(config), "--data-dir", str(tmp_path / "data"), memory=2 * GIB, timeout=60)
        one_line_error(out, str(config), message)
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("change, key", [
    (lambda c: c["sources"][0].update(encoding="klingon"), "sources.0.encoding: Value error, unknown encoding 'klingon'"),
    (lambda c: c["sources"][0].update(format="csv", delimiter=";;"), "sources.0.delimiter"),
    (lambda c: c["sources"][0].update(format="csv", quotechar="''"), "sources.0.quotechar"),
    (lambda c: c.update(dataset="d" * 300), "dataset: String should have at most 100 characters"),
], ids=["unknown encoding", "two-character delimiter", "two-character quotechar", "300-character dataset name"])
def test_user_mistakes_in_a_config_name_the_key_from_validate_and_run(tmp_path, change, key):
    config = {"dataset": "mistakes", "sources": [small_source(tmp_path)]}
    change(config)
    path = write_config(tmp_path, config)
    for command in ("validate", "run"):
        one_line_error(cli(command, str(path), "--data-dir", str(tmp_path / "data")), key)


# -- names ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["versions", "show", "../../outside", "v1"], ["versions", "list", "../../outside"],
    ["versions", "diff", "../../outside", "v1", "v1"], ["versions", "verify", "../../outside"],
    ["report", "../../outside", "v1"], ["versions", "show", "real", "../../../outside/v1"],
], ids=" ".join)
def test_names_that_would_leave_the_store_are_refused(tmp_path, args):
    outside = tmp_path / "outside" / "v1"  # a manifest where `versions/../../outside/v1` points
    outside.mkdir(parents=True)
    (outside / "manifest.json").write_text(json.dumps({"dataset": "outside", "version": "v1", "splits": {}}))
    (tmp_path / "data" / "versions" / "real" / "v1").mkdir(parents=True)
    out = cli(*args, "--data-dir", str(tmp_path / "data"))
    one_line_error(out, "may hold only letters, digits")
    with pytest.raises(UserError, match="dataset name '../x'"):
        VersionStore(tmp_path / "data").manifest("../x", "v1")


# -- a version edited after it was published ------------------------------------------------------------------


def test_a_version_edited_after_publication_is_noticed(tmp_path):
    config = write_config(tmp_path, {"dataset": "edited", "labels": ["a", "b"], "sources": [small_source(tmp_path)],
                                     "clean": {"signals": []}, "evaluate": {"enabled": False},
                                     "split": {"ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}})
    data = tmp_path / "data"
    assert run_pipeline(config, data).version == "v1"
    vdir = data / "versions" / "edited" / "v1"
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert {"train.parquet", "rejected.parquet", "README.md"} <= set(manifest["files"])
    ok = cli("versions", "verify", "edited", "--data-dir", str(data))
    assert ok.returncode == 0 and "ok edited v1" in ok.stdout
    # Root (or the owner) ignores the read-only mode: relabel one training row in place.
    train = pq.read_table(vdir / "train.parquet")
    flipped = pc.if_else(pc.equal(pa.array(range(train.num_rows)), 0), "b", train.column("label"))
    os.chmod(vdir / "train.parquet", stat.S_IRUSR | stat.S_IWUSR)
    pq.write_table(train.set_column(train.schema.get_field_index("label"), "label", flipped), vdir / "train.parquet")
    out = cli("versions", "verify", "edited", "v1", "--data-dir", str(data))
    assert out.returncode == 1 and "train.parquet: changed" in out.stdout and "content fingerprint" in out.stdout
    assert "1 of 1 version(s) of 'edited' differ from what was published: v1" in out.stderr
    # Not used as a parent, nor called identical, nor trained on.
    with pytest.raises(UserError, match=r"edited v1 was modified after it was published, so it cannot be used as the "
                                        r"parent of a new version: train.parquet: changed"):
        run_pipeline(config, data)
    from train.data import open_version

    with pytest.raises(UserError, match=r"edited v1 was modified after it was published.*trained on"):
        open_version(data, "edited", "v1")
    assert VersionStore(data).versions("edited") == ["v1"]


# -- the machine: a read-only data folder, a full disk ---------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (needs root: the suite runs as root in CI); `mount(options)` (re)mounts it."""
    point = tmp_path / "mnt"
    point.mkdir()
    mounted = []

    def mount(options: str) -> Path:
        args = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)]
        if mounted:
            args = ["mount", "-o", f"remount,{options}", str(point)]
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(True)
        return point

    yield mount
    if mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_read_only_data_folder_is_one_line_from_validate_and_run(tmp_path, tmpfs):
    config = write_config(tmp_path, {"dataset": "ro", "sources": [small_source(tmp_path)]})
    point = tmpfs("size=1m")
    (point / "data").mkdir()
    tmpfs("ro,size=1m")
    for command in ("validate", "run"):
        one_line_error(cli(command, str(config), "--data-dir", str(point / "data")),
                       str(point / "data"), "read-only file system")


def test_a_full_disk_is_one_line_and_the_next_run_resumes(tmp_path, tmpfs):
    config = sms_config(dataset="full")
    config["evaluate"] = {"enabled": False}
    path = write_config(tmp_path, config)
    point = tmpfs("size=700k")
    out = cli("run", str(path), "--data-dir", str(point / "data"))
    one_line_error(out, "No space left on device", str(point / "data"))
    assert not list((point / "data" / "versions" / "full").glob("v*"))
    assert not list((point / "data" / "runs").rglob("*.tmp-*"))  # what the failed run half-wrote is freed
    tmpfs("size=64m")
    done = cli("run", str(path), "--data-dir", str(point / "data"))
    assert done.returncode == 0 and "published full v1" in done.stdout, done.stderr[-2000:]
