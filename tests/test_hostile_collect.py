"""Hostile input at collect, part two: rows that used to kill the whole run (lone surrogates, undecodable
label or id bytes, 200,000-deep nesting), Parquet `binary` text, NUL bytes by one rule in every format, a
quote never closed, compressed inputs, duplicate ids, an input that changes while it is read, and an HF
dataset folder whose Arrow file is a symlink out of `inputs_within`.

Each bad record is one rejected row with its reason; the rest of the file publishes.
"""
from __future__ import annotations

import bz2
import gzip
import json
import lzma

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipeline.errors import UserError

from .conftest import run_pipeline, write_config

LINES = [json.dumps({"id": f"r{i}", "text": f"an ordinary message, number {i}, with a handful of words", "label": "a"})
         for i in range(6)]
GOOD = ("\n".join(LINES) + "\n").encode()
CSV = b"id,text,label\n" + b"".join(f"r{i},an ordinary message number {i} with words,a\n".encode() for i in range(6))


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


def publish(tmp_path, name: str, data: bytes, **settings):
    """Write `data` as `name`, run the real pipeline on it (gate off) and return (kept ids, rejected rows)."""
    (tmp_path / name).write_bytes(data)
    source = {"name": "src", "path": name, "format": "jsonl", "label_field": "label", **settings}
    config = write_config(tmp_path, {"dataset": "hostile", "labels": ["a", "b"], "sources": [source],
                                     "clean": {"signals": []}, "evaluate": {"enabled": False}})
    result = run_pipeline(config, tmp_path / "data")
    vdir = tmp_path / "data" / "versions" / "hostile" / result.version
    kept = pa.concat_tables([pq.read_table(vdir / f"{s}.parquet", columns=["id", "text", "label"]) for s in schemas.SPLITS])
    rejected = pq.read_table(vdir / "rejected.parquet").to_pylist()
    assert result.manifest["rows_in"] == kept.num_rows + len(rejected)
    return kept, rejected


# (case, file name, bytes, source settings, rows kept, {reason: (rows, details that must be in each)})
CASES = [
    ("lone surrogate in JSON text", "a.jsonl", GOOD + b'{"text": "broken \\ud800 here", "label": "a"}\n', {}, 6,
     {"lone_surrogate": (1, {"field": "text"})}),
    ("surrogate in a label", "a.jsonl", GOOD + b'{"text": "fine text here", "label": "\\ud83d"}\n', {}, 6,
     {"lone_surrogate": (1, {"field": "label"})}),
    ("surrogate in an id", "a.jsonl", GOOD + b'{"id": "\\udc00x", "text": "fine text here", "label": "a"}\n',
     {"id_field": "id"}, 6, {"lone_surrogate": (1, {"field": "id"})}),
    ("surrogate in meta", "a.jsonl", GOOD + b'{"text": "fine text here", "label": "a", "m": ["\\ud800"]}\n',
     {"meta_fields": ["m"]}, 6, {"lone_surrogate": (1, {"field": "meta"})}),
    ("undecodable byte in the CSV label and id columns", "a.csv", CSV + b"r6,fine text here,\xff\n\xfe,more fine text,a\n",
     {"format": "csv", "id_field": "id"}, 6, {"undecodable": (2, {})}),
    ("JSONL row nested 200,000 deep", "a.jsonl", GOOD + b'{"text": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n", {}, 6,
     {"too_deeply_nested": (1, {})}),
    ("integer too long to convert", "a.jsonl", GOOD + b'{"text": "x y z", "label": ' + b"9" * 5000 + b"}\n", {}, 6,
     {"invalid_json": (1, {})}),
    ("NUL in a CSV value, as in JSONL", "a.csv", CSV + b"r6,nul\x00 inside,a\n", {"format": "csv"}, 6,
     {"nul_byte": (1, {"field": "text"})}),
    ("NUL in a JSONL value", "a.jsonl", GOOD + b'{"text": "nul\x00 inside", "label": "a"}\n', {}, 6,
     {"nul_byte": (1, {"field": "text"})}),
    ("duplicate ids, 1 and \"1\"", "a.jsonl",
     GOOD + b'{"id": 1, "text": "first one", "label": "a"}\n{"id": "1", "text": "second one", "label": "b"}\n'
     b'{"id": "r0", "text": "a third", "label": "a"}\n', {"id_field": "id"}, 7,
     {"duplicate_id": (2, {})}),
    ("gzip", "a.jsonl.gz", gzip.compress(GOOD), {}, 6, {}),
    ("gzip without the extension", "a.jsonl", gzip.compress(GOOD), {}, 6, {}),
    ("zstd", "a.jsonl.zst", _zstd(GOOD), {}, 6, {}),
    ("bzip2", "a.jsonl.bz2", bz2.compress(GOOD), {}, 6, {}),
    ("xz", "a.jsonl.xz", lzma.compress(GOOD), {}, 6, {}),
    ("gzip CSV", "a.csv.gz", gzip.compress(CSV), {"format": "csv"}, 6, {}),
    # bzip2's signature begins with printable "BZh": plain text that starts so is still text
    ("text starting with bzip2's BZh", "a.jsonl", b"BZh9 is not json\n" + GOOD, {}, 6, {"invalid_json": (1, {})}),
]


