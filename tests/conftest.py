"""Shared fixtures: real sample files, configs written to tmp folders, runs of the real executor, and the
one in-memory stage input.

Importing `pipeline.cli.project` installs the project (stages, gate, train section), as the CLI does:
`pipeline.config.load_config` reads configs with it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

import pipeline.cli.project  # noqa: F401 (the composition root: installs the project)

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "samples"


def _shared_data() -> Path:
    """Real labelled sets written outside this project: $SFTPIPE_SHARED_DATA, else the first `shared/data`
    found beside the checkout or above it (CI: ../shared/data; a worktree under wt/: ../../shared/data)."""
    if os.environ.get("SFTPIPE_SHARED_DATA"):
        return Path(os.environ["SFTPIPE_SHARED_DATA"])
    for parent in REPO.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data()


class TableInput:
    """The executor's stage-input protocol (`pipeline.stage.StageInput`) over an in-memory table or batch:
    re-iterable like the Parquet input, in batches of `batch_size` rows."""

    def __init__(self, data: pa.Table | pa.RecordBatch, batch_size: int = 1000):
        self.table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        self.batch_size, self.num_rows = batch_size, self.table.num_rows

    def batches(self, columns=None):
        table = self.table.select(columns) if columns else self.table
        yield from table.to_batches(max_chunksize=self.batch_size)


def sftpipe_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run the installed `sftpipe` console script (the one `pip install -e .`
    put next to this Python) on this checkout's code, with a wide terminal so that lines are not wrapped."""
    script = Path(sys.executable).parent / "sftpipe"
    assert script.is_file(), f"no console script at {script}: install the project (pip install -e .)"
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return [str(script), *args], env


def sftpipe(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `sftpipe ARGS` as a user does (the installed console script); output as text."""
    argv, env = sftpipe_command(*args)
    return subprocess.run(argv, cwd=cwd or REPO, capture_output=True, text=True, env=env, timeout=timeout)


def chromium_path() -> str | None:
    """The headless browser the HTML tests drive (Debian's chromium), or None where none is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def annotate_run_config(folder: Path, dataset: str, lines: list[str]) -> Path:
    """A TSV of SMS-like `lines` (header first) and a config that sends a 4-row sample to two annotators."""
    (folder / "sms.tsv").write_text("\n".join(lines) + "\n")
    config = folder / "run.yaml"
    config.write_text(
        f"dataset: {dataset}\nlabels: [ham, spam]\n"
        "sources: [{name: sms, path: sms.tsv, format: tsv, quoting: none, text_field: message, label_field: output}]\n"
        "annotate: {select: sample, sample_size: 4, seed: 1, annotators_per_task: 2}\n"
        "split: {ratios: {train: 0.5, validation: 0.25, test: 0.25}}\n"
    )
    return config


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_pipeline(config_path: Path, data_dir: Path, **kwargs):
    """Load a config and run the real local executor on it; returns the RunResult."""
    from pipeline.config import load_config
    from pipeline.executor import LocalExecutor

    tag = kwargs.pop("tag", None)
    return LocalExecutor(load_config(config_path, skip=kwargs.get("skip") or ()), data_dir=data_dir, **kwargs).run(tag=tag)


def sms_config(**overrides) -> dict:
    """The shipped SMS config, without language detection (slow, and tested on its own)."""
    config = yaml.safe_load((REPO / "configs" / "sms_spam.yaml").read_text())
    config["sources"][0]["path"] = str(SAMPLES / "sms_spam" / "SMSSpamCollection")
    config["clean"]["signals"] = []
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets (SHARED_DATA); the test is skipped where they are not."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (set SFTPIPE_SHARED_DATA)")
    return SHARED_DATA
