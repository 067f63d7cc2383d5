"""The label-review loop against a real Label Studio, through the installed console script: a version's likely
label errors are pushed as the version published them, people decide, `sftpipe run` pauses until they have,
then publishes a version with the decisions (counted in the funnel and in `versions diff`), for a config
with and without an `annotate` section; decisions apply only to rows that are still what the reviewer saw."""
from __future__ import annotations

import json

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.errors import PipelinePaused
from stages.annotate.config import Review
from stages.annotate.review import review_section, review_title

from .conftest import TableInput, run_pipeline, sftpipe, sms_config, write_config
from .test_labelstudio import annotate_as, make_stage, rows_batch, run_stage, running_server, signup, tasks_by_row

pytestmark = [
    pytest.mark.labelstudio,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:label_studio_sdk.*"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("ls-review") / "labelstudio") as s:
        yield s


def version_rows(folder) -> pd.DataFrame:
    return pd.concat([pq.read_table(folder / f"{s}.parquet").to_pandas() for s in ("train", "validation", "test")])


def predictions_of(server, task_id: int) -> set[str]:
    preds = httpx.get(f"{server.url}/api/predictions", params={"task": task_id},
                      headers={"Authorization": f"Token {server.api_key}"}, timeout=30).json()
    return {c for p in preds for r in p["result"] for c in r["value"]["choices"]}


def test_review_loop_without_an_annotate_section(server, tmp_path):
    # The review loop sends the label errors the version kept: the label_noise stage flags them, not drops them.
    config = write_config(tmp_path, sms_config(dataset="review-test", label_noise={"action": "warn"}))
    data = tmp_path / "data"
    run_pipeline(config, data)
    v1 = data / "versions" / "review-test" / "v1"
    top = pq.read_table(v1 / "label_issues.parquet").to_pandas().sort_values("rank").head(5)
    assert len(top) == 5

    pushed = sftpipe("annotate", "push", str(config), "--data-dir", str(data), "--review-label-issues", "--version", "v1",
                     "--top", "5", cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "sent the 5 most likely label errors of review-test v1 for review (5 imported now" in pushed.stdout
    stage = make_stage("review-test", tmp_path / "w", project_title=review_title("review-test", "v1"))
    pid = stage.project(create=False)
    tasks = {t["data"]["row_id"]: t for t in server.client().tasks(pid)}
    assert sorted(tasks) == sorted(top["id"])
    published = version_rows(v1).set_index("id")
    for rid, task in tasks.items():  # the rows as v1 published them; the given label out of the data's columns
        assert task["data"]["text"] == published.loc[rid, "text"] and "source_label" not in task["data"]
        assert task["meta"]["source_label"] == published.loc[rid, "label"]
        assert predictions_of(server, task["id"]) == {top.set_index("id").loc[rid, "suggested_label"]}
    project = server.client().get_project(pid)
    assert project.show_collab_predictions is True and project.model_version == "label-issues-v1"  # one reviewer

    paused = sftpipe("run", str(config), "--data-dir", str(data), cwd=tmp_path)
    assert paused.returncode == 75, paused.stdout + paused.stderr
    assert "label reviews applied: v1" in paused.stdout
    assert "5 of 5 rows of the review of v1 await a decision at http://127.0.0.1" in paused.stdout
    assert "funnel so far" in paused.stdout and not (data / "versions" / "review-test" / "v2").exists()
    status = sftpipe("annotate", "status", str(config), "--data-dir", str(data), cwd=tmp_path)
    assert status.returncode == 0 and "review of v1" in status.stdout and "5 total, 0 done" in status.stdout, status.stdout

    # The reviewer takes the suggestion for three rows and keeps the given label for two.
    reviewer = signup(server.url, "reviewer@example.com")
    decided = {}
    for k, r in enumerate(top.itertuples()):
        decided[r.id] = r.suggested_label if k < 3 else r.given_label
        annotate_as(server.url, reviewer, tasks[r.id]["id"], [decided[r.id]])
    out = sftpipe("run", str(config), "--data-dir", str(data), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "published review-test v2" in out.stdout
    assert "collect: unchanged since an earlier run, reusing" in out.stdout + out.stderr  # the data stages: cached
    lines = out.stdout.splitlines()
    header = [c.strip() for c in next(line for line in lines if line.startswith("┃ stage")).split("┃")]
    funnel_row = [c.strip() for c in next(line for line in lines if line.startswith("│ annotate")).split("│")]
    assert funnel_row[header.index("relabelled")] == "3"

    v2 = data / "versions" / "review-test" / "v2"
    rows = version_rows(v2).set_index("id")
    assert {rid: rows.loc[rid, "label"] for rid in decided} == decided
    assert set(rows.loc[list(decided), "label_source"]) == {"review"}
    assert set(rows.drop(index=list(decided))["label_source"]) == {"source"}
    manifest = json.loads((v2 / "manifest.json").read_text())
    (review,) = manifest["annotation"]["reviews"]
    assert (review["version"], review["rows"], review["applied"], review["relabelled"]) == ("v1", 5, 5, 3)
    assert manifest["label_origin"] == "source labels, with the label review of v1"
    decisions = pq.read_table(v2 / "annotations" / "review_decisions.parquet").to_pandas()
    assert sorted(decisions["row_id"]) == sorted(decided) and set(decisions["status"]) == {"applied"}
    diff = json.loads(sftpipe("versions", "diff", "review-test", "v1", "v2", "--data-dir", str(data), "--json").stdout)
    assert sum(s["relabelled"] for s in diff["splits"].values()) == 3
    assert sum(s["added"] + s["removed"] for s in diff["splits"].values()) == 0

    # Every later run applies the decisions, also after a config change; forgetting the review stops it.
    changed = sms_config(dataset="review-test", label_noise={"action": "warn"})
    changed["dedupe"]["threshold"] = 0.81
    config2 = write_config(tmp_path, changed)
    later = sftpipe("run", str(config2), "--data-dir", str(data), cwd=tmp_path)
    assert later.returncode == 0 and "published review-test v3" in later.stdout, later.stdout + later.stderr
    rows3 = version_rows(data / "versions" / "review-test" / "v3").set_index("id")
    kept = [rid for rid in decided if rid in rows3.index]
    assert kept and all(rows3.loc[rid, "label"] == decided[rid] for rid in kept)
    forget = sftpipe("annotate", "forget-review", str(config2), "v1", "--data-dir", str(data))
    assert forget.returncode == 0 and "no longer applied" in forget.stdout
    plain = sftpipe("run", str(config2), "--data-dir", str(data), cwd=tmp_path)
    assert plain.returncode == 0 and "label reviews applied" not in plain.stdout, plain.stdout + plain.stderr


def test_review_loop_with_an_annotate_section(server, tmp_path):
    """A dataset whose config sends a sample to two annotators: the review's decisions come on top of the
    people's labels; both sets of files are in the version."""
    config = write_config(tmp_path, sms_config(dataset="review-ann", label_noise={"action": "warn"}, annotate={
        "select": "sample", "sample_size": 4, "seed": 1, "annotators_per_task": 2}))
    data = tmp_path / "data"
    first = sftpipe("run", str(config), "--data-dir", str(data), cwd=tmp_path)
    assert first.returncode == 75, first.stdout + first.stderr
    own = make_stage("review-ann", tmp_path / "w", select="sample", sample_size=4, seed=1, annotators_per_task=2)
    own_tasks = tasks_by_row(server, own.project(create=False))
    people = [signup(server.url, f"annotator.{c}@example.com") for c in "ab"]
    for tid in own_tasks.values():
        for tok in people:
            annotate_as(server.url, tok, tid, ["ham"])
    v1 = sftpipe("run", str(config), "--data-dir", str(data), cwd=tmp_path)
    assert v1.returncode == 0 and "published review-ann v1" in v1.stdout, v1.stdout + v1.stderr

    pushed = sftpipe("annotate", "push", str(config), "--data-dir", str(data), "--review-label-issues", "--top", "3",
                     "--annotators", "2", cwd=tmp_path)
    assert pushed.returncode == 0 and "2 people per row, no label pre-selected" in pushed.stdout, pushed.stdout
    review = make_stage("review-ann", tmp_path / "r", project_title=review_title("review-ann", "v1"), annotators_per_task=2)
    review_tasks = tasks_by_row(server, review.project(create=False))
    assert len(review_tasks) == 3
    assert all(predictions_of(server, tid) == set() for tid in review_tasks.values())  # two reviewers: no anchor
    for tid in review_tasks.values():
        for tok in people:
            annotate_as(server.url, tok, tid, ["spam"])
    v2 = sftpipe("run", str(config), "--data-dir", str(data), cwd=tmp_path)
    assert v2.returncode == 0 and "published review-ann v2" in v2.stdout, v2.stdout + v2.stderr
    rows = version_rows(data / "versions" / "review-ann" / "v2").set_index("id")
    assert (rows.loc[list(review_tasks), "label"] == "spam").all()
    assert set(rows.loc[list(review_tasks), "label_source"]) == {"review"}
    annotated = [rid for rid in own_tasks if rid not in review_tasks]
    assert (rows.loc[annotated, "label"] == "ham").all() and set(rows.loc[annotated, "label_source"]) == {"annotation"}
    files = {p.name for p in (data / "versions" / "review-ann" / "v2" / "annotations").iterdir()}
    assert {"annotations.parquet", "agreement.json", "review_annotations.parquet", "review_decisions.parquet"} <= files


def test_review_decisions_apply_only_to_rows_as_the_reviewer_saw_them(server, tmp_path):
    rows = pd.DataFrame(rows_batch(4, "seen").to_pylist())
    base = make_stage("seen-test", tmp_path / "p").config.model_copy(update={"select": "none"})
    rv = Review(version="v1", project_title=review_title("seen-test", "v1"))
    pusher = make_stage("seen-test", tmp_path / "p", **review_section(base, rv).model_dump(exclude_none=True))
    pid = pusher.project()
    pusher.push(pid, rows[["id", "text", "label", "source"]])
    tok = signup(server.url, "reviewer@example.com")
    for rid, tid in tasks_by_row(server, pid).items():
        annotate_as(server.url, tok, tid, ["spam"])
    # Now the data differs: seen-001's text changed (another clean config), seen-003 is gone.
    now = rows_batch(3, "seen", texts={1: "an edited text"})
    stage = make_stage("seen-test", tmp_path / "run", select="none", reviews=[rv.model_dump()])
    out = run_stage(stage, TableInput(now)).to_pandas().set_index("id")
    assert out.loc["seen-000", "label"] == "spam" and out.loc["seen-000", "label_source"] == "review"
    assert out.loc["seen-001", "label"] == now.to_pandas().set_index("id").loc["seen-001", "label"]  # not applied
    assert out.loc["seen-001", "label_source"] == "source"
    (summary,) = stage.stats["reviews"]
    assert {k: summary[k] for k in ("rows", "decided", "applied", "stale", "absent")} == \
        {"rows": 4, "decided": 4, "applied": 2, "stale": 1, "absent": 1}
    assert "changed since it was reviewed" in stage.stats["warnings"][0]
    assert stage.summarize().reviews[0].stale == 1 and stage.summarize().project_id is None
    # Until every reviewed row has its decision, the stage waits.
    waiting = make_stage("seen-test", tmp_path / "w2", select="none",
                         reviews=[Review(version="v2", project_title=review_title("seen-test", "v2")).model_dump()])
    other = make_stage("seen-test", tmp_path / "p2", **review_section(base, Review(
        version="v2", project_title=review_title("seen-test", "v2"))).model_dump(exclude_none=True))
    other.push(other.project(), rows[["id", "text", "label", "source"]])
    with pytest.raises(PipelinePaused, match=r"^4 of 4 rows of the review of v2 await a decision at http"):
        run_stage(waiting, TableInput(now))
