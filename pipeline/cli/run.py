"""`sftpipe validate CONFIG` and `sftpipe run CONFIG`: check a config; run the plan, gate and publish."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from pipeline.cli.console import DataDir, console, print_evaluation, print_funnel, progress as _progress
from pipeline.errors import UserError


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(run)


def validate(config: Path = typer.Argument(..., help="the dataset's YAML config")) -> None:
    """Check a config without running anything: keys, types, source files and the fields they name."""
    from pipeline.cli.project import PROJECT

    cfg = PROJECT.load_config(config)
    console.print(f"[green]ok[/green] {config}: dataset {cfg.dataset!r}, {len(cfg.sources)} source(s)")


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
    """Run collect → clean → (decontaminate) → dedupe → (annotate) → split, check quality, and publish a new version.

    Stages whose inputs, config and code are unchanged since an earlier run are reused, not recomputed.
    Every input row ends either in a split of the version or in its rejected.parquet with a reason.
    With an `annotate` section the run stops cleanly while rows await labelling in Label Studio; run it
    again once they are labelled. A blocking failed quality check (see `evaluate`) stops publication.
    """
    from pipeline.cli.project import PROJECT
    from pipeline.errors import PipelinePaused
    from pipeline.executor import GateFailed, LocalExecutor

    if executor_name not in ("local", "ray"):
        raise UserError(f"--executor {executor_name!r}: choose local or ray")
    if ray_address is not None and executor_name != "ray":
        raise UserError("--ray-address needs --executor ray")
    cfg = PROJECT.load_config(config)
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
                       from_stage=from_stage, skip={"annotate": "run with --no-annotate"} if no_annotate else None,
                       allow_failed_gates=allow_failed_gates,
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
            print_funnel(gate.result.stages)
            print_evaluation(gate.result.evaluation)
            raise
    print_funnel(result.stages)
    path = executor.store.root / result.dataset / result.version
    print_evaluation(result.evaluation, path if result.published else None)
    if result.published:
        console.print(f"[green]published[/green] {result.dataset} {result.version} → {path}")
    else:
        console.print(f"nothing new: the output is identical to {result.dataset} {result.version} "
                      f"(same content fingerprint and config); no version published")
