"""The shipped rating walk-through (configs/alpaca_review.yaml) through the real executor and a real Label
Studio: the run pauses with the tasks awaiting review, two simulated annotators rate the 50 responses with
their own tokens, the next run publishes — rejected rows with their figures, the ratings in the rows, the
agreement in the manifest, report and gate."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.errors import PipelinePaused
from pipeline.executor import GateFailed

from .conftest import REPO, SAMPLES, run_pipeline, write_config
from .test_labelstudio import running_server, signup, tasks_by_row
from .test_response_review import make, post, rating

pytestmark = [pytest.mark.labelstudio, pytest.mark.filterwarnings("ignore::DeprecationWarning:label_studio_sdk.*")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's own Label Studio from the migrated template (stopped when the module ends; one test
    restarts it)."""
    with running_server(tmp_path_factory.mktemp("ls-review-pipeline") / "labelstudio") as s:
        yield s


def test_alpaca_review_config_end_to_end(server, tmp_path):
    config = yaml.safe_load((REPO / "configs" / "alpaca_review.yaml").read_text())
    config["sources"][0]["path"] = str(SAMPLES / "alpaca_en" / "alpaca_en_demo.json")
    config["clean"]["filters"] = {}  # language identification is tested on its own
    path = write_config(tmp_path, config)
    data = tmp_path / "data"
    with pytest.raises(PipelinePaused, match="^50 tasks awaiting review at http://127.0.0.1"):
        run_pipeline(path, data)

    stage = make("alpaca-review", "generation", tmp_path / "x", mode="rate")
    pid = stage.project(create=False)
    by_row = tasks_by_row(server, pid)
    assert len(by_row) == 50
    tok_a, tok_b = signup(server.url, "alpaca.a@example.com"), signup(server.url, "alpaca.b@example.com")
    # A: 4 for most rows, 2 for every fifth; B agrees but is a point more generous on every third row.
    rows = sorted(by_row)
    for i, rid in enumerate(rows):
        a = 2 if i % 5 == 0 else 4
        b = min(5, a + 1) if i % 3 == 0 else a
        post(server.url, tok_a, by_row[rid], rating(a, ["refusal"] if i == 7 else ()))
        post(server.url, tok_b, by_row[rid], rating(b, ["refusal"] if i == 7 else ()))
    # `sftpipe annotate status` follows a review as it follows labelling.
    from typer.testing import CliRunner

    from pipeline.cli import app

    status = CliRunner().invoke(app, ["annotate", "status", str(path)], catch_exceptions=False)
    assert status.exit_code == 0, status.output
    assert "tasks: 50 total, 50 done (2 annotation(s) each)" in status.output and "alpaca.a@example.com" in status.output

    result = run_pipeline(path, data)
    assert result.published
    version = data / "versions" / "alpaca-review" / result.version
    manifest = json.loads((version / "manifest.json").read_text())
    block = manifest["annotation"]
    assert block["mode"] == "rate" and block["agreement"]["level"] == "ordinal"
    assert block["agreement"]["krippendorff_alpha"] > 0.4 and block["agreement"]["krippendorff_alpha_interval"] > 0.4
    low = [rid for i, rid in enumerate(rows) if i % 5 == 0 and i % 3 != 0]  # (2, 2): median 2; (2, 3): median 2.5
    low += [rid for i, rid in enumerate(rows) if i % 15 == 0]
    rejected = pq.read_table(version / "rejected.parquet").to_pandas()
    mine = rejected[rejected["stage"] == "annotate"].set_index("id")
    assert sorted(mine.index) == sorted(set(low) | {rows[7]})
    assert mine.loc[rows[7], "reason"] == "flagged_refusal"
    assert block["response_review"]["rejected"] == {"low_rating": len(set(low)), "flagged_refusal": 1}
    published = pd.concat([pq.read_table(version / f"{s}.parquet").to_pandas() for s in ("train", "validation", "test")])
    rated = published[published["label_source"] == "annotation"]
    assert len(rated) == 50 - len(set(low)) - 1
    assert all(json.loads(m)["review"]["rating"] >= 3 for m in rated["meta"])
    report = (version / "report.html").read_text()
    assert "Krippendorff&#x27;s alpha (ordinal)" in report or "Krippendorff's alpha (ordinal)" in report
    assert (version / "annotations" / "annotations.parquet").is_file()

    # The gate: an agreement floor above what these annotators reach blocks the version.
    config["evaluate"]["agreement_min"] = 0.99
    strict = write_config(tmp_path, config)
    with pytest.raises(GateFailed):
        run_pipeline(strict, tmp_path / "data2")


def test_push_review_low_scores_sends_the_rows_a_signal_flags(server, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    good = "Paris is the capital of France, and it has been the seat of government for centuries."
    records = [{"instruction": f"Question {i}: name a capital city and say something about it.", "output": f"{good} ({i})"}
               for i in range(6)]
    records[1]["output"] = "I'm sorry, but I cannot help with that request."
    records[4]["output"] = "There are many reasons for this and they include the following important points about the"
    (tmp_path / "alpaca.json").write_text(json.dumps(records))
    config = write_config(tmp_path, {
        "dataset": "low-scores", "kind": "generation",
        "sources": [{"name": "a", "path": "alpaca.json", "format": "json", "record_format": "alpaca"}],
        # Refusals are kept for a person to judge (the rule off, the signal on); cut-off answers are a signal only.
        "clean": {"filters": {"completion.refusal": None}, "signals": ["completion.refusal", "completion.ends_mid_sentence"]},
        "annotate": {"mode": "rate", "select": "all"},
        "split": {"ratios": {"train": 0.5, "validation": 0.25, "test": 0.25}},
    })
    data = tmp_path / "data"
    runner = CliRunner()
    res = runner.invoke(app, ["annotate", "push", str(config), "--data-dir", str(data), "--review-low-scores"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "2 tasks awaiting review" in res.output
    stage = make("low-scores", "generation", tmp_path / "x", mode="rate")
    by_row = tasks_by_row(server, stage.project(create=False))
    texts = {server.client().sdk.tasks.get(id=t).data["response"] for t in by_row.values()}
    assert texts == {records[1]["output"], records[4]["output"]}
    # The config's own selection afterwards adds the other rows, never one twice.
    res = runner.invoke(app, ["annotate", "push", str(config), "--data-dir", str(data)], catch_exceptions=False)
    assert res.exit_code == 0 and "6 tasks awaiting review" in res.output, res.output
    assert len(tasks_by_row(server, stage.project(create=False))) == 6
    # Without a review section the flag is one clear line.
    (tmp_path / "plain").mkdir()
    plain = write_config(tmp_path / "plain", {
        "dataset": "low-scores-2", "kind": "generation",
        "sources": [{"name": "a", "path": str(tmp_path / "alpaca.json"), "format": "json", "record_format": "alpaca"}],
    })
    res = runner.invoke(app, ["annotate", "push", str(plain), "--data-dir", str(data), "--review-low-scores"])
    assert res.exit_code != 0 and "--review-low-scores sends responses to review" in str(res.exception)
