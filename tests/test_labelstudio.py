"""Annotation against a real Label Studio server started by the suite (no mocks).

The first use builds a migrated data folder once (~1 min) and keeps it outside the repo
(`$SFTPIPE_LS_TEMPLATE`, default ~/.cache/sftpipe/ls-template-<version>); each session copies it, so a
session pays only the server's start-up (seconds). Label Studio itself comes from its own virtualenv
(`$SFTPIPE_LABELSTUDIO_VENV`, installed on first use). Simulated annotators sign up like people do and post
annotations with their own API tokens.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
from contextlib import contextmanager
import struct
import subprocess
import urllib.parse
import socket
import stat
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipeline import labelstudio as lsmod
from pipeline.labelstudio import server as srv
from pipeline.errors import PipelinePaused, UserError
from pipeline.stage import StageContext
from stages.annotate import AnnotateStage, Config, label_config

from .conftest import TableInput, annotate_run_config, chromium_path, sftpipe

pytestmark = [
    pytest.mark.labelstudio,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:label_studio_sdk.*"),  # the SDK's own pydantic v1 calls
]

LS_VERSION = srv.LABEL_STUDIO_SPEC.split("==")[-1]
TEMPLATE = Path(os.environ.get("SFTPIPE_LS_TEMPLATE") or Path.home() / ".cache" / "sftpipe" / f"ls-template-{LS_VERSION}")
LABELS = ["ham", "spam"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_template() -> Path:
    """A migrated data folder with the admin user, built once per machine."""
    if (TEMPLATE / "label_studio.sqlite3").is_file() and (TEMPLATE / lsmod.CREDENTIALS_FILE).is_file():
        return TEMPLATE
    partial = TEMPLATE.with_name(TEMPLATE.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        srv.start(partial, port=free_port(), timeout_s=600)
    finally:
        srv.stop(partial)
    for name in (srv.PID_FILE, srv.LOG_FILE):
        (partial / name).unlink(missing_ok=True)
    shutil.rmtree(TEMPLATE, ignore_errors=True)
    partial.rename(TEMPLATE)
    return TEMPLATE


class Server:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()

    def start(self):
        self.info = srv.start(self.data_dir, port=self.port, timeout_s=300)
        self.creds = json.loads((self.data_dir / lsmod.CREDENTIALS_FILE).read_text())
        self.url, self.api_key = self.creds["url"], self.creds["api_key"]
        return self

    def stop(self):
        srv.stop(self.data_dir)

    def client(self, **kw) -> lsmod.LabelStudioClient:
        return lsmod.LabelStudioClient(lsmod.Credentials(self.url, self.api_key, "test"), **kw)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("ls") / "labelstudio") as s:
        yield s


@contextmanager
def running_server(data_dir: Path):
    """A Label Studio started from the migrated template in `data_dir`, found by the stage through the
    environment, stopped afterwards."""
    shutil.copytree(ensure_template(), data_dir)
    s = Server(data_dir).start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(lsmod.SERVER_DIR_ENV, str(data_dir))  # the stage finds the server's credentials file here
        env.delenv(lsmod.URL_ENV, raising=False)
        env.delenv(lsmod.API_KEY_ENV, raising=False)
        try:
            yield s
        finally:
            s.stop()


def signup(url: str, email: str, password: str = "annotator-pass-123") -> str:
    """A simulated annotator: signs up through Label Studio's own form and returns their API token."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as c:
        c.get("/user/signup/")
        r = c.post("/user/signup/", data={"email": email, "password": password, "csrfmiddlewaretoken": c.cookies["csrftoken"]},
                   headers={"Referer": f"{url}/user/signup/"})
        if r.status_code != 302:  # already signed up (a second test session on the same template): log in
            c.cookies.clear()
            c.get("/user/login/")
            r = c.post("/user/login/", data={"email": email, "password": password, "csrfmiddlewaretoken": c.cookies["csrftoken"]},
                       headers={"Referer": f"{url}/user/login/"})
        assert r.status_code == 302, r.text[:300]
        return c.get("/api/current-user/token").json()["token"]


