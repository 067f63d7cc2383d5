"""Crash safety: real runs killed with SIGKILL at seeded random moments (20 kills) never leave a partial
version or a stage output a later run would trust, and the run after them publishes exactly what an
uninterrupted run publishes."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import schemas

from .conftest import REPO, sms_config, write_config

KILLS = 20
MAX_ATTEMPTS = 60  # a resumed run is shorter, so some attempts finish before their kill time


def start(config: Path, data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(config), "--data-dir", str(data_dir),
                             "--batch-size", "250", "--workers", "1"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def check_store(data_dir: Path) -> list[str]:
    """Every visible version is complete; every trusted stage output is readable and matches its stats."""
    root = data_dir / "versions" / "sms-spam"
    versions = sorted(p.name for p in root.glob("v*")) if root.is_dir() else []
    for v in versions:
        names = {p.name for p in (root / v).iterdir()}
        assert {"manifest.json", "README.md", "rejected.parquet", *(f"{s}.parquet" for s in schemas.SPLITS)} <= names
        manifest = json.loads((root / v / "manifest.json").read_text())
        for s in schemas.SPLITS:
            assert pq.read_metadata(root / v / f"{s}.parquet").num_rows == manifest["splits"][s]["rows"]
    for folder in (data_dir / "runs" / "sms-spam" / "stages").glob("*"):
        if ".tmp-" in folder.name:
            continue  # a temporary name is never trusted (and is removed by the next run)
        stats = json.loads((folder / "stats.json").read_text())
        assert pq.read_metadata(folder / "part-00000.parquet").num_rows == stats["rows_out"]
    return versions


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_version(tmp_path):
    config = write_config(tmp_path, sms_config())
    reference_dir = tmp_path / "reference"
    t0 = time.monotonic()
    proc = start(config, reference_dir)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    duration = time.monotonic() - t0
    reference = json.loads((reference_dir / "versions" / "sms-spam" / "v1" / "manifest.json").read_text())

    rng = random.Random(20261122)
    killed = attempts = completed = 0
    data_dir = tmp_path / "run0"

    def finish_and_check(folder: Path) -> None:
        """The run after the kills publishes exactly the uninterrupted version, and nothing else."""
        proc = start(config, folder)
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        assert check_store(folder) == ["v1"]
        manifest = json.loads((folder / "versions" / "sms-spam" / "v1" / "manifest.json").read_text())
        assert manifest["content_fingerprint"] == reference["content_fingerprint"]
        assert not list((folder / "runs" / "sms-spam" / "stages").glob("*.tmp-*"))

    while killed < KILLS and attempts < MAX_ATTEMPTS:
        attempts += 1
        proc = start(config, data_dir)
        time.sleep(rng.uniform(0.05, 0.95) * duration)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
            killed += 1
            check_store(data_dir)
        else:  # it got to the end before its kill time: check it, then go on in a fresh folder
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
            finish_and_check(data_dir)
            completed += 1
            data_dir = tmp_path / f"run{completed}"
    assert killed == KILLS, f"only {killed} kills in {attempts} attempts"
    finish_and_check(data_dir)


def test_second_concurrent_run_is_refused_with_a_clear_message(tmp_path):
    from pipeline.store import VersionStore

    config = write_config(tmp_path, sms_config())
    with VersionStore(tmp_path / "data").lock("sms-spam"):
        out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(config), "--data-dir", str(tmp_path / "data")],
                             cwd=REPO, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert out.returncode == 1
    assert "another run of 'sms-spam' is in progress" in out.stderr
