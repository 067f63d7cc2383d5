"""Shared fixtures: real sample files, configs written to tmp folders, runs of the real executor."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "samples"
# Real labelled sets written outside this project (../shared/data beside the checkout in CI).
SHARED_DATA = Path(os.environ.get("SFTPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))


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
    return LocalExecutor(load_config(config_path), data_dir=data_dir, **kwargs).run(tag=tag)


def sms_config(**overrides) -> dict:
    """The shipped SMS config, without language detection (slow, and tested on its own)."""
    config = yaml.safe_load((REPO / "configs" / "sms_spam.yaml").read_text())
    config["sources"][0]["path"] = str(SAMPLES / "sms_spam" / "SMSSpamCollection")
    config["clean"]["signals"] = []
    config.update(overrides)
    return config


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (set SFTPIPE_SHARED_DATA)")
    return SHARED_DATA
