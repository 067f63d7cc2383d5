"""Label Studio misbehaving: 5xx answers, reset connections, silence, a server killed mid-push — and the
token never written anywhere.

Everything here is real: the misbehaving endpoint is an HTTP server on 127.0.0.1 in a thread (`Endpoint`),
which can also stand in front of the real Label Studio as a proxy that fails some requests and forwards
the others; the server is the suite's real Label Studio (its own instance, module-scoped, because these
tests kill it). The Label Studio helpers come from tests/test_labelstudio.py.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Callable

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import labelstudio as lsmod
from pipeline.labelstudio import server as srv
from pipeline.errors import PipelinePaused

from .conftest import TableInput, annotate_run_config
from .test_labelstudio import (Server, annotate_as, make_stage, rows_batch, run_stage,
                               running_server, signup, tasks_by_row)

pytestmark = [
    pytest.mark.labelstudio,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:label_studio_sdk.*"),
]

REPO = Path(__file__).resolve().parent.parent
TOKEN = "tok-3f9a1c77e2b54d0c8a61"  # a token for the endpoint tests: it must never come back to us
IMPORT = re.compile(r"^/api/projects/\d+/import")
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host", "accept-encoding"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Our own Label Studio from the migrated template (these tests kill and restart it)."""
    with running_server(tmp_path_factory.mktemp("ls-faults") / "labelstudio") as s:
        yield s


# -- a real misbehaving HTTP endpoint -------------------------------------------------------------------------


class Endpoint:
    """An HTTP/1.1 server on 127.0.0.1 in a thread. `policy(n, method, path)` decides each request's fate
    (n counts from 1): an int (answer with that status and a body that echoes the request's headers, token
    included, like a debug page would), "reset" (close with a TCP RST, nothing answered), "hang" (never
    answer), "forward" (pass it to `upstream` and back), "forward-reset" (pass it on, then lose the answer:
    the request took effect but the client cannot know), or a callable run on the handler."""

    def __init__(self, policy: Callable[[int, str, str], object], upstream: str | None = None):
        self.policy, self.upstream = policy, upstream
        self.seen: list[tuple[str, str, object]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)  # so the accept loop sees the stop flag
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.http = httpx.Client(base_url=upstream, timeout=120) if upstream else None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        with self._lock:
            for c in list(self._conns):
                _reset(c)
        if self.http:
            self.http.close()

    def count(self, method: str | None = None, path: re.Pattern | None = None) -> int:
        return sum(1 for m, p, _ in self.seen if (method is None or m == method) and (path is None or path.match(p)))

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket):
        try:
            conn.settimeout(30)
            f = conn.makefile("rb")
            while not self._stop.is_set():
                line = f.readline(65536)
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: list[tuple[str, str]] = []
                while (h := f.readline(65536)) not in (b"\r\n", b"\n", b""):
                    k, v = h.decode("latin-1").split(":", 1)
                    headers.append((k.strip(), v.strip()))
                size = int(next((v for k, v in headers if k.lower() == "content-length"), 0))
                body = f.read(size) if size else b""
                with self._lock:
                    n = len(self.seen) + 1
                    action = self.policy(n, method, target)
                    self.seen.append((method, target, action))
                if not self._act(conn, action, method, target, headers, body):
                    return
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            _reset(conn)

    def _act(self, conn, action, method, target, headers, body) -> bool:
        """Do it; return whether the connection stays open for the next request."""
        if callable(action):
            return action(self, conn, method, target, headers, body)
        if action == "reset":
            return False
        if action == "hang":
            self._stop.wait(60)  # bounded: the client's timeout ends it first
            return False
        if isinstance(action, int):
            echo = "; ".join(f"{k}: {v}" for k, v in sorted(headers, key=lambda h: h[0].lower() != "authorization"))
            page = json.dumps({"detail": f"Internal Server Error\n  request headers: {echo}\n  (debug page)"})
            _send(conn, action, {"Content-Type": "application/json"}, page.encode())
            return True
        status, resp_headers, content = self.forward(method, target, headers, body)
        if status is None or action == "forward-reset":
            return False
        _send(conn, status, resp_headers, content)
        return True

    def forward(self, method, target, headers, body):
        """Pass the request to the upstream server: (status, headers, body), or Nones when it is down."""
        try:
            r = self.http.request(method, target, content=body, headers=[(k, v) for k, v in headers if k.lower() not in HOP])
        except httpx.TransportError:
            return None, None, None
        return r.status_code, {k: v for k, v in r.headers.items() if k.lower() not in HOP}, r.content


