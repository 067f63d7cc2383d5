"""Hostile and broken input: each case gives a one-line error naming the file and the problem, or rows
rejected with a reason — never a traceback, never a silently missing row. Plus property-based checks of
the accounting invariant over random text and random malformed records."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from pipeline.errors import UserError

from .conftest import REPO, run_pipeline, write_config

LINES = [json.dumps({"text": f"an ordinary message, number {i}, with a handful of words", "label": "a"}) for i in range(6)]
GOOD = ("\n".join(LINES) + "\n").encode()


def _junk(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


# (case, file name, bytes, source settings, expected: {"rejected": {reason: n}, "kept": n} or {"error": regex})
CASES = [
    ("invalid utf-8", "a.jsonl", GOOD + b'{"text": "caf\xe9 au lait"}\n', {}, {"kept": 6, "rejected": {"undecodable": 1}}),
    ("latin-1 declared", "a.jsonl", GOOD + '{"text": "I would like a café au lait, please"}\n'.encode("latin-1"),
     {"encoding": "latin-1"}, {"kept": 7}),  # English: "café au lait" alone is French, which clean's default drops
    ("utf-16 declared", "a.jsonl", ("\n".join(LINES) + "\n").encode("utf-16"), {"encoding": "utf-16"}, {"kept": 6}),
    ("utf-16 undeclared", "a.jsonl", ("\n".join(LINES) + "\n").encode("utf-16"), {}, {"error": r"a.jsonl is UTF-16.*encoding: utf-16"}),
    ("utf-8 BOM", "a.jsonl", b"\xef\xbb\xbf" + GOOD, {}, {"kept": 6}),
    ("CRLF", "a.jsonl", GOOD.replace(b"\n", b"\r\n"), {}, {"kept": 6}),
    ("NUL bytes", "a.jsonl", GOOD + b'{"text": "nul\x00 inside"}\n', {}, {"kept": 6, "rejected": {"nul_byte": 1}}),
    ("truncated last line", "a.jsonl", GOOD + b'{"text": "cut off in the mid', {}, {"kept": 6, "rejected": {"invalid_json": 1}}),
    ("JSON not an object", "a.jsonl", GOOD + b'["a", "list"]\n"a string"\n', {}, {"kept": 6, "rejected": {"json_not_an_object": 2}}),
    ("nested text", "a.jsonl", GOOD + b'{"text": {"inner": "x"}}\n{"text": ["x"]}\n', {}, {"kept": 6, "rejected": {"text_not_a_string": 2}}),
    ("numbers as text", "a.jsonl", GOOD + b'{"text": 12345}\n{"text": 3.5}\n', {}, {"kept": 8}),
    ("empty file", "a.jsonl", b"", {}, {"error": r"nothing to publish: 0 rows read"}),
    ("header-only CSV", "a.csv", b"text,label\n", {"format": "csv"}, {"error": r"nothing to publish: 0 rows read"}),
    ("20 MB single document", "big.txt", b"word " * 4_000_000, {"format": "text", "unit": "file", "label_field": None},
     {"error": r"nothing to publish: 1 rows read, none left — clean: n_chars_above_max \(1\)"}),
    ("binary junk", "a.jsonl", GOOD + _junk(1, 3000).replace(b"\n", b" ") + b"\n", {}, {"kept": 6, "rejected_any": True}),
    ("missing column", "a.csv", b"body,label\nhello there,a\n", {"format": "csv"}, {"error": r"text_field 'text' is not a column of .*a.csv \(columns: body, label\)"}),
    ("duplicate column names", "a.csv", b"text,text,label\nx,y,a\n", {"format": "csv"}, {"error": r"a.csv: duplicate column names: 'text'"}),
    ("mixed-type labels", "a.jsonl", GOOD + b'{"text": "label as a number here", "label": 1}\n{"text": "label as a bool here", "label": true}\n',
     {}, {"kept": 6, "rejected": {"label_not_in_label_set": 2}}),
    ("label outside the label set", "a.jsonl", GOOD + b'{"text": "unknown label row", "label": "zzz"}\n', {}, {"kept": 6, "rejected": {"label_not_in_label_set": 1}}),
]


@pytest.mark.parametrize("case, name, data, settings_, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(tmp_path, case, name, data, settings_, expected):
    (tmp_path / name).write_bytes(data)
    source = {"name": "src", "path": name, "format": "jsonl", "label_field": "label", **settings_}
    config = write_config(tmp_path, {"dataset": "hostile", "labels": ["a", "b"], "sources": [source],
                                     "clean": {"signals": []}, "evaluate": {"enabled": False}})
    if "error" in expected:
        with pytest.raises(UserError, match=expected["error"]):
            run_pipeline(config, tmp_path / "data")
        return
    result = run_pipeline(config, tmp_path / "data")
    vdir = tmp_path / "data" / "versions" / "hostile" / result.version
    kept = sum(pq.read_metadata(vdir / f"{s}.parquet").num_rows for s in schemas.SPLITS)
    rejected = pq.read_table(vdir / "rejected.parquet")
    assert kept == expected["kept"]
    reasons = {}
    for r in rejected.column("reason").to_pylist():
        reasons[r] = reasons.get(r, 0) + 1
    if "rejected" in expected:
        assert reasons == expected["rejected"]
    if expected.get("rejected_any"):
        assert rejected.num_rows >= 1
        assert all(line > 6 for line in rejected.column("source_line").to_pylist())
    assert result.manifest["rows_in"] == kept + rejected.num_rows


def test_glob_matching_nothing_and_broken_symlink(tmp_path):
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "gone.jsonl")
    for path in ("none/*.jsonl", "dangling.jsonl"):
        config = write_config(tmp_path, {"dataset": "h", "sources": [{"name": "s", "path": path, "format": "jsonl"}]})
        with pytest.raises(UserError, match=r"matches no file"):
            run_pipeline(config, tmp_path / "data")


def test_paths_escaping_the_project_when_forbidden(tmp_path):
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir(), outside.mkdir()
    (outside / "secret.jsonl").write_bytes(GOOD)
    (project / "link.jsonl").symlink_to(outside / "secret.jsonl")
    for path in ("../outside/secret.jsonl", "link.jsonl"):
        config = write_config(project, {"dataset": "h", "inputs_within": ".",
                                        "sources": [{"name": "s", "path": path, "format": "jsonl"}]})
        with pytest.raises(UserError, match=r"outside .*project \(inputs_within forbids it\)"):
            run_pipeline(config, tmp_path / "data")


def test_cli_reports_bad_input_in_one_line(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(("\n".join(LINES)).encode("utf-16"))
    config = write_config(tmp_path, {"dataset": "h", "sources": [{"name": "s", "path": "a.jsonl", "format": "jsonl"}]})
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(config), "--data-dir", str(tmp_path / "d")],
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "300"})
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "a.jsonl is UTF-16" in out.stderr and len(out.stderr.strip().splitlines()) == 1


# -- properties ---------------------------------------------------------------------------------------------

record = st.one_of(
    st.fixed_dictionaries({"text": st.text(max_size=80), "label": st.sampled_from(["a", "b", "c", None, 1])}),
    st.fixed_dictionaries({"text": st.one_of(st.integers(), st.none(), st.lists(st.integers(), max_size=2))}),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
raw_line = st.one_of(record.map(json.dumps), st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"").decode("latin-1")))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(raw_line, min_size=1, max_size=40), batch_size=st.integers(1, 50))
def test_every_row_is_accounted_for_on_random_input(tmp_path_factory, lines, batch_size):
    """Whatever the records, no stage raises, and every input row is in one split or rejected."""
    folder = tmp_path_factory.mktemp("prop")
    (folder / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    config = write_config(folder, {"dataset": "prop", "labels": ["a", "b", "c"],
                                   "sources": [{"name": "s", "path": "in.jsonl", "format": "jsonl", "label_field": "label"}],
                                   "clean": {"signals": []}, "evaluate": {"enabled": False}})
    try:
        result = run_pipeline(config, folder / "data", batch_size=batch_size)
    except UserError as exc:
        # Every row rejected, or no record has the text / label field at all: said in one line, not silent.
        assert "nothing to publish" in str(exc) or "is not a column" in str(exc)
        return
    vdir = folder / "data" / "versions" / "prop" / result.version
    ids = [i for s in schemas.SPLITS for i in pq.read_table(vdir / f"{s}.parquet").column("id").to_pylist()]
    rejected = pq.read_table(vdir / "rejected.parquet").column("id").to_pylist()
    non_blank = sum(1 for line in lines if line.strip())
    assert len(ids) + len(rejected) == non_blank == result.manifest["rows_in"]
    assert len(set(ids) | set(rejected)) == non_blank
