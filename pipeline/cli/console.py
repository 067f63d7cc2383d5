"""What every command prints with: the consoles, progress bars, the funnel table, the gate's verdict.

Text that comes from files, servers or annotators is printed escaped: never read as console markup.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.terminal import new_console

console = new_console()
err_console = new_console(stderr=True)


EXIT_PAUSED = 75  # `sftpipe run` paused for annotation (EX_TEMPFAIL: try again later); README "Exit codes"


class Interrupted(Exception):
    """Ctrl-C while a command ran, with what it means for that command ("nothing was published; ...").

    A plain exception, so that Click passes it through to `pipeline.cli.app.main` (exit 130, one line)."""


def typer_app(**kwargs) -> typer.Typer:
    """A Typer app or command group of `sftpipe`, with the CLI's help style: Click's plain help (help texts
    are not read as Rich markup, where `[ray]` is a style tag and vanishes; on/off options show as bare
    flags rather than taking a `<bool>`; paragraphs are re-wrapped) and Click's plain usage errors."""
    return typer.Typer(rich_markup_mode=None, no_args_is_help=True, **kwargs)

DataDir = typer.Option(None, "--data-dir", help="where versions and run folders live (default: the config's store.data_dir, `data`)")


def store(data_dir: Optional[Path]):
    """The version store under `data_dir` (default `data`)."""
    from pipeline.store import VersionStore

    return VersionStore(data_dir if data_dir is not None else Path("data"))


def progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("rows"), TimeElapsedColumn(), console=err_console, transient=False)


def print_funnel(reports, title: str = "funnel") -> None:
    print_funnel_dicts([{**r.as_dict(), "cached": r.cached} for r in reports], title)


def print_funnel_dicts(stages: list[dict], title: str = "funnel") -> None:
    """One row per stage: rows in, out, dropped, and, where a stage changed labels (annotate: people's
    labels, review decisions), how many rows it relabelled; then every drop reason on a line of its own: a
    reason is a name to look up (`completion_unclosed_code_fence_above_max`), so it is never cut to fit a
    table cell at 80 columns; then each stage's notes (what it decided from the data, `Summary.notes`)."""
    relabels = any("relabelled" in (s.get("stats") or {}) for s in stages)
    table = Table("stage", "rows in", "rows out", "dropped", *(["relabelled"] if relabels else []), "rows/s", title=title)
    for s in stages:
        dropped = sum(s["dropped"].values())
        speed = "cached" if s.get("cached") else (f"{s['rows_per_second']:,.0f}" if s.get("rows_per_second") else "")
        relabelled = (s.get("stats") or {}).get("relabelled")
        table.add_row(escape(s["name"]), f"{s['rows_in']:,}", f"{s['rows_out']:,}", f"{dropped:,}",
                      *([f"{relabelled:,}" if relabelled is not None else ""] if relabels else []), speed)
    console.print(table)
    reasons = [(s["name"], reason, n) for s in stages for reason, n in sorted(s["dropped"].items(), key=lambda x: -x[1])]
    if reasons:
        console.print("dropped, by reason (all in rejected.parquet):", highlight=False)
        for stage, reason, n in reasons:
            console.print(f"  {escape(stage)}: {escape(reason)} {n:,}", highlight=False, soft_wrap=True)
    for s in stages:  # what a stage decided from the data (clean: "lang auto: en 96% ...")
        for note in s.get("notes") or []:
            console.print(f"{escape(s['name'])}: {escape(note)}", highlight=False, soft_wrap=True)


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