def _send(conn: socket.socket, status: int, headers: dict, body: bytes):
    head = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()] + [f"Content-Length: {len(body)}", "", ""]
    conn.sendall("\r\n".join(head).encode("latin-1") + body)


def _reset(conn: socket.socket):
    """Close with a TCP RST (what a crashed server or a dropped connection looks like)."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def fast_client(url: str, token: str = TOKEN, **kw) -> tuple[lsmod.LabelStudioClient, list[float]]:
    """A client with short backoff that records its sleeps (and does sleep them)."""
    slept: list[float] = []

    def sleep(s: float):
        slept.append(s)
        time.sleep(s)

    kw = {"retries": 2, "backoff_s": 0.05, "timeout_s": 60, **kw}  # generous: a loaded machine is not a fault
    return lsmod.LabelStudioClient(lsmod.Credentials(url, token, "$LABEL_STUDIO_API_KEY"), sleep=sleep, **kw), slept


def assert_one_clean_line(msg: str, url: str, *secrets: str):
    assert msg.startswith(f"Label Studio at {url}"), msg
    assert "\n" not in msg and "\r" not in msg, msg
    for s in (TOKEN, *secrets):
        assert s not in msg, msg


# -- 1. the misbehaving endpoint: bounded retries with backoff, then one clear line -----------------------------


@pytest.mark.parametrize("fault", [500, 502, 503, "reset", "hang"])
def test_faulty_endpoint_is_retried_with_backoff_then_one_line(fault):
    with Endpoint(lambda n, m, p: fault) as ep:
        client, slept = fast_client(ep.url, timeout_s=0.5)
        start = time.monotonic()
        with pytest.raises(lsmod.LabelStudioUnreachable) as err:
            client.whoami()
        elapsed = time.monotonic() - start
        msg = str(err.value)
        assert_one_clean_line(msg, ep.url)
        assert "after 3 attempts" in msg and "who am I" in msg
        assert "Traceback" not in msg
        if isinstance(fault, int):  # the page's text, flattened, with the echoed token masked
            assert f"HTTP {fault}" in msg and "keeps failing" in msg and "Token ***" in msg
        elif fault == "hang":
            assert "Timeout" in msg
        assert ep.count() == 3  # bounded: 1 + 2 retries
        assert len(slept) == 2 and 0.03 < slept[0] < slept[1] < 0.2  # exponential backoff, with jitter
        assert elapsed < 6


def test_a_long_error_page_is_masked_before_it_is_cut():
    """A 5xx page of 5,000 characters with the token straddling the cut: one short line, no piece of it."""

    def page(ep, conn, method, path, headers, body):
        auth = next(v for k, v in headers if k.lower() == "authorization")  # "Token <token>"
        detail = "x" * (300 - len(auth) + 10) + auth + " " + "stack frame\n" * 400
        _send(conn, 503, {"Content-Type": "application/json"}, json.dumps({"detail": detail}).encode())
        return True

    with Endpoint(lambda n, m, p: page) as ep:
        client, _ = fast_client(ep.url, retries=0)
        with pytest.raises(lsmod.LabelStudioUnreachable) as err:
            client.users()
    msg = str(err.value)
    assert_one_clean_line(msg, ep.url)
    assert len(msg) < 500 and "HTTP 503" in msg
    assert not any(TOKEN[i : i + 6] in msg for i in range(len(TOKEN) - 5)), msg


def test_a_write_is_not_blindly_resent_but_a_refused_connection_is():
    """A 5xx or a dropped answer to an import may have been stored: the client does not resend it (the
    push re-reads the project instead). A connection that was never made is safe to retry."""
    with Endpoint(lambda n, m, p: 503) as ep:
        client, _ = fast_client(ep.url)
        with pytest.raises(lsmod.LabelStudioUnreachable) as err:
            client.import_tasks(1, [{"data": {"text": "x", "row_id": "r1"}}])
        assert_one_clean_line(str(err.value), ep.url)
        assert ep.count() == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: connection refused
        client, slept = fast_client(url)
        with pytest.raises(lsmod.LabelStudioUnreachable, match="not reachable after 3 attempts"):
            client.import_tasks(1, [{"data": {"text": "x", "row_id": "r1"}}])
        assert len(slept) == 2


def test_proxy_that_fails_first_requests_then_forwards_recovers_and_resends_safely(server, tmp_path):
    """In front of the real server: the first requests get 503 / 502 / a reset, and two imports are
    forwarded but their answers lost. The stage's push still ends with every row a task exactly once,
    and its pull equals one made directly."""
    faults = {1: 503, 2: "reset", 3: 502}
    imports = {"n": 0}

    def policy(n, method, path):
        if n in faults:
            return faults[n]
        if method == "POST" and IMPORT.match(path):
            imports["n"] += 1
            if imports["n"] in (1, 3):
                return "forward-reset"
        return "forward"

    inp = TableInput(rows_batch(60, "flaky", labelled=False))
    with Endpoint(policy, upstream=server.url) as ep:
        stage = make_stage("flaky-test", tmp_path, select="all", push_batch_size=20)
        stage._client, slept = fast_client(ep.url, server.api_key, retries=3)
        with pytest.raises(PipelinePaused, match="^60 tasks awaiting"):
            run_stage(stage, inp)
        assert len(slept) >= 3 and ep.count() > 10
        assert sum(1 for _, _, a in ep.seen if a == "forward-reset") == 2
    pid = stage.stats["project_id"]
    assert stage.stats["duplicate_tasks"] == 0 and stage.stats["tasks_in_project"] == 60
    tasks = server.client().tasks(pid)
    assert len(tasks) == 60 and sorted(t["data"]["row_id"] for t in tasks) == sorted(f"flaky-{i:03d}" for i in range(60))



def test_every_first_attempt_failing_still_gives_one_project_and_each_row_once(server, tmp_path):
    """Each read fails the first time it is made (503 or a reset) and every other write fails (alternately
    stored with its answer lost, or refused with a 503), yet one run goes through: a write is resent only after
    the server was asked whether it took effect — one project, each row one task, no snapshot left behind,
    and the annotations pulled through it equal those pulled directly."""

    def flaky():
        tries: dict[tuple[str, str], int] = {}

        def policy(n, method, path):
            tries[(method, path)] = c = tries.get((method, path), 0) + 1
            if method == "POST":  # every other write: stored with its answer lost, or refused
                return "forward" if c % 2 == 0 else "forward-reset" if c % 4 == 1 else 503
            return "forward" if c > 1 else 503 if n % 2 else "reset"  # each read, the first time it is made

        return Endpoint(policy, upstream=server.url)

    inp = TableInput(rows_batch(40, "every", labelled=False))
    with flaky() as ep:
        stage = make_stage("every-test", tmp_path / "a", select="all", push_batch_size=10)
        stage._client, _ = fast_client(ep.url, server.api_key, retries=2)
        with pytest.raises(PipelinePaused, match="^40 tasks awaiting"):
            run_stage(stage, inp)
        failed = [(m, p.split("?")[0], a) for m, p, a in ep.seen if a != "forward"]
    kinds = {(m, a) for m, _, a in failed}
    assert {("POST", "forward-reset"), ("POST", 503), ("GET", 503), ("GET", "reset")} <= kinds, failed
    assert {p for m, p, _ in failed if m == "DELETE"}, failed  # the snapshot's deletion too
    assert ("POST", "/api/projects/", "forward-reset") in failed  # the project was created, its answer lost
    pid = stage.stats["project_id"]
    assert len(server.client().projects_titled("sftpipe: every-test")) == 1
    assert stage.stats["push"] == {"selected": 40, "already_in_project": 0, "imported": 40}
    row_ids = [t["data"]["row_id"] for t in server.client().tasks(pid)]
    assert sorted(row_ids) == sorted(f"every-{i:03d}" for i in range(40))  # each row once
    assert server.client().sdk.projects.exports.list(id=pid) == []  # the pull's snapshots were deleted

    tok = signup(server.url, "annotator.a@example.com")
    for rid, tid in sorted(tasks_by_row(server, pid).items())[:5]:
        annotate_as(server.url, tok, tid, ["spam"])
    direct, _, _ = make_stage("every-test", tmp_path / "b", select="all").pull(pid)
    with flaky() as ep:
        again = make_stage("every-test", tmp_path / "c", select="all")
        again._client, _ = fast_client(ep.url, server.api_key, retries=2)
        pulled, _, _ = again.pull(pid)
    assert len(direct) == 5
    pd.testing.assert_frame_equal(pulled, direct)

# -- 2. the real server killed mid-push and restarted --------------------------------------------------------


def kill_server(server: Server):
    """SIGKILL the server's process group (the fixture started it in its own session), as a crash would."""
    pid = srv.status(server.data_dir).pid
    assert pid, "server not running"
    os.killpg(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                break
        except ChildProcessError:
            break
        time.sleep(0.05)
    srv.stop(server.data_dir)  # only clears the state file now


def test_server_killed_mid_push_then_restarted_nothing_twice_nothing_lost(server, tmp_path):
    # Annotations made before the crash ...
    small = TableInput(rows_batch(6, "crash", labelled=True))
    first = make_stage("crash-test", tmp_path / "a", select="all", push_batch_size=250)
    with pytest.raises(PipelinePaused, match="^6 tasks awaiting"):
        run_stage(first, small)
    pid = first.stats["project_id"]
    tok = signup(server.url, "annotator.a@example.com")
    for i, (rid, tid) in enumerate(sorted(tasks_by_row(server, pid).items())):
        annotate_as(server.url, tok, tid, ["spam" if i % 2 else "ham"])
    ann_before, _, _ = first.pull(pid)
    assert len(ann_before) == 6

    # ... then a push of 3,000 rows in batches of 250; the server is killed right after storing the 5th.
    big = TableInput(rows_batch(3000, "crash", labelled=True))
    stored = {"n": 0}

    def kill_after_fifth_import(ep, conn, method, path, headers, body):
        status, *_ = ep.forward(method, path, headers, body)
        assert status == 201
        kill_server(server)
        return False  # the answer is lost with the server

    def policy(n, method, path):
        if method == "POST" and IMPORT.match(path):
            stored["n"] += 1
            if stored["n"] == 5:
                return kill_after_fifth_import
        return "forward"

    with Endpoint(policy, upstream=server.url) as ep:
        push = make_stage("crash-test", tmp_path / "b", select="all", push_batch_size=250, prefill=False)
        push._client, _ = fast_client(ep.url, server.api_key, retries=2)
        with pytest.raises(lsmod.LabelStudioUnreachable) as err:
            run_stage(push, big)
        assert_one_clean_line(str(err.value), ep.url, server.api_key)
        assert "not reachable after 3 attempts" in str(err.value)
        assert ep.count("POST", IMPORT) == 5

    server.start()  # same data dir, same port
    # Pull after the restart: nothing lost.
    again = make_stage("crash-test", tmp_path / "c", select="all")
    ann_after, _, _ = again.pull(pid)
    cols = ["row_id", "annotation_id", "annotator", "label"]
    pd.testing.assert_frame_equal(ann_after[cols], ann_before[cols])
    # The 6 earlier rows + 5 batches of 250 are tasks (the killed batch was stored); pushed again, exactly the rest.
    assert len(server.client().tasks(pid)) == 6 + 5 * 250
    resumed = make_stage("crash-test", tmp_path / "d", select="all", push_batch_size=250, prefill=False)
    pushed = resumed.push(pid, pd.DataFrame(big.table.to_pylist()))  # the push alone: no 3,000-task export
    assert pushed == {"selected": 3000, "already_in_project": 1256, "imported": 1744}
    row_ids = [t["data"]["row_id"] for t in server.client().tasks(pid)]
    assert len(row_ids) == 3000 and len(set(row_ids)) == 3000  # every row exactly once
    assert set(row_ids) == {f"crash-{i:03d}" for i in range(3000)}



def test_annotator_text_that_looks_like_console_markup_is_printed_as_is(server, tmp_path):
    """A choice typed by an annotator (through the API, outside the label set) reads like a closing console
    tag: `annotate status` and `annotate pull` print it as it is instead of failing on it."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    config = tmp_path / "markup.yaml"
    config.write_text("dataset: markup-test\nlabels: [ham, spam]\n"
                      "sources: [{name: sms, path: none.tsv, format: tsv, text_field: message, label_field: output}]\n"
                      "annotate: {select: all}\n")
    stage = make_stage("markup-test", tmp_path / "w", select="all")
    with pytest.raises(PipelinePaused):
        run_stage(stage, TableInput(rows_batch(2, "markup")))
    by_row = tasks_by_row(server, stage.stats["project_id"])
    tok = signup(server.url, "annotator.a@example.com")
    annotate_as(server.url, tok, by_row["markup-000"], ["[/b] [bold]x"])
    annotate_as(server.url, tok, by_row["markup-001"], ["spam"])
    runner = CliRunner()
    status = runner.invoke(app, ["annotate", "status", str(config)], catch_exceptions=False)
    assert status.exit_code == 0, status.output
    pulled = runner.invoke(app, ["annotate", "pull", str(config), "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert pulled.exit_code == 0, pulled.output
    assert "choice not in the label set: [/b] [bold]x" in " ".join(pulled.output.split())

# -- 3. credentials never written anywhere -------------------------------------------------------------------


def views(path: Path):
    """The bytes of a file as stored, and decoded where a plain grep would not see inside (gzip, zip,
    parquet's compressed pages)."""
    data = path.read_bytes()
    yield data
    if data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data)
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                yield z.read(name)
    if data[:4] == b"PAR1":
        table = pq.read_table(path)
        yield json.dumps(table.to_pylist(), default=str).encode()
        yield repr(table.schema.metadata).encode()


def leaks(paths, secrets: dict[str, str]) -> list[str]:
    found = []
    for path in paths:
        for view in views(path):
            found += [f"{name} in {path}" for name, s in secrets.items() if s.encode() in view]
    return sorted(set(found))


def test_leak_scanner_sees_inside_compressed_files(tmp_path):
    import pyarrow as pa

    (tmp_path / "a.gz").write_bytes(gzip.compress(TOKEN.encode() * 3))
    assert TOKEN.encode() not in (tmp_path / "a.gz").read_bytes()  # invisible to a plain grep ...
    pq.write_table(pa.table({"x": [TOKEN] * 100}), tmp_path / "b.parquet", compression="gzip", use_dictionary=False)
    assert leaks(sorted(tmp_path.iterdir()), {"token": TOKEN}) == [f"token in {tmp_path / n}" for n in ("a.gz", "b.parquet")]


def test_credentials_never_appear_in_anything_a_run_writes(server, tmp_path):
    """A full `sftpipe run` with an annotate section — a first attempt against a server that answers 500
    echoing the request headers (token included), then paused for labelling, labelled by two annotators,
    published — and neither the API token nor the admin password is in any file it wrote, in its output,
    or in the server's log."""
    secrets = {"API token": server.api_key, "admin password": server.creds["password"]}
    lines = ["output\tmessage"] + [f"{'spam' if i % 4 == 0 else 'ham'}\tmessage {i}: {'win a prize now' if i % 4 == 0 else 'see you at home'} {i * 7}"
                                   for i in range(24)]
    config = annotate_run_config(tmp_path, "secret-test", lines)
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(config), "--data-dir", str(data)]
    env = {k: v for k, v in os.environ.items() if k not in (lsmod.URL_ENV, lsmod.API_KEY_ENV)}
    env.update(COLUMNS="200", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    outputs = []

    def run(extra_env=None):
        r = subprocess.run(cmd, capture_output=True, text=True, env={**env, **(extra_env or {})}, cwd=tmp_path, timeout=300)
        outputs.append(r.stdout + r.stderr)
        assert "Traceback" not in outputs[-1], outputs[-1]
        return r

    # A failing call: the token (given in the environment) goes to a server that shows it back in a 500 page.
    with Endpoint(lambda n, m, p: 500) as ep:
        failing = run({lsmod.URL_ENV: ep.url, lsmod.API_KEY_ENV: server.api_key})
        assert ep.count() == 5  # 1 + the stage client's 4 retries
    assert failing.returncode == 1, outputs[-1]
    (error,) = [l for l in failing.stderr.splitlines() if l.startswith("error")]  # the rest is the progress display
    assert error.startswith(f"error: Label Studio at {ep.url} keeps failing after 5 attempts") and "HTTP 500" in error, error
    assert "Token ***" in error  # the echoed header, masked

    paused = run()
    assert paused.returncode == 75 and "4 tasks awaiting annotation at http://127.0.0.1" in outputs[-1], outputs[-1]
    stage = make_stage("secret-test", tmp_path / "w", select="sample", sample_size=4, seed=1, annotators_per_task=2)
    by_row = tasks_by_row(server, stage.project(create=False))
    toks = [signup(server.url, f"annotator.{c}@example.com") for c in "ab"]
    for tid in by_row.values():
        for tok in toks:
            annotate_as(server.url, tok, tid, ["spam"])
    published = run()
    assert published.returncode == 0 and "published secret-test v1" in outputs[-1], outputs[-1]

    files = sorted(p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink())
    names = {p.name for p in files}
    assert {"manifest.json", "annotations.parquet", "labels.parquet", "agreement.json", "report.html", "stats.json"} <= names
    assert any("runs" in p.parts for p in files) and any("versions" in p.parts for p in files)
    files += [server.data_dir / srv.LOG_FILE, server.data_dir / lsmod.PROJECTS_FILE]
    assert leaks(files, secrets) == []
    for i, out in enumerate(outputs):
        assert [name for name, s in secrets.items() if s in out] == [], f"run {i + 1} printed a secret"