def annotate_as(url: str, token: str, task_id: int, choices: list[str], lead_time: float = 1.5, cancelled: bool = False):
    r = httpx.post(
        f"{url}/api/tasks/{task_id}/annotations/",
        headers={"Authorization": f"Token {token}"},
        json={"result": [] if cancelled else [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": choices}}],
              "was_cancelled": cancelled, "lead_time": lead_time},
        timeout=30,
    )
    assert r.status_code == 201, r.text[:300]


def rows_batch(n: int, dataset_prefix: str, labelled: bool = True, texts: dict[int, str] | None = None) -> pa.RecordBatch:
    rows = [
        {"id": f"{dataset_prefix}-{i:03d}", "source": "sms", "source_file": "f.tsv", "source_line": i + 1,
         "text": (texts or {}).get(i, f"message number {i}"), "label": ("ham" if i % 3 else "spam") if labelled else None,
         "meta": None, "cluster_id": i}
        for i in range(n)
    ]
    return pa.RecordBatch.from_pylist(rows, schema=schemas.DEDUPED)


def make_stage(dataset: str, work: Path, **cfg) -> AnnotateStage:
    config = Config(**cfg)
    return AnnotateStage(config, StageContext(dataset=dataset, config_dir=work, work_dir=work, labels=LABELS))


def run_stage(stage: AnnotateStage, inp: TableInput) -> pa.Table:
    return pa.Table.from_batches([o.kept for o in stage.run(inp) if o.kept is not None])


def tasks_by_row(server: Server, pid: int) -> dict[str, int]:
    return {t["data"]["row_id"]: t["id"] for t in server.client().tasks(pid)}


# -- the server ------------------------------------------------------------------------------------------------


def test_server_status_credentials_and_taken_port(server, tmp_path):
    info = srv.status(server.data_dir)
    assert info.running and info.healthy and info.url == server.url
    cred = server.data_dir / lsmod.CREDENTIALS_FILE
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    assert server.api_key not in (server.data_dir / srv.PID_FILE).read_text()
    assert server.api_key not in (server.data_dir / srv.LOG_FILE).read_text(errors="replace")
    # A second server on a taken port is refused with a message that says so.
    with pytest.raises(UserError, match=rf"port {server.port} .*already in use"):
        srv.start(tmp_path / "other", port=server.port, timeout_s=5)
    assert server.client().whoami()["email"] == srv.ADMIN_EMAIL


# -- connection faults and tokens ------------------------------------------------------------------------------


def test_server_down_is_one_clear_line():
    url = f"http://127.0.0.1:{free_port()}"
    client = lsmod.LabelStudioClient(lsmod.Credentials(url, "secret-token-value-123", "test"), retries=2, backoff_s=0.05)
    start = time.monotonic()
    with pytest.raises(lsmod.LabelStudioUnreachable) as err:
        client.whoami()
    msg = str(err.value)
    assert url in msg and "not reachable after 3 attempts" in msg
    assert "\n" not in msg and "secret-token-value-123" not in msg
    assert time.monotonic() - start < 10


def test_wrong_token_is_said_so(server):
    bad = "0" * 40
    client = lsmod.LabelStudioClient(lsmod.Credentials(server.url, bad, "$LABEL_STUDIO_API_KEY"))
    with pytest.raises(lsmod.LabelStudioAuthError) as err:
        client.whoami()
    msg = str(err.value)
    assert "rejected the API token" in msg and server.url in msg and "$LABEL_STUDIO_API_KEY" in msg
    assert bad not in msg and bad not in repr(client) and bad not in repr(client.credentials)


def test_personal_access_token_works(server):
    pat = server.client().sdk.tokens.create().token  # a JWT refresh token
    client = lsmod.LabelStudioClient(lsmod.Credentials(server.url, pat, "PAT"))
    assert client.whoami()["email"] == srv.ADMIN_EMAIL  # the SDK exchanged it for an access token
    # A JWT that is not one of this server's (same shape, wrong signature) is refused, and said so.
    forged = pat[: pat.rindex(".") + 1] + ("A" * 43)
    with pytest.raises(lsmod.LabelStudioAuthError, match="rejected the API token") as err:
        lsmod.LabelStudioClient(lsmod.Credentials(server.url, forged, "PAT")).whoami()
    assert forged not in str(err.value) and pat not in str(err.value)


# -- push --------------------------------------------------------------------------------------------------------


def test_push_twice_same_tasks_and_interrupted_push_completes(server, tmp_path):
    inp = TableInput(rows_batch(30, "push", labelled=False))
    stage = make_stage("push-test", tmp_path, select="unlabelled")
    with pytest.raises(PipelinePaused, match=r"^30 tasks awaiting annotation at http://127\.0\.0\.1:\d+/projects/\d+/data"):
        run_stage(stage, inp)
    pid = stage.stats["project_id"]
    assert stage.stats["push"]["imported"] == 30

    again = make_stage("push-test", tmp_path, select="unlabelled")
    with pytest.raises(PipelinePaused):
        run_stage(again, inp)
    assert again.stats["project_id"] == pid  # found again, not a second project
    assert again.stats["push"] == {"selected": 30, "already_in_project": 30, "imported": 0}
    assert len(tasks_by_row(server, pid)) == 30

    # An interrupted push: only part of a larger selection made it; the next push adds exactly the rest.
    bigger = TableInput(rows_batch(45, "push", labelled=False))
    partial = make_stage("push-test", tmp_path, select="unlabelled", push_batch_size=7)
    partial_rows = pd.DataFrame(bigger.table.to_pylist()).iloc[:37]
    partial.push(pid, partial_rows)
    assert len(tasks_by_row(server, pid)) == 37
    resumed = make_stage("push-test", tmp_path, select="unlabelled", push_batch_size=7)
    with pytest.raises(PipelinePaused, match="^45 tasks awaiting"):
        run_stage(resumed, bigger)
    assert resumed.stats["push"]["imported"] == 8
    by_row = tasks_by_row(server, pid)
    assert len(server.client().tasks(pid)) == 45 == len(by_row)
    assert resumed.stats["duplicate_tasks"] == 0


def test_html_is_shown_as_text(server, tmp_path):
    script = 'Win <script>alert("x")</script> & <b>prizes</b>'
    cfg_xml = label_config(["ham", "sp&m <x>"], "single", instructions='Pick one. <script>alert(1)</script> "quoted"')
    root = ET.fromstring(cfg_xml)  # well-formed: every value escaped
    assert root.find("Header").get("value") == 'Pick one. <script>alert(1)</script> "quoted"'
    assert [c.get("value") for c in root.iter("Choice")] == ["ham", "sp&m <x>"]
    assert root.find("Text") is not None and root.find("HyperText") is None  # shown as text, not HTML
    stage = make_stage("html-test", tmp_path, select="all", instructions="Label <script>x</script> carefully")
    with pytest.raises(PipelinePaused):
        run_stage(stage, TableInput(rows_batch(3, "html", texts={0: script})))
    pid = stage.stats["project_id"]
    project = server.client().get_project(pid)
    assert "<script>" not in project.expert_instruction and "&lt;script&gt;" in project.expert_instruction
    assert "<HyperText" not in project.label_config
    task = [t for t in server.client().tasks(pid) if t["data"]["row_id"] == "html-000"][0]
    assert task["data"]["text"] == script  # stored verbatim, rendered by the Text tag as text


# -- pull, aggregation, agreement ------------------------------------------------------------------------------

# Two annotators on ten rows. A: h h h h h h s s s s; B agrees except on rows 5 and 9.
#   observed agreement 8/10 = 0.8; marginals A: 6 h / 4 s, B: 6 h / 4 s → chance 0.6² + 0.4² = 0.52
#   Cohen's kappa = (0.8 − 0.52) / (1 − 0.52) = 0.583333
#   Fleiss (2 raters, pooled p_h = 12/20): P̄ = 0.8, P_e = 0.52 → 0.583333
#   Krippendorff's alpha (nominal): coincidences o_hh = 10, o_ss = 6, o_hs = o_sh = 2; n_h = 12, n_s = 8, n = 20
#   alpha = 1 − (n − 1)·(o_hs + o_sh) / (n_h·n_s + n_s·n_h) = 1 − 19·4 / 192 = 0.604167
A = "hhhhhhssss"
B = "hhhhhssssh"


def _pattern_ok():
    assert sum(a == b for a, b in zip(A, B)) == 8 and A.count("h") == 6 and B.count("h") == 6


def test_agreement_known_values_and_pull_after_restart(server, tmp_path):
    _pattern_ok()
    names = {"h": "ham", "s": "spam"}
    tok_a = signup(server.url, "annotator.a@example.com")
    tok_b = signup(server.url, "annotator.b@example.com")
    tok_c = signup(server.url, "annotator.c@example.com")
    inp = TableInput(rows_batch(10, "agree", labelled=True))
    stage = make_stage("agree-test", tmp_path / "w1", select="all", annotators_per_task=2)
    with pytest.raises(PipelinePaused, match="^10 tasks awaiting"):
        run_stage(stage, inp)
    pid = stage.stats["project_id"]
    by_row = tasks_by_row(server, pid)
    rows = sorted(by_row)
    for i, rid in enumerate(rows):
        annotate_as(server.url, tok_a, by_row[rid], [names[A[i]]], lead_time=2.0 + i)
        if i < 9:
            annotate_as(server.url, tok_b, by_row[rid], [names[B[i]]])
    # Half done: 9 of 10 rows have both annotations → still paused (min_coverage 1.0) ...
    partial = make_stage("agree-test", tmp_path / "w0", select="all", annotators_per_task=2)
    with pytest.raises(PipelinePaused, match="^1 tasks awaiting"):
        run_stage(partial, inp)
    annotate_as(server.url, tok_b, by_row[rows[9]], [names[B[9]]])
    # ... a skipped (cancelled) annotation is ignored; a choice outside the label set is kept aside.
    annotate_as(server.url, tok_c, by_row[rows[0]], [], cancelled=True)
    annotate_as(server.url, tok_c, by_row[rows[1]], ["eggs"])

    work = tmp_path / "w1"
    stage = make_stage("agree-test", work, select="all", annotators_per_task=2)
    fp_before = stage.fingerprint_inputs()
    out = run_stage(stage, inp)
    st = stage.stats
    assert st["coverage"] == 1.0 and st["annotations"] == 20 and st["annotations_aside"] == 1
    pair = st["agreement"]["cohen_kappa"]
    assert len(pair) == 1 and pair[0]["n"] == 10
    assert pair[0]["kappa"] == pytest.approx(0.583333, abs=1e-6)
    assert st["agreement"]["fleiss_kappa"] == pytest.approx(0.583333, abs=1e-6)
    assert st["agreement"]["krippendorff_alpha"] == pytest.approx(0.604167, abs=1e-6)
    assert st["unresolved"] == 2 and st["unresolved_rows"] == [rows[5], rows[9]]  # the ties, listed

    ann = pq.read_table(work / "annotations.parquet").to_pandas()
    assert len(ann) == 20 and set(ann["annotator"]) == {"annotator.a@example.com", "annotator.b@example.com"}
    assert ann.loc[(ann["row_id"] == rows[3]) & (ann["annotator"] == "annotator.a@example.com"), "lead_time"].item() == 5.0
    assert ann["created_at"].notna().all() and ann["updated_at"].notna().all()
    aside = pq.read_table(work / "annotations_aside.parquet").to_pandas()
    assert aside[["row_id", "annotator"]].values.tolist() == [[rows[1], "annotator.c@example.com"]]
    assert "not in the label set: eggs" in aside["reason"].item()
    report = json.loads((work / "agreement.json").read_text())
    assert report["confusion"]["ham"]["spam"] == 2 and report["confusion"]["ham"]["ham"] == 5
    assert report["annotations_aside"][0]["labels"] == ["eggs"]

    # Rows: the human label where resolved, the source label kept where tied.
    got = out.to_pandas().set_index("id")
    src = {r["id"]: r["label"] for r in inp.table.to_pylist()}
    for i, rid in enumerate(rows):
        if i in (5, 9):
            assert got.loc[rid, "label"] == src[rid] and got.loc[rid, "label_source"] == "source"
        else:
            assert got.loc[rid, "label"] == names[A[i]] and got.loc[rid, "label_source"] == "annotation"
    labels_first = pq.read_table(work / "labels.parquet").to_pandas()

    # Unchanged annotations → unchanged fingerprint; the server restarted → the same result.
    server.stop()
    with pytest.raises(lsmod.LabelStudioUnreachable, match=rf"Label Studio at {server.url} is not reachable"):
        make_stage("agree-test", tmp_path / "down", select="all").fingerprint_inputs()
    server.start()
    again = make_stage("agree-test", tmp_path / "w2", select="all", annotators_per_task=2)
    assert again.fingerprint_inputs() == fp_before
    out2 = run_stage(again, inp)
    assert again.stats["project_id"] == pid
    assert out2.equals(out)
    pd.testing.assert_frame_equal(pq.read_table(tmp_path / "w2" / "labels.parquet").to_pandas(), labels_first)
    assert again.stats["agreement"] == st["agreement"]

    # Dawid–Skene on the same annotations: every row gets a label, with its posterior as support.
    ds = make_stage("agree-test", tmp_path / "w3", select="all", annotators_per_task=2, aggregation="dawid_skene")
    run_stage(ds, inp)
    assert ds.stats["unresolved"] == 0 and ds.stats["labelled_rows"] == 10
    assert set(ds.stats["annotator_accuracy"]) == {"annotator.a@example.com", "annotator.b@example.com"}
    # A new annotation changes the fingerprint, so the next run pulls again.
    annotate_as(server.url, tok_c, by_row[rows[2]], ["ham"])
    assert make_stage("agree-test", tmp_path / "w4", select="all").fingerprint_inputs() != fp_before


def test_sample_selection_is_stable_and_stratified(tmp_path):
    from stages.annotate import select_rows

    rows = pd.DataFrame(rows_batch(90, "s").to_pylist())
    cfg = Config(select="sample", sample_size=30, stratify=True, seed=3)
    a = select_rows(rows, cfg)
    b = select_rows(rows.sample(frac=1, random_state=1), cfg)
    assert a["id"].tolist() == b["id"].tolist()
    assert a["label"].value_counts().to_dict() == {"ham": 20, "spam": 10}
    assert len(select_rows(rows, Config(select="sample", sample_fraction=0.1))) == 9
    with pytest.raises(ValueError):
        Config(select="sample")
    with pytest.raises(ValueError):
        Config(select="all", sample_size=3)


def test_flagged_rows_and_pre_annotations(server, tmp_path):
    inp = TableInput(rows_batch(12, "flag", labelled=True))
    (tmp_path / "flagged.txt").write_text("flag-001\nflag-004\nflag-007\nnot-in-data\n")
    pq.write_table(pa.table({"id": ["flag-004"], "label": ["spam"], "score": [0.83], "model_version": ["distilbert-v1"]}),
                   tmp_path / "preds.parquet")
    stage = make_stage("flag-test", tmp_path, select="flagged", flagged_file="flagged.txt", predictions_file="preds.parquet")
    fp = stage.fingerprint_inputs()
    with pytest.raises(PipelinePaused, match="^3 tasks awaiting"):
        run_stage(stage, inp)
    pid = stage.stats["project_id"]
    by_row = tasks_by_row(server, pid)
    assert sorted(by_row) == ["flag-001", "flag-004", "flag-007"]
    preds = {rid: server.client().sdk.predictions.list(task=tid) for rid, tid in by_row.items()}
    (p1,) = preds["flag-001"]  # the source label, as a prediction
    assert p1.model_version == "source-label" and p1.score == 1.0 and p1.result[0]["value"]["choices"] == ["ham"]
    (p4,) = preds["flag-004"]  # the model's prediction where the predictions file has one
    assert p4.model_version == "distilbert-v1" and p4.score == pytest.approx(0.83) and p4.result[0]["value"]["choices"] == ["spam"]
    # Editing a side file changes the stage's fingerprint.
    (tmp_path / "flagged.txt").write_text("flag-001\n")
    assert make_stage("flag-test", tmp_path, select="flagged", flagged_file="flagged.txt",
                      predictions_file="preds.parquet").fingerprint_inputs() != fp


def test_cli_annotate_status_and_pull(server, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    config = tmp_path / "cli.yaml"
    config.write_text(
        "dataset: cli-test\nlabels: [ham, spam]\n"
        "sources: [{name: sms, path: none.tsv, format: tsv, text_field: message, label_field: output}]\n"
        "annotate: {select: all, annotators_per_task: 2}\n"
    )
    stage = make_stage("cli-test", tmp_path / "w", select="all", annotators_per_task=2)
    with pytest.raises(PipelinePaused):
        run_stage(stage, TableInput(rows_batch(4, "cli")))
    by_row = tasks_by_row(server, stage.stats["project_id"])
    tok_a, tok_b = signup(server.url, "annotator.a@example.com"), signup(server.url, "annotator.b@example.com")
    for rid, tid in sorted(by_row.items())[:3]:
        annotate_as(server.url, tok_a, tid, ["spam"])
        annotate_as(server.url, tok_b, tid, ["spam"])
    runner = CliRunner()
    res = runner.invoke(app, ["annotate", "status", str(config)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "4 total, 3 done" in res.output and "1 remaining" in res.output
    assert "annotator.a@example.com" in res.output
    out = tmp_path / "pulled"
    res = runner.invoke(app, ["annotate", "pull", str(config), "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "6 annotation(s) of 3 row(s) by 2 annotator(s)" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["agreement.json", "annotations.parquet", "annotations_aside.parquet", "labels.parquet"]
    assert server.api_key not in res.output
    # The server's log: no "Invalid page" error (the tasks are read up to the total, not one page past it)
    # and every line once (Label Studio's `django` logger no longer propagates to the root's same handler).
    log = [l for l in (server.data_dir / srv.LOG_FILE).read_text(errors="replace").splitlines() if l.startswith("[")]
    assert any('"GET /api/tasks/' in l for l in log)
    assert not [l for l in log if "Invalid page" in l or " 404 " in l], "a request past the last page"
    # (Django's lines: Label Studio's own code may log one warning twice in the same millisecond.)
    django = [l for l in log if "] [django." in l]
    assert django and not [a for a, b in zip(django, django[1:]) if a == b], "a log line written twice"


# -- in a real browser: HTML in the text is shown, not run ----------------------------------------------------


class CDP:
    """Minimal Chrome DevTools Protocol client over a raw websocket (no extra dependency)."""

    def __init__(self, ws_url):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += self.sock.recv(4096)
        assert b" 101 " in resp.split(b"\r\n")[0], resp[:200]
        self.buf = resp.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("devtools closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _recv_frame(self):
        msg = b""
        while True:
            b1, b2 = self._recv_exact(2)
            n = b2 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            msg += self._recv_exact(n)
            if b1 & 0x80:
                return msg

    def send(self, method, **params):
        self.next_id += 1
        data = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            msg = json.loads(self._recv_frame())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg.get("result", {})

def start_browser(chromium: str, user_dir: Path) -> tuple[subprocess.Popen, int]:
    """Headless Chromium with the DevTools port it picked (read from its log file, so no pipe fills up)."""
    user_dir.mkdir(parents=True, exist_ok=True)
    log = user_dir / "chromium.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                 "--remote-debugging-port=0", f"--user-data-dir={user_dir}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.search(r"DevTools listening on ws://127.0.0.1:(\d+)/", log.read_text(errors="replace"))
        if m:
            return proc, int(m.group(1))
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"chromium did not start: {log.read_text(errors='replace')[-500:]}")


@contextmanager
def open_task(server, pid: int, tid: int, tmp_path, ready):
    """The task's labelling screen in headless Chromium, logged in as the admin: (devtools, page text) once
    `ready(page text)` holds (or after 90 s)."""
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as h:  # the admin's browser session
        h.get("/user/login/")
        r = h.post("/user/login/", data={"email": server.creds["username"], "password": server.creds["password"],
                                         "csrfmiddlewaretoken": h.cookies["csrftoken"]}, headers={"Referer": f"{server.url}/user/login/"})
        assert r.status_code == 302
        session = h.cookies["sessionid"]
    proc, port = start_browser(chromium_path(), tmp_path / "profile")
    try:
        page = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"][0]
        cdp = CDP(page["webSocketDebuggerUrl"])
        cdp.send("Network.enable")
        cdp.send("Network.setCookie", name="sessionid", value=session, url=server.url)
        cdp.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        cdp.send("Page.navigate", url=f"{server.url}/projects/{pid}/data?tab=0&task={tid}")
        body = ""
        for _ in range(90):
            time.sleep(1)
            body = cdp.send("Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True)["result"].get("value", "")
            if ready(body):
                break
        yield cdp, body
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(chromium_path() is None, reason="Chromium not installed (apt-get install -y chromium)")
def test_script_in_text_is_shown_not_run_in_the_labelling_ui(server, tmp_path):
    text = 'Win <script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> <b>now</b>'
    stage = make_stage("xss-test", tmp_path, select="all", instructions="Read <script>window.__pwned_i=1</script> this")
    with pytest.raises(PipelinePaused):
        run_stage(stage, TableInput(rows_batch(1, "xss", texts={0: text})))
    pid = stage.stats["project_id"]
    (tid,) = tasks_by_row(server, pid).values()
    ready = lambda body: "Submit" in body and "<script>window.__pwned=1</script>" in body  # noqa: E731
    with open_task(server, pid, tid, tmp_path, ready) as (cdp, body):
        assert "<script>window.__pwned=1</script>" in body, body[:1000]  # the markup is visible as text
        assert "Read <script>window.__pwned_i=1</script> this" in body  # the instructions too
        ran = cdp.send("Runtime.evaluate", expression="[typeof window.__pwned, typeof window.__pwned_i]", returnByValue=True)
        assert ran["result"]["value"] == ["undefined", "undefined"]  # and nothing of it ran


# -- the whole pipeline: run pauses, people label, run publishes ---------------------------------------------


def test_run_pauses_until_labelled_then_publishes(server, tmp_path):
    """The console script: a run that must wait for people exits 75 with the funnel so far and no stalled
    progress bar; once labelled, the next run publishes."""
    words = ["apple", "river", "stone", "cloud", "train", "paper", "light", "green", "music", "table", "horse", "glass"]
    lines = ["output\tmessage"]
    for i in range(24):
        w = [words[(i * 7 + k * 5) % len(words)] for k in range(6)]
        spam = i % 4 == 0
        lines.append(f"{'spam' if spam else 'ham'}\tmessage {i}: {' '.join(w)} {'call now to win a prize' if spam else 'see you at home tonight'}")
    config = annotate_run_config(tmp_path, "run-test", lines)
    data = tmp_path / "data"
    first = sftpipe("run", str(config), "--data-dir", str(data), cwd=tmp_path, timeout=300)
    out = first.stdout + first.stderr
    assert first.returncode == 75, out
    assert "4 tasks awaiting annotation at http://127.0.0.1" in out, out
    funnel = first.stdout[first.stdout.index("funnel so far"):]
    assert "collect" in funnel and "dedupe" in funnel and "annotate" not in funnel.split("paused")[0]
    assert "annotate" not in first.stderr, first.stderr  # the stalled annotate bar was removed
    assert "nothing published" in first.stdout and "(exit code 75: paused)" in first.stdout
    assert not (data / "versions" / "run-test").exists() or not list((data / "versions" / "run-test").glob("v*"))

    stage = make_stage("run-test", tmp_path / "w", select="sample", sample_size=4, seed=1, annotators_per_task=2)
    pid = stage.project(create=False)
    project = server.client().get_project(pid)
    # Two people per task: no pre-selected label (it would anchor them), no annotation history.
    assert project.show_collab_predictions is False and project.show_annotation_history is False
    assert project.maximum_annotations == 2
    by_row = tasks_by_row(server, pid)
    assert all(not server.client().sdk.predictions.list(task=tid) for tid in by_row.values())
    tok_a, tok_b = signup(server.url, "annotator.a@example.com"), signup(server.url, "annotator.b@example.com")
    for rid, tid in by_row.items():
        annotate_as(server.url, tok_a, tid, ["spam"])
        annotate_as(server.url, tok_b, tid, ["spam"])
    second = sftpipe("run", str(config), "--data-dir", str(data), cwd=tmp_path, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    (version,) = sorted((data / "versions" / "run-test").glob("v*"))
    manifest = json.loads((version / "manifest.json").read_text())
    assert server.api_key not in json.dumps(manifest)
    annotate_stats = [s for s in manifest["stages"] if s["name"] == "annotate"][0]["stats"]
    assert annotate_stats["coverage"] == 1.0 and annotate_stats["labelled_rows"] == 4
    rows = pd.concat([pq.read_table(version / f"{s}.parquet").to_pandas() for s in ("train", "validation", "test")])
    human = rows[rows["label_source"] == "annotation"]
    assert sorted(human["id"]) == sorted(by_row) and (human["label"] == "spam").all()
    labels = pq.read_table(version / "annotations" / "labels.parquet").to_pandas()
    assert annotate_stats["relabelled"] == int((labels["source_label"] != "spam").sum())  # people said spam to all 4
    assert (version / "annotations" / "annotations.parquet").is_file(), "the version stores the raw annotations"


def test_multiple_choice_and_stale_text(server, tmp_path):
    inp = TableInput(rows_batch(2, "multi", labelled=False))
    stage = make_stage("multi-test", tmp_path / "a", select="all", choice="multiple", annotators_per_task=1)
    with pytest.raises(PipelinePaused):
        run_stage(stage, inp)
    pid = stage.stats["project_id"]
    assert 'choice="multiple"' in server.client().get_project(pid).label_config
    by_row = tasks_by_row(server, pid)
    tok = signup(server.url, "annotator.a@example.com")
    annotate_as(server.url, tok, by_row["multi-000"], ["spam", "ham"])
    annotate_as(server.url, tok, by_row["multi-001"], ["spam"])
    # The row's text changed upstream since it was pushed: reported, not re-imported.
    changed = TableInput(rows_batch(2, "multi", labelled=False, texts={1: "an edited text"}))
    again = make_stage("multi-test", tmp_path / "b", select="all", choice="multiple", annotators_per_task=1)
    out = run_stage(again, changed).to_pandas().set_index("id")
    assert out.loc["multi-000", "label"] == "ham|spam" and out.loc["multi-001", "label"] == "spam"
    assert again.stats["stale_tasks"] == 1 and "multi-001" in again.stats["warnings"][0]
    assert len(tasks_by_row(server, pid)) == 2
    ann = pq.read_table(tmp_path / "b" / "annotations.parquet").to_pandas()
    assert ann.set_index("row_id").loc["multi-000", "labels"].tolist() == ["ham", "spam"]


def test_a_url_that_is_not_label_studio_is_one_clear_line(tmp_path):
    import http.server
    import threading

    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        client = lsmod.LabelStudioClient(lsmod.Credentials(url, "tok-123456", "test"), retries=1, backoff_s=0.01)
        with pytest.raises(lsmod.LabelStudioError) as err:
            client.whoami()
        msg = str(err.value)
        assert msg.startswith(f"Label Studio at {url}") and "\n" not in msg and "tok-123456" not in msg
    finally:
        httpd.shutdown()
        httpd.server_close()
