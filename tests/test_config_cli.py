"""Config validation errors name the key / file / columns; the CLI prints one line and exits non-zero."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.config import load_config
from pipeline.errors import UserError

from .conftest import REPO, sms_config, write_config

SFTPIPE = [sys.executable, "-m", "pipeline.cli"]


def cli(*args, cwd=None):
    return subprocess.run([*SFTPIPE, *args], capture_output=True, text=True, cwd=cwd or REPO,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(colour="red"), r"colour: unknown key"),
    (lambda c: c["split"].update(ratios={"train": 0.5, "test": 0.2}), r"ratios must be non-negative and sum to 1"),
    (lambda c: c["dedupe"].update(threshold="high"), r"dedupe.threshold: .*got 'high'"),
    (lambda c: c["sources"][0].update(format="xml"), r"sources.0.format"),
    (lambda c: c.pop("sources"), r"sources: required key missing"),
    (lambda c: c["clean"].update(filters={"n_chars": {"minimum": 3}}), r"clean.filters.n_chars.minimum: unknown key"),
])
def test_bad_config_names_the_key(tmp_path, change, message):
    config = sms_config()
    change(config)
    with pytest.raises(UserError, match=message):
        load_config(write_config(tmp_path, config))


def test_missing_file_and_unknown_field_name_the_file_and_columns(tmp_path):
    config = sms_config()
    config["sources"][0]["path"] = "nowhere/*.tsv"
    with pytest.raises(UserError, match=r"sources\[0\] \(sms\): path 'nowhere/\*.tsv' matches no file"):
        load_config(write_config(tmp_path, config))
    config = sms_config()
    config["sources"][0]["text_field"] = "body"
    with pytest.raises(UserError, match=r"text_field 'body' is not a column of .*SMSSpamCollection \(columns: output, message\)"):
        load_config(write_config(tmp_path, config))


def test_cli_validate_and_errors_are_one_line(tmp_path):
    ok = cli("validate", "configs/sms_spam.yaml")
    assert ok.returncode == 0 and "ok" in ok.stdout
    config = sms_config()
    config["sources"][0]["label_field"] = "category"
    path = write_config(tmp_path, config)
    bad = cli("validate", str(path))
    assert bad.returncode == 1
    assert "label_field 'category' is not a column" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) <= 3  # one line, maybe wrapped
    debug = cli("--debug", "validate", str(path))
    assert "Traceback" in debug.stderr


def test_cli_run_versions_and_diff(tmp_path):
    path = write_config(tmp_path, sms_config())
    run = cli("run", str(path), "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "published sms-spam v1" in run.stdout and "exact_duplicate" in run.stdout
    again = cli("run", str(path), "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert "identical to sms-spam v1" in again.stdout
    listing = cli("versions", "list", "sms-spam", "--data-dir", str(tmp_path / "data"))
    assert listing.returncode == 0 and "v1" in listing.stdout
    show = cli("versions", "show", "sms-spam", "latest", "--data-dir", str(tmp_path / "data"))
    assert show.returncode == 0 and "dedupe" in show.stdout
    diff = cli("versions", "diff", "sms-spam", "v1", "v1", "--data-dir", str(tmp_path / "data"))
    assert diff.returncode == 0 and "the same version" in diff.stdout
    missing = cli("versions", "show", "sms-spam", "v9", "--data-dir", str(tmp_path / "data"))
    assert missing.returncode == 1 and "has no version 'v9' (versions: v1)" in missing.stderr


def test_help_teaches():
    out = cli("run", "--help")
    assert out.returncode == 0
    assert "--from" in out.stdout and "rejected.parquet" in out.stdout


def test_error_text_with_markup_brackets_is_printed_as_is(tmp_path):
    """A message holding rich markup ("[/b]") from a file name or a server is shown, not parsed."""
    config = sms_config()
    config["sources"][0]["path"] = "odd [/b] name/*.tsv"
    out = cli("validate", str(write_config(tmp_path, config)))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "odd [/b] name/*.tsv" in out.stderr