@pytest.mark.parametrize("case, name, data, settings, kept, reasons", CASES, ids=[c[0] for c in CASES])
def test_a_bad_record_is_one_rejected_row(tmp_path, case, name, data, settings, kept, reasons):
    table, rejected = publish(tmp_path, name, data, **settings)
    assert table.num_rows == kept
    assert all("b'" not in t for t in table.column("text").to_pylist())
    found: dict[str, int] = {}
    for row in rejected:
        found[row["reason"]] = found.get(row["reason"], 0) + 1
        expected = reasons[row["reason"]][1]
        details = json.loads(row["details"] or "{}")
        assert expected.items() <= details.items(), (row["reason"], details)
    assert found == {reason: n for reason, (n, _) in reasons.items()}


def test_duplicate_ids_keep_the_first_and_name_it(tmp_path):
    data = GOOD + b'{"id": "r2", "text": "another text under a taken id", "label": "b"}\n'
    table, rejected = publish(tmp_path, "a.jsonl", data, id_field="id")
    assert sorted(table.column("id").to_pylist()) == [f"r{i}" for i in range(6)]
    assert "under a taken id" not in " ".join(table.column("text").to_pylist())
    (dup,) = rejected
    assert dup["reason"] == "duplicate_id" and json.loads(dup["details"]) == {"id": "r2", "first_read_at": "a.jsonl:3"}


def test_parquet_binary_text_is_decoded_with_the_source_encoding(tmp_path):
    texts = ["yankee river runs by the mill", "café au lait and a croissant", "plain words here today"]
    encoded = [t.encode("latin-1") for t in texts] + [b"\x81\x8d undecodable in cp1252"]
    pq.write_table(pa.table({"text": pa.array(encoded, pa.binary()), "label": pa.array([b"a"] * 4, pa.binary())}),
                   tmp_path / "a.parquet")
    table, rejected = publish(tmp_path, "a.parquet", (tmp_path / "a.parquet").read_bytes(), format="parquet",
                              encoding="cp1252")
    assert sorted(table.column("text").to_pylist()) == sorted(texts)
    assert set(table.column("label").to_pylist()) == {"a"}
    assert [(r["reason"], json.loads(r["details"])["field"]) for r in rejected] == [("undecodable", "text")]


def test_an_unclosed_quote_names_the_line_where_it_opened(tmp_path):
    data = CSV + b'r6,"this quote is never closed,a\n' + b"".join(f"r{i},more text {i},a\n".encode() for i in range(7, 12))
    table, rejected = publish(tmp_path, "a.csv", data, format="csv")
    assert table.num_rows == 6
    (row,) = rejected
    assert row["reason"] == "unclosed_quote" and row["source_line"] == 8
    assert json.loads(row["details"]) == {"opened_at_line": 8, "lines_swallowed": 6}


