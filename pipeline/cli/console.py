"""What every command prints with: the consoles, progress bars, the funnel table, the gate's verdict.

Text that comes from files, servers or annotators is printed escaped: never read as console markup.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="where versions and run folders live (default: the config's store.data_dir, `data`)")


def store(data_dir: Optional[Path]):
    """The version store under `data_dir` (default `data`)."""
    from pipeline.store import VersionStore

    return VersionStore(data_dir if data_dir is not None else Path("data"))


def progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("rows"), TimeElapsedColumn(), console=err_console, transient=False)


def print_funnel(reports) -> None:
    print_funnel_dicts([{**r.as_dict(), "cached": r.cached} for r in reports])


def print_funnel_dicts(stages: list[dict]) -> None:
    table = Table("stage", "rows in", "rows out", "dropped", "reasons", "rows/s", title="funnel")
    for s in stages:
        dropped = sum(s["dropped"].values())
        reasons = ", ".join(f"{k}: {v}" for k, v in s["dropped"].items())
        speed = "cached" if s.get("cached") else (f"{s['rows_per_second']:,.0f}" if s.get("rows_per_second") else "")
        table.add_row(s["name"], f"{s['rows_in']:,}", f"{s['rows_out']:,}", f"{dropped:,}", reasons, speed)
    console.print(table)


def print_evaluation(evaluation, folder: Path | None = None) -> None:
    """Each failed expectation with its observed value, then the verdict and where the report is."""
    if evaluation is None:
        return
    for failure in evaluation.failures:
        colour = "red" if failure.blocking else "yellow"
        console.print(f"[{colour}]{escape(str(failure))}[/{colour}]", highlight=False)
    if evaluation.report_path is not None:
        verdict = "[green]passed[/green]" if evaluation.passed else "[red]failed[/red]"
        report = folder / evaluation.report_path.name if folder is not None else evaluation.report_path
        console.print(f"quality gates {verdict}; report: {report}", highlight=False, soft_wrap=True)
