"""The `sftpipe` Typer app: the command groups registered in the order a user meets them, and `main`,
which turns every way a command can end into one documented exit code and at most one line.

Exit codes (README, "Exit codes"):

    0    done (published, identical to an existing version, pushed, ...)
    1    an error the user can act on (`UserError`: bad config or input, a failed quality gate, ...)
    2    a usage error: missing argument, unknown option or command (Click's own message and code)
    3    `sftpipe labelstudio status`: the server is not running
    75   `sftpipe run` paused: rows await annotation in Label Studio; run again after labelling
    70   an internal error (a bug: run with --debug for the traceback)
    130  interrupted (Ctrl-C): nothing published, finished stages kept, the next run resumes

Typer runs in standalone mode, so usage errors, `--help` and `typer.Exit(code)` are handled by Typer and
Click themselves, whatever Click they use (newer Typers ship their own copy of Click, whose exceptions are
not `click.ClickException`). What is ours goes through them as plain exceptions: a `UserError`, and Ctrl-C,
which the app's group turns into `Interrupted` before Click would turn it into "Aborted!" (exit 1) or a
silent exit.
"""
from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape
from typer.core import TyperGroup

from pipeline.cli import annotate, export, labelstudio, report, run, versions
from pipeline.cli.console import EXIT_PAUSED, Interrupted, err_console, typer_app
from pipeline.errors import PipelinePaused, UserError
from train import cli as train_cli

EXIT_USER_ERROR = 1
EXIT_USAGE = 2  # Click's
EXIT_NOT_RUNNING = 3  # labelstudio status
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C


class _Group(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("") from None


app = typer_app(
    help="Turn raw text into a clean, deduplicated, human-labelled, versioned SFT dataset.\n\n"
    "Typical use: `sftpipe validate configs/sms_spam.yaml`, then `sftpipe run configs/sms_spam.yaml`, "
    "then `sftpipe versions list sms-spam`. Exit codes: 0 done, 1 error, 2 usage error, 3 Label Studio "
    "not running (`labelstudio status`), 70 internal error (a bug: --debug), 75 paused for annotation, "
    "130 interrupted (README: Exit codes).",
    cls=_Group,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show full tracebacks on errors")) -> None:
    _state["debug"] = debug
    # Before any command runs (train's too, which read configs with pipeline.config.load_config): compose
    # and install the project. Not at import, so that `sftpipe --help` does not import every stage.
    import pipeline.cli.project  # noqa: F401


# Commands in the order a user meets them: validate, run, versions, report, annotation, training.
run.register(app)  # validate CONFIG, run CONFIG
versions.register(app)  # versions list|show|diff
report.register(app)  # report DATASET VERSION
export.register(app)  # export DATASET VERSION --format alpaca|sharegpt|messages
labelstudio.register(app)  # labelstudio start|stop|status
annotate.register(app)  # annotate push|status|pull|forget-review
train_cli.register(app)  # train, score, runs list


def main() -> None:
    try:
        app(prog_name="sftpipe")  # standalone: exits itself on success, --help, usage errors, typer.Exit
    except PipelinePaused as exc:  # a command that did not handle the pause itself
        err_console.print(f"[yellow]paused:[/yellow] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_PAUSED)
    except UserError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        if _state["debug"]:
            raise
        sys.exit(EXIT_USER_ERROR)
    except (Interrupted, KeyboardInterrupt) as exc:
        what = str(exc) if isinstance(exc, Interrupted) else ""
        err_console.print("interrupted" + (f": {escape(what)}" if what else ""), highlight=False, soft_wrap=True)
        sys.exit(EXIT_INTERRUPTED)
    except ModuleNotFoundError as exc:  # an installation without one of our dependencies: not a bug to debug
        if _state["debug"] or os.environ.get("SFTPIPE_DEBUG"):
            raise
        module = escape((exc.name or str(exc)).split(".")[0])
        err_console.print(f"[red]error:[/red] the Python module `{module}` is not installed in this environment: "
                          "install sftpipe with its dependencies (README, Set up)",
                          highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except Exception as exc:  # the unexpected: a bug
        if _state["debug"] or os.environ.get("SFTPIPE_DEBUG"):
            raise
        err_console.print(f"[red]internal error:[/red] {type(exc).__name__}: {escape(str(exc))} "
                          "(run with --debug for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(EXIT_INTERNAL)
