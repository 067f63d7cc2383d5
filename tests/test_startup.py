"""What a command imports before it does anything: `sftpipe --help` and the dedupe stage stay free of the
heavy libraries (pandas, scipy, datasketch, torch, the other stages), which cost seconds of start-up on every
run and in every worker process. Checked in a fresh interpreter, on the modules actually loaded."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pandas", "scipy", "datasketch", "torch", "transformers", "sklearn", "great_expectations", "label_studio_sdk")


def loaded_after(code: str) -> set[str]:
    """Top-level packages and `stages.*` modules loaded by a fresh interpreter after running `code`."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    return {m.split(".")[0] for m in modules} | {m for m in modules if m.startswith("stages.")}


def test_help_imports_no_data_library():
    loaded = loaded_after("import sys; sys.argv = ['sftpipe', '--help']\n"
                          "from pipeline.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass")
    assert not loaded & {*HEAVY, "pyarrow", "numpy", "stages"}


def test_the_dedupe_stage_imports_only_itself():
    loaded = loaded_after("from stages.dedupe import DedupeStage")
    assert not loaded & set(HEAVY)
    # the stage is a package: its own modules only, no other stage's
    assert {m.split(".")[1] for m in loaded if m.startswith("stages.")} == {"dedupe"}


def test_the_registry_still_lists_every_stage_in_order():
    import stages

    assert [s.name for s in stages.STAGES] == ["collect", "clean", "decontaminate", "label_noise", "dedupe", "annotate", "split"]
    assert stages.DedupeStage is stages.STAGES[4]
