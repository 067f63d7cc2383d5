"""The `sftpipe` console script as a user meets it: usage errors, exit codes, --help, messages about
where things are, and Ctrl-C in the middle of a real run. Every test runs the installed script."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import REPO, sftpipe, sftpipe_command, sms_config, write_config


def one_error_line(out: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr
    return out.stderr


# -- usage errors and exit codes -------------------------------------------------------------------------------


@pytest.mark.parametrize("args, usage, message", [
    (["run"], "Usage: sftpipe run [OPTIONS]", "Missing argument 'config'"),
    (["runz"], "Usage: sftpipe [OPTIONS] COMMAND", "No such command 'runz'. Did you mean 'run'"),
    (["run", "configs/sms_spam.yaml", "--bogus"], "Usage: sftpipe run [OPTIONS]", "No such option: --bogus"),
    (["versions", "diff", "sms-spam", "v1"], "Usage: sftpipe versions diff [OPTIONS]", "Missing argument 'b'"),
    (["run", "configs/sms_spam.yaml", "--batch-size", "0"], "Usage: sftpipe run [OPTIONS]", "Invalid value for '--batch-size'"),
], ids=["missing argument", "unknown command", "unknown option", "missing second version", "value out of range"])
def test_usage_errors_are_clicks_usage_message_with_exit_code_2(args, usage, message):
    out = sftpipe(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    err = one_error_line(out)
    assert err.startswith(usage) and f"Try 'sftpipe" in err and message.lower() in err.lower(), err


def test_typer_exit_codes_are_kept(tmp_path):
    out = sftpipe("labelstudio", "status", "--data-dir", str(tmp_path / "nowhere"))
    assert out.returncode == 3 and "Label Studio is not running" in out.stdout, out.stdout + out.stderr


def test_a_user_error_is_one_line_with_exit_code_1(tmp_path):
    out = sftpipe("validate", str(tmp_path / "missing.yaml"))
    assert out.returncode == 1 and one_error_line(out).strip() == f"error: config file not found: {tmp_path / 'missing.yaml'}"


def test_a_missing_dependency_is_one_line_that_names_it_not_an_internal_error(tmp_path):
    """An environment without one of sftpipe's packages (met on a GPU image lacking `rouge_score`): the
    import fails where the package is first needed; the user reads which module, not a bug report. Here the
    interpreter is told `cleanlab` cannot be imported (None in sys.modules: Python's own "halted" import)
    and the sample run reaches the label_noise stage."""
    argv, env = sftpipe_command()
    code = ("import sys; sys.modules['cleanlab'] = None; from pipeline.cli.app import main; "
            f"sys.argv = ['sftpipe', 'run', 'configs/sms_spam.yaml', '--data-dir', {str(tmp_path)!r}]; main()")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 1, out.stderr[-2000:]
    last = one_error_line(out).strip().splitlines()[-1]
    assert last.startswith("error: the Python module `cleanlab` is not installed"), last
    assert not (tmp_path / "versions" / "sms-spam" / "v1").exists()


# -- help ------------------------------------------------------------------------------------------------------


def _commands():
    import pipeline.cli.project  # noqa: F401
    from typer.main import get_command

    from pipeline.cli.app import app

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    return list(walk(get_command(app), []))


def test_every_option_and_argument_says_what_it_is():
    for path, command in _commands():
        for param in command.params:
            assert (param.help or "").strip(), f"sftpipe {' '.join(path)} {param.opts}: no help text"


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in _commands()])
def test_help_shows_flags_as_flags_and_brackets_as_written(path):
    out = sftpipe(*path.split(), "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: sftpipe {path}")
    assert "<bool>" not in out.stdout and "\\[" not in out.stdout, out.stdout  # no value after an on/off flag
    if path == "run":
        assert "needs the [ray] extra" in " ".join(out.stdout.split())  # not eaten as a Rich markup tag
        assert re.search(r"^\s+--no-annotate\s+skip Label Studio", out.stdout, re.M), out.stdout


def test_top_level_help_names_every_exit_code_the_readme_documents():
    """`sftpipe --help` is where a script writer looks first: it names every code of the README's table."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("\n\n| code | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented >= {0, 1, 2, 3, 70, 75, 130}, documented
    out = sftpipe("--help")
    assert out.returncode == 0, out.stderr
    helped = {int(code) for code in re.findall(r"(?<![\w-])(\d+) [a-zA-Z]", " ".join(out.stdout.split("Exit codes:", 1)[1].split()))}
    assert documented <= helped, (documented - helped, out.stdout)


# -- messages a new user needs ------------------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_line_column_and_shows_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: x\nsources:\n  - name: a\n    path: b: c\n")
    out = sftpipe("validate", str(bad))
    assert out.returncode == 1
    lines = one_error_line(out).rstrip("\n").splitlines()
    assert lines[0] == f"error: {bad}:4:12: not valid YAML: mapping values are not allowed here"
    assert lines[1] == "  4 |     path: b: c" and lines[2].index("^") == lines[1].index("b: c") + 1


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """sms-spam v1 (the shipped config without language detection) and v2 (texts under 20 characters
    dropped), published by the console script from a folder other than the data folder's parent."""
    folder = tmp_path_factory.mktemp("cli")
    data = folder / "data"
    config = write_config(folder, sms_config())
    first = sftpipe("run", str(config), "--data-dir", str(data), cwd=folder)
    assert first.returncode == 0, first.stdout + first.stderr
    changed = sms_config()
    changed["clean"]["filters"] = {"n_chars": {"min": 20}}
    config2 = write_config(folder, changed)
    second = sftpipe("run", str(config2), "--data-dir", str(data), cwd=folder)
    assert second.returncode == 0, second.stdout + second.stderr
    return folder, data, first, second


def test_every_run_says_where_versions_go(two_versions, tmp_path):
    folder, data, first, _ = two_versions
    assert first.stdout.startswith(f"data folder: {data} (versions go to {data / 'versions' / 'sms-spam'})")
    assert f"published sms-spam v1 → {data / 'versions' / 'sms-spam' / 'v1'}" in first.stdout
    # The default data folder is relative to where the command runs: said as an absolute path.
    elsewhere = sftpipe("versions", "list", "sms-spam", cwd=tmp_path)
    assert elsewhere.returncode == 1
    assert f"no dataset has a published version under {tmp_path / 'data' / 'versions'}" in one_error_line(elsewhere)


def test_a_misspelt_dataset_lists_the_datasets_there(two_versions):
    _, data, _, _ = two_versions
    out = sftpipe("versions", "list", "sms_spam", "--data-dir", str(data))
    assert out.returncode == 1
    assert (f"dataset 'sms_spam' has no published version under {data / 'versions'} (datasets there: sms-spam)"
            in one_error_line(out))
    show = sftpipe("versions", "show", "sms_spam", "v1", "--data-dir", str(data))
    assert show.returncode == 1 and "datasets there: sms-spam" in show.stderr


def test_versions_diff_of_a_version_with_itself_and_backwards(two_versions):
    _, data, _, _ = two_versions
    same = sftpipe("versions", "diff", "sms-spam", "v1", "1", "--data-dir", str(data))
    assert same.returncode == 0 and "sms-spam v1 and v1 are the same version: nothing differs" in same.stdout
    forward = sftpipe("versions", "diff", "sms-spam", "v1", "v2", "--data-dir", str(data), "--json")
    backward = sftpipe("versions", "diff", "sms-spam", "v2", "v1", "--data-dir", str(data), "--json")
    assert forward.returncode == backward.returncode == 0
    assert forward.stderr == "" and "v2 is newer than v1: showing the changes from v2 back to v1" in backward.stderr
    f, b = json.loads(forward.stdout), json.loads(backward.stdout)
    assert f["splits"]["train"]["removed"] > 0 and f["splits"]["train"]["removed"] == b["splits"]["train"]["added"]


def test_annotate_with_the_local_server_down_says_how_to_start_it(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    server_dir = tmp_path / "labelstudio"
    server_dir.mkdir()
    (server_dir / "credentials.json").write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "api_key": "k" * 40}))
    config = write_config(tmp_path, sms_config(annotate={"select": "all"}))
    argv, env = sftpipe_command("annotate", "status", str(config))
    env = {k: v for k, v in env.items() if not k.startswith("LABEL_STUDIO_")}
    out = subprocess.run(argv, cwd=tmp_path, env={**env, "SFTPIPE_LABELSTUDIO_DIR": str(server_dir)}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    err = one_error_line(out)
    assert f"Label Studio at http://127.0.0.1:{port} is not reachable after 5 attempts" in err
    assert f"Start it with `sftpipe labelstudio start --data-dir {server_dir}`" in err


# -- Ctrl-C --------------------------------------------------------------------------------------------------


def ctrl_c_as_in_a_terminal() -> None:
    """SIGINT's default action in the child, as a terminal's foreground job has it. A shell starts a
    background job (`cmd &`, `nohup … &`) with SIGINT ignored, every process below inherits that, and
    Python then never raises KeyboardInterrupt: without this the Ctrl-C tests fail whenever the suite itself
    runs in the background."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_mid_run_exits_130_in_one_line_and_the_next_run_resumes(tmp_path):
    """SIGINT to the run's whole process group (what a terminal's Ctrl-C does: worker processes get it
    too) once collect has finished: exit 130, one line, no traceback from the run or its workers, nothing
    published, no partial stage output; the next run reuses collect and publishes."""
    config = write_config(tmp_path, sms_config())
    data = tmp_path / "data"
    argv, env = sftpipe_command("run", str(config), "--data-dir", str(data), "--workers", "2", "--batch-size", "500")
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own process group, as a terminal's foreground job
                            preexec_fn=ctrl_c_as_in_a_terminal)
    stages = data / "runs" / "sms-spam" / "stages"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not [p for p in stages.glob("00-collect-*") if ".tmp-" not in p.name]:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == ("interrupted: nothing was published; the stages that finished are "
                                               "kept and the next run resumes from them")
    assert "published" not in stdout.replace("nothing was published", "")
    assert not list((data / "versions" / "sms-spam").glob("v*"))
    assert not list(data.rglob("*.tmp-*")), "a partial output was left behind"

    again = sftpipe("run", str(config), "--data-dir", str(data), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "collect: unchanged since an earlier run, reusing" in again.stdout + again.stderr
    assert "published sms-spam v1" in again.stdout


def test_ctrl_c_while_a_later_worker_pool_starts_is_not_lost():
    """The fork server starts with Ctrl-C ignored (so that it cannot die of one mid-import); once it is up, a
    stage's pool leaves SIGINT alone, so a Ctrl-C that lands while the pool starts interrupts the run (each
    pool used to ignore SIGINT for an instant, and a Ctrl-C in that instant was lost), and nothing prints a
    traceback."""
    script = textwrap.dedent("""
        import os, signal, sys
        from multiprocessing import forkserver
        from pipeline import workers

        workers.start_worker_server()  # at the start of a run
        is_up = forkserver.ensure_running
        pressed = []

        def ctrl_c_while_a_pool_starts():  # one Ctrl-C, the first time anything asks whether the server is up
            if not pressed:
                pressed.append(True)
                os.killpg(os.getpgrp(), signal.SIGINT)  # a terminal's: the whole group, the server too
            is_up()

        # Both names the question is asked by: ours, and each new worker process's (multiprocessing's own).
        forkserver.ensure_running = forkserver._forkserver.ensure_running = ctrl_c_while_a_pool_starts
        try:
            with workers.worker_pool(2) as pool:
                assert pool.submit(sum, [1, 2]).result() == 3
        except KeyboardInterrupt:
            print("interrupted")
            sys.exit(0)
        print("the Ctrl-C was lost")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          start_new_session=True, preexec_fn=ctrl_c_as_in_a_terminal,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "interrupted", proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
