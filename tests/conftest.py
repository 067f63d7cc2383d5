"""Shared fixtures: real sample files, configs written to tmp folders, runs of the real executor."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "samples"
# Real labelled sets written outside this project (../shared/data beside the checkout in CI).
SHARED_DATA = Path(os.environ.get("SFTPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))


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
