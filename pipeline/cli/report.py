"""`sftpipe report DATASET VERSION`: where a version's quality report is, and its summary in the terminal.

`register(app)` adds the command to the main Typer app (pipeline/cli/app.py calls it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    dataset: str = typer.Argument(..., help="dataset name"),
    version: str = typer.Argument("latest", help="version (v3), its tag, or 'latest'"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="where versions live (default: `data`)"),
    candidate: Optional[Path] = typer.Option(
        None, "--candidate", help="summarize an unpublished candidate folder instead (e.g. one that failed its gates)"
    ),
    open_browser: bool = typer.Option(False, "--open", help="also open report.html in a web browser"),
) -> None:
    """Print where a version's report.html is and a summary: gates, splits, leakage, label issues."""
    from stages.evaluate import summarize_report

    if candidate is not None:
        folder = candidate
        if not (folder / "manifest.json").exists() and not (folder / "quality").exists():
            raise UserError(f"{folder} is not a candidate version folder (no manifest.json)")
    else:
        from pipeline.store import VersionStore

        store = VersionStore(data_dir if data_dir is not None else Path("data"))
        folder = store.path(dataset, store.resolve(dataset, version))
    typer.echo(summarize_report(folder))
    page = folder / "report.html"
    if open_browser and page.exists():
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
