"""A local Label Studio server: install, start, stop, status.

Label Studio's pins differ from ours (pyarrow, Django, ...), so it lives in its own virtualenv, created on
first use at `$SFTPIPE_LABELSTUDIO_VENV` (default `~/.cache/sftpipe/labelstudio-venv`) and reused after.
The server runs on 127.0.0.1 only, with SQLite and media under the data dir, a known admin user and API
token (legacy tokens enabled) and its outbound calls off (version check, analytics, Sentry). The admin's
login, token and the Django secret key are generated once and kept in `<data dir>/credentials.json`
(mode 0600; the data dir is git-ignored and gets its own `.gitignore` too). The token is passed through
the environment, never on the command line.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipeline.errors import UserError
from pipeline.labelstudio.credentials import CREDENTIALS_FILE, read_credentials_file

LABEL_STUDIO_SPEC = os.environ.get("SFTPIPE_LABELSTUDIO_SPEC", "label-studio==1.23.2")
VENV_ENV = "SFTPIPE_LABELSTUDIO_VENV"
PID_FILE = "server.json"
LOG_FILE = "server.log"
# Label Studio's logging config gives the `django` logger the console handler and lets it propagate to the
# root logger, which has the same handler: every line Django logs (each request) is written twice. Its
# settings module cannot be wrapped (it reads django.conf.settings while it is being imported), so the
# server process gets this `sitecustomize` (on its PYTHONPATH only), which mends the config on its way to
# logging.config.dictConfig.
SITECUSTOMIZE = '''"""Written by sftpipe (pipeline/labelstudio/server.py) for the Label Studio it starts: its logging, mended."""
import logging.config

_dict_config = logging.config.dictConfig


def dictConfig(config):
    django = (config.get("loggers") or {}).get("django")
    root = config.get("root") or {}
    if django and "propagate" not in django and set(django.get("handlers") or ()) & set(root.get("handlers") or ()):
        django["propagate"] = False  # its lines reach the console once, through its own handler
    return _dict_config(config)


logging.config.dictConfig = dictConfig
'''
ADMIN_EMAIL = "admin@sftpipe.local"


def venv_dir() -> Path:
    return Path(os.environ.get(VENV_ENV) or Path.home() / ".cache" / "sftpipe" / "labelstudio-venv").expanduser()


def label_studio_bin(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "label-studio"


def ensure_installed(venv: Path | None = None, say=print) -> Path:
    """Create the virtualenv with label-studio in it unless it is there; return the `label-studio` path.

    An install that was interrupted leaves a marker file behind and is redone on the next use."""
    venv = venv or venv_dir()
    exe = label_studio_bin(venv)
    marker = venv / ".sftpipe-installing"
    if exe.exists() and not marker.exists():
        return exe
    say(f"installing {LABEL_STUDIO_SPEC} into {venv} (first use; a few minutes) ...")
    venv.mkdir(parents=True, exist_ok=True)
    marker.write_text("install in progress or interrupted\n")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        marker.write_text("install in progress or interrupted\n")  # --clear emptied the folder
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", LABEL_STUDIO_SPEC],
            check=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        raise UserError(f"could not install {LABEL_STUDIO_SPEC} into {venv}: {exc}") from None
    if not exe.exists():
        raise UserError(f"installed {LABEL_STUDIO_SPEC} but {exe} is missing")
    marker.unlink()
    return exe


@dataclass
class ServerInfo:
    url: str
    pid: int | None
    port: int
    data_dir: Path
    running: bool
    healthy: bool
    credentials_file: Path
    username: str | None = None


def _write_private(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def credentials(data_dir: Path) -> dict:
    """The server's admin login, token and secret key, generated on first use (file mode 0600)."""
    path = data_dir / CREDENTIALS_FILE
    if path.is_file():
        return read_credentials_file(path)
    data = {
        "url": None,
        "username": ADMIN_EMAIL,
        "password": secrets.token_urlsafe(12),
        "api_key": secrets.token_hex(20),
        "secret_key": secrets.token_urlsafe(40),
    }
    _write_private(path, data)
    return data


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a recycled pid belongs to something else
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"label-studio" in cmd or b"label_studio" in cmd
    except OSError:
        return True


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        r = httpx.get(f"{url}/health", timeout=timeout)
        return r.status_code == 200 and r.json().get("status") == "UP"
    except (httpx.HTTPError, ValueError):
        return False