def test_archives_and_compressed_parquet_are_named(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    source = {"name": "s", "path": "a.zip", "format": "jsonl"}
    with pytest.raises(UserError, match=r"a.zip is a ZIP archive: extract the files"):
        run_pipeline(write_config(tmp_path, {"dataset": "h", "sources": [source]}), tmp_path / "data")
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "p.parquet")
    (tmp_path / "p.parquet.gz").write_bytes(gzip.compress((tmp_path / "p.parquet").read_bytes()))
    source = {"name": "s", "path": "p.parquet.gz", "format": "parquet"}
    with pytest.raises(UserError, match=r"p.parquet.gz is gzip-compressed: Parquet files compress their own columns"):
        run_pipeline(write_config(tmp_path, {"dataset": "h", "sources": [source]}), tmp_path / "data")


def test_a_file_appended_to_while_it_is_read_poisons_no_cache(tmp_path):
    """Rows appended during the read used to be published under the hash of the file before; once the file
    was restored, that cached output (with the extra rows) was reused and the run said "identical"."""
    original = b"".join(json.dumps({"text": f"message number {i} with some words", "label": "a"}).encode() + b"\n"
                        for i in range(3000))
    extra = b"".join(json.dumps({"text": f"appended row {i} during the read", "label": "b"}).encode() + b"\n"
                     for i in range(50))
    path = tmp_path / "a.jsonl"
    path.write_bytes(original)
    config = write_config(tmp_path, {"dataset": "moving", "labels": ["a", "b"],
                                     "sources": [{"name": "s", "path": "a.jsonl", "format": "jsonl", "label_field": "label"}],
                                     "clean": {"signals": []}, "evaluate": {"enabled": False}})

    def append_once(stage, total):
        def advance(n):
            if stage == "collect" and not appended:
                appended.append(True)
                with open(path, "ab") as fh:  # the reader has read the first batch: the file grows under it
                    fh.write(extra)
        return advance

    appended: list[bool] = []
    with pytest.raises(UserError, match=r"a.jsonl \(source s\) changed while it was read.*nothing was kept"):
        run_pipeline(config, tmp_path / "data", batch_size=100, progress=append_once)
    assert appended
    path.write_bytes(original)  # restored
    result = run_pipeline(config, tmp_path / "data", batch_size=100)
    assert result.published and result.manifest["rows_in"] == 3000
    assert not result.stages[0].cached
    path.write_bytes(original + extra)  # the appended rows, now for real: read and published
    result = run_pipeline(config, tmp_path / "data", batch_size=100)
    assert result.published and result.manifest["rows_in"] == 3050


def test_hf_disk_arrow_file_symlinked_out_of_inputs_within_is_refused(tmp_path):
    import datasets

    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir(), outside.mkdir()
    folder = project / "ds"
    datasets.Dataset.from_dict({"text": ["a secret row from outside"] * 3}).save_to_disk(str(folder))
    (arrow,) = folder.glob("*.arrow")
    arrow.rename(outside / arrow.name)
    arrow.symlink_to(outside / arrow.name)
    source = {"name": "s", "path": "ds", "format": "hf_disk"}
    config = write_config(project, {"dataset": "h", "inputs_within": ".", "sources": [source], "evaluate": {"enabled": False}})
    with pytest.raises(UserError, match=rf"{arrow.name} resolves to .*outside.*\(inputs_within forbids it\)"):
        run_pipeline(config, tmp_path / "data")
    # The same file named through `../` in the dataset's state, without any symlink.
    arrow.unlink()
    state = json.loads((folder / "state.json").read_text())
    state["_data_files"] = [{"filename": f"../../outside/{arrow.name}"}]
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(UserError, match=r"outside .*\(inputs_within forbids it\)"):
        run_pipeline(config, tmp_path / "data")
