"""The README's funnel tables are what the shipped configs publish (issue #17, "Done means": the walk-throughs
match what they print). Each table is read from README.md, the config is run through the installed console
script as a new user runs it, and every stage's rows in / out and every drop reason with its count must be
the ones the table shows; a new stage or a changed count fails here until the README is re-measured.

The Label Studio walk-throughs (two annotators, the label review) and training need people or minutes; they
are re-run by hand on a fresh clone (README: where each says so)."""
from __future__ import annotations

import json
import re

import pytest

from .conftest import REPO, sftpipe

README = (REPO / "README.md").read_text(encoding="utf-8")

# (the README heading the table follows, the config, the dataset name)
WALK_THROUGHS = [
    ("## Run the pipeline on the shipped sample", "configs/sms_spam.yaml", "sms-spam"),
    ("### A walk-through: Alpaca-style instructions", "configs/alpaca_en.yaml", "alpaca-en"),
    ("## Decontamination", "configs/trec_decontaminated.yaml", "trec-decontaminated"),
]


def funnel_table(heading: str) -> dict[str, tuple[int, int, dict[str, int]]]:
    """The first `| stage | rows in | rows out | dropped |` table after HEADING: stage → (in, out, reasons)."""
    assert heading in README, f"README has no heading {heading!r}"
    section = README.split(heading, 1)[1]
    start = section.index("| stage | rows in | rows out | dropped |")
    table = {}
    for line in section[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        stage, rows_in, rows_out, dropped = (cell.strip() for cell in line.strip("|").split("|", 3))
        reasons = {reason: int(n.replace(",", "")) for reason, n in re.findall(r"\b([a-z_]+): (\d[\d,]*)", dropped)}
        table[stage] = (int(rows_in.replace(",", "")), int(rows_out.replace(",", "")), reasons)
    return table


def test_the_tables_are_read():
    sms = funnel_table(WALK_THROUGHS[0][0])
    assert list(sms) == ["collect", "clean", "label_noise", "dedupe", "split"]
    assert sms["clean"][2]["lang_not_allowed"] > 0 and sms["dedupe"][2]["exact_duplicate"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("heading, config, dataset", WALK_THROUGHS, ids=[w[2] for w in WALK_THROUGHS])
def test_readme_funnel_is_what_the_shipped_config_publishes(heading, config, dataset, tmp_path):
    expected = funnel_table(heading)
    out = sftpipe("run", config, "--data-dir", str(tmp_path / "data"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"published {dataset} v1" in out.stdout, out.stdout[-3000:]
    manifest = json.loads((tmp_path / "data" / "versions" / dataset / "v1" / "manifest.json").read_text())
    seen = {s["name"]: (s["rows_in"], s["rows_out"], {r: n for r, n in s["dropped"].items() if n}) for s in manifest["stages"]}
    assert seen == expected, f"README ({heading}) shows {expected}, the run published {seen}"
    for note in re.findall(r"`(clean: lang auto: [^`]+)`", README.split(heading, 1)[1].split("\n## ", 1)[0]):
        assert " ".join(note.split()) in " ".join(out.stdout.split()), (note, out.stdout[-3000:])  # quoted under the funnel