def status(data_dir: Path) -> ServerInfo:
    data_dir = Path(data_dir)
    cred_file = data_dir / CREDENTIALS_FILE
    state_path = data_dir / PID_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    pid, port = state.get("pid"), int(state.get("port") or 0)
    url = state.get("url") or ""
    running = bool(pid) and _alive(int(pid))
    user = read_credentials_file(cred_file).get("username") if cred_file.is_file() else None
    return ServerInfo(url, pid if running else None, port, data_dir, running, running and healthy(url), cred_file, user)


def start(data_dir: Path, port: int = 8080, timeout_s: float = 300, venv: Path | None = None, say=print) -> ServerInfo:
    """Start the server in the background and wait for /health. Idempotent for a running server."""
    data_dir = Path(data_dir).absolute()
    info = status(data_dir)
    if info.running:
        if info.port != port:
            raise UserError(f"Label Studio for {data_dir} is already running at {info.url} (stop it first to change the port)")
        if not info.healthy:
            _wait_healthy(info.url, int(info.pid), data_dir, timeout_s)
        return status(data_dir)
    if port_in_use(port):
        raise UserError(
            f"port {port} on 127.0.0.1 is already in use; pick another with --port "
            f"(Label Studio itself would silently move to the next free port)"
        )
    exe = ensure_installed(venv, say=say)
    data_dir.mkdir(parents=True, exist_ok=True)
    gi = data_dir / ".gitignore"
    if not gi.exists():
        gi.write_text("*\n")
    creds = credentials(data_dir)
    url = f"http://127.0.0.1:{port}"
    if creds.get("url") != url:
        creds["url"] = url
        _write_private(data_dir / CREDENTIALS_FILE, creds)
    site_dir = data_dir / ".sftpipe-site"
    site_dir.mkdir(exist_ok=True)
    (site_dir / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(
        PYTHONPATH=str(site_dir),
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_USERNAME=creds["username"],
        LABEL_STUDIO_PASSWORD=creds["password"],
        LABEL_STUDIO_USER_TOKEN=creds["api_key"],
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="false",
        SECRET_KEY=creds["secret_key"],  # stable across restarts: sessions and personal access tokens survive
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        DJANGO_DB="sqlite",
        PATH=f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    cmd = [
        str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
        "--data-dir", str(data_dir), "--enable-legacy-api-token", "--log-level", "WARNING",
    ]  # fmt: skip
    log = open(data_dir / LOG_FILE, "ab")
    proc = subprocess.Popen(cmd, env=env, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    _write_private(data_dir / PID_FILE, {"pid": proc.pid, "port": port, "url": url, "started": time.time()})
    _wait_healthy(url, proc.pid, data_dir, timeout_s, proc)
    return status(data_dir)


def _wait_healthy(url: str, pid: int, data_dir: Path, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy(url):
            return
        exited = proc.poll() is not None if proc is not None else not _alive(pid)
        if exited:
            (data_dir / PID_FILE).unlink(missing_ok=True)
            raise UserError(f"Label Studio exited during start-up: {_log_tail(data_dir)} (log: {data_dir / LOG_FILE})")
        time.sleep(1.0)
    raise UserError(f"Label Studio did not answer {url}/health within {timeout_s:.0f} s (log: {data_dir / LOG_FILE})")


def _log_tail(data_dir: Path, n: int = 3) -> str:
    try:
        lines = [l for l in (data_dir / LOG_FILE).read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:])


def stop(data_dir: Path, timeout_s: float = 20) -> bool:
    """Stop the server started for this data dir. Returns whether one was running."""
    data_dir = Path(data_dir).absolute()
    info = status(data_dir)
    state = data_dir / PID_FILE
    if not info.running:
        state.unlink(missing_ok=True)
        return False
    pid = int(info.pid)
    # The server was started in its own session: its process group is ours to end (and only it).
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    # Wait for the whole group, not only its leader: a worker still holding the port would make the next
    # `start` on the same port refuse ("already in use").
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _group_alive(pid):  # the leader is in its group: one check
        _reap(pid)
        time.sleep(0.2)
    if _group_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.5)
        _reap(pid)
    while info.port and time.monotonic() < deadline + 10 and port_in_use(info.port):
        time.sleep(0.2)
    state.unlink(missing_ok=True)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
