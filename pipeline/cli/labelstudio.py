"""`sftpipe labelstudio start|stop|status`: the local Label Studio server.

`register(app)` adds the group to the main Typer app (pipeline/cli/app.py calls it); the annotation commands
are `pipeline.cli.annotate`.
"""
from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli.console import console, typer_app

labelstudio_app = typer_app(help="A local Label Studio server for annotation (127.0.0.1 only).")

ServerDir = typer.Option(Path("data/labelstudio"), "--data-dir", help="the server's data folder (SQLite, media, credentials)")


def register(app: typer.Typer) -> None:
    app.add_typer(labelstudio_app, name="labelstudio")


# -- the server ------------------------------------------------------------------------------------------------


@labelstudio_app.command("start")
def ls_start(
    port: int = typer.Option(8080, min=1, max=65535, help="port on 127.0.0.1"),
    data_dir: Path = ServerDir,
    timeout: float = typer.Option(300, help="seconds to wait for /health (the first start runs migrations)"),
) -> None:
    """Start Label Studio in the background (installing it into its own virtualenv on first use)."""
    from pipeline.labelstudio import server as srv

    before = srv.status(data_dir)
    info = srv.start(data_dir, port=port, timeout_s=timeout, say=lambda m: console.print(f"[dim]{m}[/dim]"))
    verb = "already running" if before.running else "started"
    creds = srv.read_credentials_file(info.credentials_file)
    console.print(f"[green]Label Studio {verb}[/green] at {info.url} (pid {info.pid})")
    console.print(f"login: {creds['username']} — password and API token in {info.credentials_file} (mode 0600)")
    console.print(f"log: {data_dir / srv.LOG_FILE}; stop with `sftpipe labelstudio stop`")


@labelstudio_app.command("stop")
def ls_stop(data_dir: Path = ServerDir) -> None:
    """Stop the local Label Studio started for this data folder."""
    from pipeline.labelstudio import server as srv

    if srv.stop(data_dir):
        console.print("Label Studio stopped")
    else:
        console.print("Label Studio was not running")


@labelstudio_app.command("status")
def ls_status(data_dir: Path = ServerDir) -> None:
    """Is the local Label Studio running, where, and where are its credentials."""
    from pipeline.labelstudio import server as srv

    info = srv.status(data_dir)
    if not info.running:
        console.print(f"Label Studio is not running (data folder {data_dir}); start it with `sftpipe labelstudio start`")
        raise typer.Exit(3)  # documented: scripts tell "not running" from an error
    health = "[green]healthy[/green]" if info.healthy else "[yellow]not answering /health yet[/yellow]"
    console.print(f"Label Studio running at {info.url} (pid {info.pid}), {health}")
    console.print(f"login: {info.username}; credentials: {info.credentials_file}")
