"""`sftpipe`: the one command line of sft-pipeline."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.errors import UserError

app = typer.Typer(
    help="Turn raw text into a clean, deduplicated, human-labelled, versioned SFT dataset.\n\n"
    "Typical use: `sftpipe validate configs/sms_spam.yaml`, then `sftpipe run configs/sms_spam.yaml`, "
    "then `sftpipe versions list sms-spam`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
versions_app = typer.Typer(help="List, inspect and compare published dataset versions.", no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

DataDir = typer.Option(None, "--data-dir", help="where versions and run folders live (default: the config's store.data_dir, `data`)")


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show full tracebacks on errors")) -> None:
    _state["debug"] = debug


@app.command()
def validate(config: Path = typer.Argument(..., help="the dataset's YAML config")) -> None:
    """Check a config without running anything: keys, types, source files and the fields they name."""
    from pipeline.config import load_config

    cfg = load_config(config)
    console.print(f"[green]ok[/green] {config}: dataset {cfg.dataset!r}, {len(cfg.sources)} source(s)")


@app.command()
def run(
    config: Path = typer.Argument(..., help="the dataset's YAML config"),
    tag: Optional[str] = typer.Option(None, help="a name for the version, besides its number (e.g. 'baseline')"),
    from_stage: Optional[str] = typer.Option(None, "--from", help="re-run this stage and the ones after it even if unchanged"),
    data_dir: Optional[Path] = DataDir,
    batch_size: int = typer.Option(10_000, min=1, help="rows per Arrow record batch"),
    workers: Optional[int] = typer.Option(None, min=1, help="worker processes for slow signals (default: all cores); with --executor ray: the local Ray's CPUs"),
    no_annotate: bool = typer.Option(False, "--no-annotate", help="skip Label Studio: publish with source labels only (the manifest says so)"),
    allow_failed_gates: bool = typer.Option(False, "--allow-failed-gates", help="publish even if a blocking quality check fails, marked failed-gates"),
    executor_name: str = typer.Option("local", "--executor", help="local: this process (and worker processes); ray: row-wise stages on Ray Data (needs the [ray] extra)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="with --executor ray: join this Ray cluster ('auto', 'ray://host:10001'); default: start a local Ray with --workers CPUs"),
) -> None:
    """Run collect → clean → dedupe → (annotate) → split, check quality, and publish a new version.

    Stages whose inputs, config and code are unchanged since an earlier run are reused, not recomputed.
    Every input row ends either in a split of the version or in its rejected.parquet with a reason.
    With an `annotate` section the run stops cleanly while rows await labelling in Label Studio; run it
    again once they are labelled. A blocking failed quality check (see `evaluate`) stops publication.
    """
    from pipeline.config import load_config
    from pipeline.errors import PipelinePaused
    from pipeline.executor import GateFailed, LocalExecutor

    if executor_name not in ("local", "ray"):
        raise UserError(f"--executor {executor_name!r}: choose local or ray")
    if ray_address is not None and executor_name != "ray":
        raise UserError("--ray-address needs --executor ray")
    cfg = load_config(config)
    with _progress() as progress:
        def track(name: str, total: int | None):
            # A stage's bar starts when the stage does: the one before it is finished (its clock stops,
            # and a source stage's unknown total becomes what it read).
            for earlier in progress.tasks:
                if not earlier.finished:
                    progress.update(earlier.id, total=earlier.completed)
                    progress.stop_task(earlier.id)
            task = progress.add_task(name, total=total)
            return lambda n: progress.advance(task, n)

        options = dict(data_dir=data_dir, batch_size=batch_size, workers=workers,
                       from_stage=from_stage, annotate=not no_annotate, allow_failed_gates=allow_failed_gates,
                       progress=track, log=lambda m: progress.console.print(f"[dim]{m}[/dim]"))
        if executor_name == "ray":
            from pipeline.ray_executor import RayExecutor  # imports Ray itself only when the run starts

            executor = RayExecutor(cfg, ray_address=ray_address, **options)
        else:
            executor = LocalExecutor(cfg, **options)
        try:
            result = executor.run(tag=tag)
        except PipelinePaused as paused:
            progress.stop()
            console.print(f"[yellow]paused[/yellow]: {escape(str(paused))}", highlight=False, soft_wrap=True)
            return
        except GateFailed as gate:
            progress.stop()
            _print_funnel(gate.result.stages)
            _print_evaluation(gate.result.evaluation)
            raise
    _print_funnel(result.stages)
    path = executor.store.root / result.dataset / result.version
    _print_evaluation(result.evaluation, path if result.published else None)
    if result.published:
        console.print(f"[green]published[/green] {result.dataset} {result.version} → {path}")
    else:
        console.print(f"nothing new: the output is identical to {result.dataset} {result.version} "
                      f"(same content fingerprint and config); no version published")


@versions_app.command("list")
def versions_list(dataset: str = typer.Argument(..., help="dataset name"), data_dir: Optional[Path] = DataDir) -> None:
    """One line per version: rows per split, rejected rows, tag, creation time."""
    store = _store(data_dir)
    versions = store.versions(dataset)
    if not versions:
        raise UserError(f"dataset {dataset!r} has no published version under {store.root}")
    table = Table("version", "tag", "created", "train", "validation", "test", "rejected", "fingerprint")
    for v in versions:
        m = store.manifest(dataset, v)
        s = m.get("splits", {})
        table.add_row(v, m.get("tag") or "", m.get("created_at", ""), *(str(s.get(k, {}).get("rows", 0)) for k in ("train", "validation", "test")),
                      str(m.get("rejected", {}).get("rows", 0)), m.get("content_fingerprint", "")[:12])
    console.print(table)


@versions_app.command("show")
def versions_show(
    dataset: str = typer.Argument(...), version: str = typer.Argument(..., help="v3, 3, latest or a tag"),
    data_dir: Optional[Path] = DataDir, as_json: bool = typer.Option(False, "--json", help="print the whole manifest"),
) -> None:
    """A version's manifest: where its rows came from, what was dropped and why, splits and labels."""
    store = _store(data_dir)
    name = store.resolve(dataset, version)
    m = store.manifest(dataset, name)
    if as_json:
        print(json.dumps(m, indent=2, ensure_ascii=False))
        return
    console.print(f"[bold]{dataset} {name}[/bold]" + (f" ({m['tag']})" if m.get("tag") else "") + f" — {store.path(dataset, name)}")
    console.print(f"created {m.get('created_at')}, parent {m.get('parent_version') or '—'}, "
                  f"fingerprint {m.get('content_fingerprint', '')[:16]}, code {m.get('code_version')}")
    _print_funnel_dicts(m.get("stages", []))
    table = Table("split", "rows", "labels")
    for s, info in m.get("splits", {}).items():
        table.add_row(s, str(info["rows"]), ", ".join(f"{k}: {v}" for k, v in info["labels"].items()))
    console.print(table)


