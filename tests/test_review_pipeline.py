"""Each review mode end to end against a real Label Studio, with simulated annotators using their own tokens.

- rate: the shipped walk-through (configs/alpaca_review.yaml) through the real executor: the run pauses with
  the tasks awaiting review, two annotators rate the 50 responses, the next run publishes — rejected rows with
  their figures, the ratings in the rows, the agreement in the manifest, report and gate.
- edit and compare: through the `sftpipe run` console script as a user runs it: exit code 75 with "N tasks
  awaiting review at URL", a second run before anyone reviewed adds no task, the annotators submit, the server
  restarts, the next run publishes — the edited responses (originals in the lineage, counted in the funnel), or TRL preference
  records that `datasets` loads, ties set aside and listed; compare's agreement in the manifest and report,
  and `agreement_min` blocking a version."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.errors import PipelinePaused
from pipeline.executor import GateFailed

from .conftest import REPO, SAMPLES, run_pipeline, sftpipe, write_config
from .test_labelstudio import running_server, signup, tasks_by_row
from .test_response_review import edit, make, pick, post, rating
from stages.annotate.responses.interface import a_is_chosen

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


def _published(version) -> pd.DataFrame:
    return pd.concat([pq.read_table(version / f"{s}.parquet").to_pandas() for s in ("train", "validation", "test")])


def _run_twice_paused(path, data, tmp_path, waiting: int) -> None:
    """`sftpipe run` pauses (exit 75, the tasks awaiting review at the server's URL); run again before anyone
    reviewed, it pauses the same way and imports nothing new."""
    for attempt in range(2):
        res = sftpipe("run", str(path), "--data-dir", str(data), cwd=tmp_path, timeout=300)
        out = res.stdout + res.stderr
        assert res.returncode == 75, out
        assert f"{waiting} tasks awaiting review at http://127.0.0.1" in out, out
        assert ("imported now" in out) == (attempt == 0), out  # the second run pushes nothing
        assert "nothing published" in res.stdout


def test_edit_end_to_end_through_sftpipe_run(server, tmp_path):
    """The Alpaca sample, three responses sent for editing to two people: the edits are the published
    responses, each original in the row's meta.review.original, counted in the funnel and the manifest."""
    config = yaml.safe_load((REPO / "configs" / "alpaca_review.yaml").read_text())
    config["dataset"] = "alpaca-edit"
    config["sources"][0]["path"] = str(SAMPLES / "alpaca_en" / "alpaca_en_demo.json")
    config["clean"]["filters"] = {}  # language identification is tested on its own
    config["annotate"].update(mode="edit", sample_size=3, instructions="Correct the response; submit it unchanged if it is right.")
    config["annotate"]["responses"] = {"edit_rule": "medoid"}
    path = write_config(tmp_path, config)
    data = tmp_path / "data"
    _run_twice_paused(path, data, tmp_path, waiting=3)

    stage = make("alpaca-edit", "generation", tmp_path / "x", mode="edit")
    pid = stage.project(create=False)
    by_row = tasks_by_row(server, pid)
    assert len(by_row) == 3  # no task twice
    tok_a, tok_b = signup(server.url, "edit.a@example.com"), signup(server.url, "edit.b@example.com")
    rows = sorted(by_row)
    original = {r: server.client().sdk.tasks.get(id=by_row[r]).data["response"] for r in rows}
    fixed = {r: original[r].rstrip() + "\n\n(Checked by a reviewer.)" for r in rows}
    post(server.url, tok_a, by_row[rows[0]], edit(fixed[rows[0]]))  # a edits, b submits it unchanged: the edit wins
    post(server.url, tok_b, by_row[rows[0]], edit(original[rows[0]]))
    post(server.url, tok_a, by_row[rows[1]], edit(fixed[rows[1]]))  # both make the same edit
    post(server.url, tok_b, by_row[rows[1]], edit(fixed[rows[1]]))
    post(server.url, tok_a, by_row[rows[2]], edit(original[rows[2]]))  # nobody edits
    post(server.url, tok_b, by_row[rows[2]], edit(original[rows[2]]))

    # The server restarts before the pull: the run finds the same project and pulls what was submitted.
    server.stop()
    server.start()
    res = sftpipe("run", str(path), "--data-dir", str(data), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "annotate: 2 response(s) edited by people (each original in meta.review.original)" in res.stdout, res.stdout
    (version,) = sorted((data / "versions" / "alpaca-edit").glob("v*"))
    published = _published(version).set_index("id")
    for r in rows[:2]:
        assert published.loc[r, "completion"] == fixed[r]
        review = json.loads(published.loc[r, "meta"])["review"]
        assert review["original"] == original[r] and review["edited"] and review["mode"] == "edit"
    assert published.loc[rows[2], "completion"] == original[rows[2]]
    assert "original" not in json.loads(published.loc[rows[2], "meta"])["review"]
    assert (published["label_source"] == "annotation").sum() == 3
    manifest = json.loads((version / "manifest.json").read_text())
    block = manifest["annotation"]
    assert block["mode"] == "edit" and block["response_review"]["edited"] == 2
    annotate = [s for s in manifest["stages"] if s["name"] == "annotate"][0]
    assert annotate["stats"]["relabelled"] == 2  # the funnel's column for the stage
    assert annotate["rows_in"] == annotate["rows_out"]  # an edit removes no row
    ann = pq.read_table(version / "annotations" / "annotations.parquet").to_pandas()
    assert len(ann) == 6 and sorted(ann["annotator"].unique()) == ["edit.a@example.com", "edit.b@example.com"]


# Sixteen preference pairs (five are sent for comparison): a prompt, a good and a poor answer, in TRL's
# standard preference form.
PAIRS = [
    ("How many legs does a spider have?", "A spider has eight legs.", "Spiders have six legs, like insects."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level.",
     "Water boils at 50 degrees Celsius."),
    ("Name the largest planet in the solar system.", "Jupiter is the largest planet in the solar system.",
     "The largest planet is Mars."),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet.",
     "Romeo and Juliet was written by Charles Dickens."),
    ("What gas do plants take in for photosynthesis?", "Plants take in carbon dioxide for photosynthesis.",
     "Plants take in helium to make their food."),
    ("How many continents are there on Earth?", "There are seven continents on Earth.", "Earth has three continents."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au.", "Gold is written as Gd."),
    ("Which ocean is the largest?", "The Pacific Ocean is the largest ocean.", "The Arctic Ocean is the largest one."),
    ("What is the freezing point of water in Fahrenheit?", "Water freezes at 32 degrees Fahrenheit.",
     "Water freezes at 10 degrees Fahrenheit."),
    ("How many days are there in a leap year?", "A leap year has 366 days.", "A leap year has 360 days."),
    ("What is the capital city of Japan?", "Tokyo is the capital city of Japan.", "The capital of Japan is Beijing."),
    ("Which organ pumps blood around the body?", "The heart pumps blood around the body.",
     "The lungs pump blood around the body."),
    ("What is the square root of eighty-one?", "The square root of eighty-one is nine.",
     "The square root of eighty-one is seven."),
    ("Which metal is liquid at room temperature?", "Mercury is a metal that is liquid at room temperature.",
     "Iron is liquid at room temperature."),
    ("What do bees make from nectar?", "Bees make honey from nectar.", "Bees make wax paper from nectar."),
    ("How many minutes are there in an hour?", "There are sixty minutes in an hour.", "An hour has one hundred minutes."),
]


def test_compare_end_to_end_through_sftpipe_run(server, tmp_path):
    """Sixteen preference pairs, five compared by two people: the version holds TRL prompt / chosen / rejected
    records that `datasets` loads, the pair people reversed swapped, ties set aside (preference_tie) and
    listed; Fleiss' kappa and Krippendorff's alpha in the manifest and report.html; agreement_min blocks; and
    annotate.aggregation: dawid_skene aggregates the same votes."""
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
                                                  for p, c, r in PAIRS))
    config = {
        "dataset": "pairs-compare", "kind": "preference",
        "sources": [{"name": "pairs", "path": "pairs.jsonl", "format": "jsonl"}],
        "annotate": {"mode": "compare", "select": "sample", "sample_size": 5, "seed": 3, "annotators_per_task": 2,
                     "instructions": "Pick the better answer to the prompt, or tie."},
        "split": {"ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}, "seed": 1},
        "evaluate": {"min_rows": {"train": 4, "validation": 1, "test": 1}, "agreement_min": 0.4},
    }
    path = write_config(tmp_path, config)
    data = tmp_path / "data"
    _run_twice_paused(path, data, tmp_path, waiting=5)

    stage = make("pairs-compare", "preference", tmp_path / "x", mode="compare")
    by_row = tasks_by_row(server, stage.project(create=False))
    assert len(by_row) == 5
    rows = sorted(by_row)
    tok_a, tok_b = signup(server.url, "pref.a@example.com"), signup(server.url, "pref.b@example.com")

    def letter(rid, which):  # the side the source's chosen / rejected response was shown on
        return "tie" if which == "tie" else ("A" if (which == "chosen") == a_is_chosen(rid) else "B")

    # Both prefer the source's chosen (rows 0, 2), both its rejected (row 1: swapped), both a tie (row 3),
    # and a split vote (row 4): rows 3 and 4 are ties, set aside.
    votes = [("chosen", "chosen"), ("rejected", "rejected"), ("chosen", "chosen"), ("tie", "tie"), ("chosen", "rejected")]
    for rid, (va, vb) in zip(rows, votes):
        post(server.url, tok_a, by_row[rid], pick(letter(rid, va)))
        post(server.url, tok_b, by_row[rid], pick(letter(rid, vb)))

    # The server restarts before the pull: the run finds the same project and pulls what was submitted.
    server.stop()
    server.start()
    res = sftpipe("run", str(path), "--data-dir", str(data), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "annotate: 1 pair(s) swapped (people preferred the source's rejected response); 2 tie(s) set aside " \
           "as preference_tie" in res.stdout, res.stdout
    (version,) = sorted((data / "versions" / "pairs-compare").glob("v*"))

    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(version))
    assert set(ds) == {"train", "validation", "test"}
    loaded = pd.concat([ds[s].to_pandas() for s in ds]).set_index("id")
    assert {"prompt", "chosen", "rejected"} <= set(loaded.columns) and len(loaded) == len(PAIRS) - 2
    good = {p: (c, r) for p, c, r in PAIRS}
    for rid in (rows[0], rows[2]):
        assert (loaded.loc[rid, "chosen"], loaded.loc[rid, "rejected"]) == good[loaded.loc[rid, "prompt"]]
    swapped = loaded.loc[rows[1]]
    assert (swapped["rejected"], swapped["chosen"]) == good[swapped["prompt"]]
    assert json.loads(swapped["meta"])["review"]["swapped"] is True
    untouched = loaded[loaded["label_source"].isna()]
    assert len(untouched) == len(PAIRS) - 5
    assert all((c, r) == good[p] for p, c, r in zip(untouched["prompt"], untouched["chosen"], untouched["rejected"]))

    rejected = pq.read_table(version / "rejected.parquet").to_pandas()
    ties = rejected[rejected["stage"] == "annotate"].set_index("id")
    assert sorted(ties.index) == [rows[3], rows[4]] and set(ties["reason"]) == {"preference_tie"}
    assert json.loads(ties.loc[rows[3], "details"])["votes"] == {"tie": 2}
    assert json.loads(ties.loc[rows[4], "details"])["votes"] == {"chosen": 1, "rejected": 1}

    block = json.loads((version / "manifest.json").read_text())["annotation"]
    assert block["mode"] == "compare" and block["aggregation"] == "majority"
    assert block["response_review"]["tie_rows"] == [rows[3], rows[4]] and block["response_review"]["swapped"] == 1
    assert [t["id"] for t in block["ties"]] == [rows[3], rows[4]]
    # By hand (two raters, five pairs; values chosen 5, rejected 3, tie 2 of 10 votes):
    # Fleiss: P̄ = 4/5, P_e = .25 + .09 + .04 = .38 → (0.8 − 0.38) / 0.62 = 0.677419.
    # Krippendorff (nominal): one disagreeing pair, D_o ∝ 2·9 = 18, D_e ∝ 2·(5·3 + 5·2 + 3·2) = 62 → 1 − 18/62.
    ag = block["agreement"]
    assert ag["level"] == "nominal"
    assert ag["fleiss_kappa"] == pytest.approx(0.42 / 0.62, abs=1e-6)
    assert ag["krippendorff_alpha"] == pytest.approx(1 - 18 / 62, abs=1e-6)
    report = (version / "report.html").read_text()
    for text in ("Fleiss", "pairs swapped (people preferred the source", "ties (no better response", rows[3], rows[4]):
        assert text in report or text.replace("'", "&#x27;") in report, text

    # The gate: a floor above these annotators' agreement blocks the version (exit code 1), and says why.
    config["evaluate"]["agreement_min"] = 0.9
    config["annotate"]["aggregation"] = "dawid_skene"
    (tmp_path / "strict").mkdir()
    (tmp_path / "strict" / "pairs.jsonl").write_text((tmp_path / "pairs.jsonl").read_text())
    strict = write_config(tmp_path / "strict", config)
    blocked = sftpipe("run", str(strict), "--data-dir", str(tmp_path / "data2"), cwd=tmp_path, timeout=300)
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "agreement" in blocked.stdout and "fleiss_kappa" in blocked.stdout, blocked.stdout
    assert not list((tmp_path / "data2" / "versions").glob("*/v*"))
    # Dawid–Skene aggregated the same votes: its annotator accuracies are in the (blocked) candidate's report.
    (report_path,) = (tmp_path / "data2").rglob("report.html")
    assert "Annotator accuracy estimated by Dawid" in report_path.read_text()
