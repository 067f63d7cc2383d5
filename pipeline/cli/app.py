"""The `sftpipe` Typer app: the command groups registered in the order a user meets them, and `main`,
which prints a user's error as one line (no traceback unless --debug)."""
from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from pipeline.cli import export, labelstudio, report, run, versions
from pipeline.cli.console import err_console
from pipeline.errors import UserError
from train import cli as train_cli

app = typer.Typer(
    help="Turn raw text into a clean, deduplicated, human-labelled, versioned SFT dataset.\n\n"
    "Typical use: `sftpipe validate configs/sms_spam.yaml`, then `sftpipe run configs/sms_spam.yaml`, "
    "then `sftpipe versions list sms-spam`.",
    no_args_is_help=True,
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
labelstudio.register(app)  # labelstudio start|stop|status, annotate push|status|pull
train_cli.register(app)  # train, score, runs list


def main() -> None:
    try:
        app(standalone_mode=False)
    except UserError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        if _state["debug"]:
            raise
        sys.exit(1)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)) or 0)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the unexpected
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if _state["debug"] or os.environ.get("SFTPIPE_DEBUG"):
            raise
        err_console.print(f"[red]internal error:[/red] {type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback)",
                          highlight=False, soft_wrap=True)
        sys.exit(2)