@versions_app.command("diff")
def versions_diff(
    dataset: str = typer.Argument(...), a: str = typer.Argument(..., help="older version"),
    b: str = typer.Argument(..., help="newer version"), data_dir: Optional[Path] = DataDir,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Per split: rows added, removed, relabelled, moved in; and how the label distribution changed."""
    d = _store(data_dir).diff(dataset, a, b)
    if as_json:
        print(json.dumps(d, indent=2, ensure_ascii=False))
        return
    table = Table("split", "before", "after", "added", "removed", "relabelled", "moved in", "labels before → after",
                  title=f"{dataset}: {d['from']} → {d['to']}")
    for s, x in d["splits"].items():
        labels = sorted(set(x["labels_before"]) | set(x["labels_after"]))
        change = ", ".join(f"{k}: {x['labels_before'].get(k, 0)}→{x['labels_after'].get(k, 0)}" for k in labels)
        table.add_row(s, str(x["rows_before"]), str(x["rows_after"]), str(x["added"]), str(x["removed"]),
                      str(x["relabelled"]), str(x["moved_in"]), change)
    console.print(table)


# -- helpers ------------------------------------------------------------------------------------------------


def _print_evaluation(evaluation, folder: Path | None = None) -> None:
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


def _store(data_dir: Optional[Path]):
    from pipeline.store import VersionStore

    return VersionStore(data_dir if data_dir is not None else Path("data"))


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("rows"), TimeElapsedColumn(), console=err_console, transient=False)


def _print_funnel(reports) -> None:
    _print_funnel_dicts([{**r.as_dict(), "cached": r.cached} for r in reports])


def _print_funnel_dicts(stages: list[dict]) -> None:
    table = Table("stage", "rows in", "rows out", "dropped", "reasons", "rows/s", title="funnel")
    for s in stages:
        dropped = sum(s["dropped"].values())
        reasons = ", ".join(f"{k}: {v}" for k, v in s["dropped"].items())
        speed = "cached" if s.get("cached") else (f"{s['rows_per_second']:,.0f}" if s.get("rows_per_second") else "")
        table.add_row(s["name"], f"{s['rows_in']:,}", f"{s['rows_out']:,}", f"{dropped:,}", reasons, speed)
    console.print(table)


# Commands in the order a user meets them: validate, run, versions, report, annotation, training.
from pipeline import labelstudio_cli, report_cli  # noqa: E402
from train import cli as train_cli  # noqa: E402

app.add_typer(versions_app, name="versions")
report_cli.register(app)  # report DATASET VERSION
labelstudio_cli.register(app)  # labelstudio start|stop|status, annotate push|status|pull
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


if __name__ == "__main__":
    main()
