"""Review of responses (annotate.mode rate / edit / compare) against the real Label Studio server the suite
starts, with simulated annotators posting with their own tokens (no mocks)."""
from __future__ import annotations

import json

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipeline.errors import PipelinePaused
from pipeline.stage import StageContext
from schemas.kinds import KINDS
from stages.annotate import AnnotateStage, Config
from stages.annotate.responses.interface import a_is_chosen

from .conftest import TableInput, chromium_path
from .test_labelstudio import open_task, running_server, signup, tasks_by_row

pytestmark = [
    pytest.mark.labelstudio,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:label_studio_sdk.*"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's own Label Studio from the migrated template (stopped when the module ends; one test
    restarts it)."""
    with running_server(tmp_path_factory.mktemp("ls-responses") / "labelstudio") as s:
        yield s


def generation_rows(prefix: str, n: int) -> pa.RecordBatch:
    kind = KINDS["generation"]
    rows = [{"id": f"{prefix}-{i:02d}", "source": "s", "source_file": "f.jsonl", "source_line": i + 1,
             "prompt": f"Question {i}: what is {i} + {i}? <b>bold?</b>", "completion": f"It is {2 * i}.\n    indented",
             "system": "Be brief." if i % 2 else None, "meta": json.dumps({"origin": "test"}), "cluster_id": i}
            for i in range(n)]
    return pa.RecordBatch.from_pylist(rows, schema=kind.schema(schemas.CLUSTER_ID))


def chat_rows(prefix: str, n: int) -> pa.RecordBatch:
    kind = KINDS["chat"]
    rows = [{"id": f"{prefix}-{i:02d}", "source": "s", "source_file": "f.jsonl", "source_line": i + 1,
             "messages": [{"role": "system", "content": "You are kind."}, {"role": "user", "content": f"Hi {i}"},
                          {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Tell a joke"},
                          {"role": "assistant", "content": f"Joke number {i}"}],
             "tools": None, "meta": None, "cluster_id": i} for i in range(n)]
    return pa.RecordBatch.from_pylist(rows, schema=kind.schema(schemas.CLUSTER_ID))


def preference_rows(prefix: str, n: int) -> pa.RecordBatch:
    kind = KINDS["preference"]
    rows = [{"id": f"{prefix}-{i:02d}", "source": "s", "source_file": "f.jsonl", "source_line": i + 1,
             "prompt": f"Prompt {i}", "chosen": f"good answer {i}", "rejected": f"bad answer {i}", "meta": None,
             "cluster_id": i} for i in range(n)]
    return pa.RecordBatch.from_pylist(rows, schema=kind.schema(schemas.CLUSTER_ID))


def make(dataset: str, kind: str, work, **cfg) -> AnnotateStage:
    return AnnotateStage(Config(**cfg), StageContext(dataset=dataset, config_dir=work, work_dir=work, kind=KINDS[kind]))


def run(stage: AnnotateStage, inp: TableInput) -> tuple[pa.Table, pa.Table | None]:
    kept, rejected = [], []
    for o in stage.run(inp):
        if o.kept is not None:
            kept.append(o.kept)
        if o.rejected is not None:
            rejected.append(o.rejected)
    return pa.Table.from_batches(kept), (pa.Table.from_batches(rejected) if rejected else None)


def post(url: str, token: str, task_id: int, result: list[dict]) -> int:
    r = httpx.post(f"{url}/api/tasks/{task_id}/annotations/", headers={"Authorization": f"Token {token}"},
                   json={"result": result, "was_cancelled": False, "lead_time": 2.0}, timeout=30)
    assert r.status_code == 201, r.text[:300]
    return r.json()["id"]


def rating(value, flags=()) -> list[dict]:
    out = [{"from_name": "rating", "to_name": "response", "type": "rating", "value": {"rating": value}}]
    if flags:
        out.append({"from_name": "flags", "to_name": "response", "type": "choices", "value": {"choices": list(flags)}})
    return out


def edit(text: str) -> list[dict]:
    return [{"from_name": "edited", "to_name": "response", "type": "textarea", "value": {"text": [text]}}]


def pick(choice: str) -> list[dict]:
    return [{"from_name": "preference", "to_name": "response_a", "type": "choices", "value": {"choices": [choice]}}]


# Two annotators' ratings of five responses; the figures below are worked out by hand in
# tests/test_review_agreement.py (ordinal alpha 0.907692, interval alpha 0.916667, weighted kappa 0.909091).
A = [1, 2, 3, 4, 5]
B = [1, 3, 3, 5, 5]


def test_rate_push_twice_pull_after_restart_agreement_and_aside(server, tmp_path):
    tok_a, tok_b, tok_c = (signup(server.url, f"rater.{x}@example.com") for x in "abc")
    inp = TableInput(generation_rows("rate", 5))
    cfg = dict(mode="rate", select="all", annotators_per_task=2,
               responses={"min_rating": 3, "flags": ["refusal", "harmful"], "flag_share": 0.5})
    with pytest.raises(PipelinePaused, match="^5 tasks awaiting review at"):
        run(make("rate-test", "generation", tmp_path / "p1", **cfg), inp)
    again = make("rate-test", "generation", tmp_path / "p2", **cfg)
    with pytest.raises(PipelinePaused, match="^5 tasks awaiting review"):
        run(again, inp)
    assert again.stats["push"] == {"selected": 5, "already_in_project": 5, "imported": 0}
    assert again.stats["tasks_in_project"] == 5 and again.stats["duplicate_tasks"] == 0
    pid = again.stats["project_id"]
    by_row = tasks_by_row(server, pid)
    rows = sorted(by_row)
    # What the annotator is shown: the conversation with roles, the response as plain text.
    task = server.client().sdk.tasks.get(id=by_row[rows[1]])
    assert task.data["context"] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Question 1: what is 1 + 1? <b>bold?</b>"}]
    assert task.data["response"] == "It is 2.\n    indented"

    for i, rid in enumerate(rows):
        post(server.url, tok_a, by_row[rid], rating(A[i], ["refusal"] if i == 3 else ()))
        post(server.url, tok_b, by_row[rid], rating(B[i], ["refusal", "harmful"] if i == 3 else ()))
    # From a labelling config edited in the UI: out of range, an unknown flag, no rating → kept aside.
    post(server.url, tok_c, by_row[rows[2]], rating(7))
    post(server.url, tok_c, by_row[rows[4]], rating(4, ["toxic"]))
    post(server.url, tok_c, by_row[rows[0]], [])

    work = tmp_path / "w1"
    stage = make("rate-test", "generation", work, **cfg)
    fp = stage.fingerprint_inputs()
    kept, rejected = run(stage, inp)
    st = stage.stats
    assert st["coverage"] == 1.0 and st["annotations"] == 10 and st["annotations_aside"] == 3
    ag = st["agreement"]
    assert ag["krippendorff_alpha"] == pytest.approx(0.907692, abs=1e-6)  # ordinal
    assert ag["krippendorff_alpha_interval"] == pytest.approx(0.916667, abs=1e-6)
    assert ag["weighted_kappa"][0]["kappa"] == pytest.approx(10 / 11, abs=1e-6)
    assert ag["annotator_bias"]["rater.a@example.com"]["bias"] == pytest.approx(-0.2)
    assert ag["annotator_bias"]["rater.b@example.com"]["bias"] == pytest.approx(0.2)

    # Rows 0 and 1 rate below 3 (medians 1 and 2.5), row 3 both flag refusal; rows 2 and 4 are kept.
    assert sorted(kept.column("id").to_pylist()) == [rows[2], rows[4]]
    rej = rejected.to_pandas().set_index("id")
    assert rej.loc[rows[0], "reason"] == "low_rating" and rej.loc[rows[1], "reason"] == "low_rating"
    assert rej.loc[rows[3], "reason"] == "flagged_refusal"
    d1 = json.loads(rej.loc[rows[1], "details"])
    assert d1["rating"] == 2.5 and d1["ratings"] == [2.0, 3.0] and d1["support"] == 0.5 and d1["min_rating"] == 3
    assert json.loads(rej.loc[rows[3], "details"])["flags"] == {"refusal": 2, "harmful": 1}
    assert json.loads(rej.loc[rows[3], "record"])["completion"] == "It is 6.\n    indented"
    meta = json.loads(kept.to_pandas().set_index("id").loc[rows[4], "meta"])
    assert meta["origin"] == "test" and meta["review"]["rating"] == 5.0 and meta["review"]["n"] == 2
    assert set(kept.column("label_source").to_pylist()) == {"annotation"}
    assert st["response_review"]["rejected"] == {"low_rating": 2, "flagged_refusal": 1} and st["response_review"]["kept"] == 2

    aside = pq.read_table(work / "annotations_aside.parquet").to_pandas().set_index("row_id")
    assert "rating out of range 1..5: 7" in aside.loc[rows[2], "reason"]
    assert aside.loc[rows[4], "reason"] == "flag not in the configured set: toxic"
    assert aside.loc[rows[0], "reason"] == "no rating in the annotation"
    labels = pq.read_table(work / "labels.parquet").to_pandas()
    summary = stage.summarize()
    assert summary.mode == "rate" and summary.agreement.level == "ordinal"
    assert summary.agreement.krippendorff_alpha == pytest.approx(0.907692, abs=1e-6)

    # The server restarted: the same project, the same result, the same fingerprint.
    server.stop()
    server.start()
    after = make("rate-test", "generation", tmp_path / "w2", **cfg)
    assert after.fingerprint_inputs() == fp
    kept2, rejected2 = run(after, inp)
    assert after.stats["project_id"] == pid and after.stats["tasks_in_project"] == 5
    assert kept2.equals(kept) and rejected2.equals(rejected)
    pd.testing.assert_frame_equal(pq.read_table(tmp_path / "w2" / "labels.parquet").to_pandas(), labels)


def test_rate_chat_turn_by_turn(server, tmp_path):
    tok = signup(server.url, "rater.chat@example.com")
    inp = TableInput(chat_rows("chatrate", 2))
    cfg = dict(mode="rate", select="all", responses={"min_rating": 3})
    with pytest.raises(PipelinePaused, match="^2 tasks awaiting review"):
        run(make("chat-rate-test", "chat", tmp_path / "p", **cfg), inp)
    pid = make("chat-rate-test", "chat", tmp_path / "x", **cfg).project(create=False)
    by_row = tasks_by_row(server, pid)
    task = server.client().sdk.tasks.get(id=by_row["chatrate-00"])
    assert [t["role"] for t in task.data["context"]] == ["system", "user", "assistant", "user"]
    assert task.data["response"] == "Joke number 0"
    post(server.url, tok, by_row["chatrate-00"], rating(2, ["incomplete"]))
    post(server.url, tok, by_row["chatrate-01"], rating(4))
    stage = make("chat-rate-test", "chat", tmp_path / "w", **cfg)
    kept, rejected = run(stage, inp)
    assert kept.column("id").to_pylist() == ["chatrate-01"]
    assert rejected.column("reason").to_pylist() == ["low_rating"]
    assert kept.column("messages").to_pylist() == inp.table.slice(1).column("messages").to_pylist()


def test_edit_becomes_the_response_original_in_lineage(server, tmp_path):
    tok_a, tok_b = (signup(server.url, f"editor.{x}@example.com") for x in "ab")
    inp = TableInput(generation_rows("edit", 3))
    cfg = dict(mode="edit", select="all", annotators_per_task=2)
    with pytest.raises(PipelinePaused, match="^3 tasks awaiting review"):
        run(make("edit-test", "generation", tmp_path / "p", **cfg), inp)
    pid = make("edit-test", "generation", tmp_path / "x", **cfg).project(create=False)
    by_row = tasks_by_row(server, pid)
    rows = sorted(by_row)
    # The response is prefilled in the text area (a pre-annotation of the task).
    preds = httpx.get(f"{server.url}/api/predictions/", params={"task": by_row[rows[0]]},
                      headers={"Authorization": f"Token {server.api_key}"}, timeout=30).json()
    assert preds[0]["result"][0]["value"]["text"] == ["It is 0.\n    indented"]
    post(server.url, tok_a, by_row[rows[0]], edit("It is 0 (zero)."))  # a edits, b leaves it: the edit wins
    post(server.url, tok_b, by_row[rows[0]], edit("It is 0.\n    indented"))
    post(server.url, tok_a, by_row[rows[1]], edit("It is 2.\n    indented"))  # nobody edits
    post(server.url, tok_b, by_row[rows[1]], [])  # the text area left out: the response as it is
    post(server.url, tok_a, by_row[rows[2]], edit("Four."))  # two different edits: a tie → the earlier one
    post(server.url, tok_b, by_row[rows[2]], edit("It is four."))
    stage = make("edit-test", "generation", tmp_path / "w", **cfg)
    kept, rejected = run(stage, inp)
    assert rejected is None
    got = kept.to_pandas().set_index("id")
    assert got.loc[rows[0], "completion"] == "It is 0 (zero)."
    assert got.loc[rows[1], "completion"] == "It is 2.\n    indented"
    assert got.loc[rows[2], "completion"] == "Four."
    m0, m1 = json.loads(got.loc[rows[0], "meta"])["review"], json.loads(got.loc[rows[1], "meta"])["review"]
    assert m0["original"] == "It is 0.\n    indented" and m0["annotator"] == "editor.a@example.com" and m0["edited"]
    assert "original" not in m1 and not m1["edited"]
    assert stage.stats["changed_from_source"] == 2 and stage.stats["response_review"]["rows_with_differing_edits"] == 2
    ann = pq.read_table(tmp_path / "w" / "annotations.parquet").to_pandas()
    assert len(ann) == 6 and "It is four." in ann["edited"].tolist()  # the edit not chosen is kept


def test_edit_chat_replaces_the_last_assistant_turn(server, tmp_path):
    tok = signup(server.url, "editor.chat@example.com")
    inp = TableInput(chat_rows("chatedit", 1))
    cfg = dict(mode="edit", select="all")
    with pytest.raises(PipelinePaused):
        run(make("chat-edit-test", "chat", tmp_path / "p", **cfg), inp)
    pid = make("chat-edit-test", "chat", tmp_path / "x", **cfg).project(create=False)
    (tid,) = tasks_by_row(server, pid).values()
    post(server.url, tok, tid, edit("A better joke"))
    kept, _ = run(make("chat-edit-test", "chat", tmp_path / "w", **cfg), inp)
    msgs = kept.column("messages").to_pylist()[0]
    assert [m["content"] for m in msgs] == ["You are kind.", "Hi 0", "Hello!", "Tell a joke", "A better joke"]
    assert json.loads(kept.column("meta").to_pylist()[0])["review"]["original"] == "Joke number 0"


def test_compare_majority_ties_listed_fleiss_kappa(server, tmp_path):
    toks = [signup(server.url, f"judge.{x}@example.com") for x in "abc"]
    inp = TableInput(preference_rows("cmp", 4))
    cfg = dict(mode="compare", select="all", annotators_per_task=3)
    with pytest.raises(PipelinePaused, match="^4 tasks awaiting review"):
        run(make("compare-test", "preference", tmp_path / "p", **cfg), inp)
    pid = make("compare-test", "preference", tmp_path / "x", **cfg).project(create=False)
    by_row = tasks_by_row(server, pid)
    rows = sorted(by_row)
    task = server.client().sdk.tasks.get(id=by_row[rows[0]])
    shown = {task.data["response_a"], task.data["response_b"]}
    assert shown == {"good answer 0", "bad answer 0"}

    def letter(rid, which):  # the side the source's chosen / rejected response was shown on
        if which == "tie":
            return "tie"
        return "A" if (which == "chosen") == a_is_chosen(rid) else "B"

    votes = [["chosen", "chosen", "rejected"], ["rejected", "rejected", "tie"], ["chosen", "rejected", "tie"],
             ["tie", "tie", "chosen"]]
    for rid, vs in zip(rows, votes):
        for tok, v in zip(toks, vs):
            post(server.url, tok, by_row[rid], pick(letter(rid, v)))
    stage = make("compare-test", "preference", tmp_path / "w", **cfg)
    kept, rejected = run(stage, inp)
    got = kept.to_pandas().set_index("id")
    assert sorted(got.index) == [rows[0], rows[1]]
    assert got.loc[rows[0], "chosen"] == "good answer 0" and got.loc[rows[0], "rejected"] == "bad answer 0"
    assert got.loc[rows[1], "chosen"] == "bad answer 1" and got.loc[rows[1], "rejected"] == "good answer 1"  # swapped
    assert sorted(rejected.column("id").to_pylist()) == [rows[2], rows[3]]
    assert set(rejected.column("reason").to_pylist()) == {"preference_tie"}
    assert stage.stats["response_review"]["tie_rows"] == [rows[2], rows[3]] and stage.stats["response_review"]["swapped"] == 1
    # Fleiss' kappa by hand: P̄ = (1/3 + 1/3 + 0 + 1/3) / 4 = 0.25; each value 4 of 12 votes → P_e = 1/3;
    # kappa = (0.25 − 1/3) / (1 − 1/3) = −0.125.
    assert stage.stats["agreement"]["fleiss_kappa"] == pytest.approx(-0.125, abs=1e-6)


# -- in a real browser: the conversation turn by turn, markup shown as text, nothing of it run ---------------


@pytest.mark.skipif(chromium_path() is None,
                    reason="Chromium not installed (apt-get install -y chromium)")
def test_rating_screen_in_a_real_browser(server, tmp_path):
    """Also the README's screenshot: SFTPIPE_SCREENSHOT=docs/review_rate.png pytest -k rating_screen."""
    import base64
    import os
    import time

    kind = KINDS["chat"]
    row = {"id": "screen-00", "source": "alpaca", "source_file": "alpaca_en_demo.json", "source_line": 1,
           "messages": [{"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": 'Write HTML that shows <b>bold</b> text. <img src=x onerror="window.__pwned=1">'},
                        {"role": "assistant", "content": "Use the b element:\n\n```html\n<p>\n    <b>bold</b>\n</p>\n```"}],
           "tools": None, "meta": None, "cluster_id": 0}
    inp = TableInput(pa.RecordBatch.from_pylist([row], schema=kind.schema(schemas.CLUSTER_ID)))
    cfg = dict(mode="rate", select="all", instructions="Rate the last answer from 1 (unusable) to 5 (excellent).")
    stage = make("screen-test", "chat", tmp_path / "p", **cfg)
    with pytest.raises(PipelinePaused):
        run(stage, inp)
    pid = stage.stats["project_id"]
    (tid,) = tasks_by_row(server, pid).values()
    with open_task(server, pid, tid, tmp_path, lambda body: "Submit" in body and "<b>bold</b>" in body
                   and "factually_wrong" in body) as (cdp, body):
        assert 'Write HTML that shows <b>bold</b> text. <img src=x onerror="window.__pwned=1">' in body, body[:1500]
        assert "```html\n<p>\n    <b>bold</b>\n</p>\n```" in body  # the response as text, line breaks and indentation kept
        for role in ("system", "user"):
            assert role in body  # the turns with their roles (Paragraphs, dialogue layout)
        assert "factually_wrong" in body and "refusal" in body  # the flags
        ran = cdp.send("Runtime.evaluate", expression="typeof window.__pwned", returnByValue=True)
        assert ran["result"]["value"] == "undefined"
        time.sleep(1)
        shot = base64.b64decode(cdp.send("Page.captureScreenshot", format="png")["data"])
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
        target = os.environ.get("SFTPIPE_SCREENSHOT")
        if target:
            from pathlib import Path

            Path(target).write_bytes(shot)


@pytest.mark.skipif(chromium_path() is None,
                    reason="Chromium not installed (apt-get install -y chromium)")
def test_edit_screen_is_prefilled_in_a_real_browser(server, tmp_path):
    inp = TableInput(generation_rows("editscreen", 1))
    cfg = dict(mode="edit", select="all", annotators_per_task=2)  # two people: pre-annotations still shown
    stage = make("edit-screen-test", "generation", tmp_path / "p", **cfg)
    with pytest.raises(PipelinePaused):
        run(stage, inp)
    pid = stage.stats["project_id"]
    (tid,) = tasks_by_row(server, pid).values()
    with open_task(server, pid, tid, tmp_path, lambda body: "Submit" in body and "Corrected response" in body) as (cdp, body):
        # The response as the text area's text, which the annotator edits in place (Label Studio shows a TextArea's
        # text under its input box, editable), from the pre-annotation of model version original-response.
        assert "Corrected response (edit the text; submit unchanged if it is right)\n\nIt is 0.\n    indented" in body
