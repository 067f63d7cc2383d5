"""`sftpipe validate CONFIG` and `sftpipe run CONFIG`: check a config; run the plan, gate and publish."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from pipeline.cli.console import (EXIT_PAUSED, DataDir, Interrupted, console, print_evaluation, print_funnel,
                                  progress as _progress)
from pipeline.errors import UserError


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(run)


def validate(config: Path = typer.Argument(..., help="the dataset's YAML config"), data_dir: Optional[Path] = DataDir) -> None:
    """Check a config without running anything: keys, types, source files and the fields they name, and that
    the data folder can be written."""
    from pipeline.cli.project import PROJECT
    from pipeline.store import VersionStore

    cfg = PROJECT.load_config(config)
    VersionStore(data_dir if data_dir is not None else Path(cfg.store.data_dir)).check_writable()
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
    With an `annotate` section (or a label review pushed with `sftpipe annotate push --review-label-issues`)
    the run stops cleanly while rows await labelling in Label Studio, printing the funnel so far, with exit
    code 75; run it again once they are labelled. A blocking failed quality check stops publication (exit
    code 1). Ctrl-C stops it with exit code 130: nothing is published and the next run resumes.
    """
    from pipeline.cli.annotate import with_reviews
    from pipeline.cli.project import PROJECT
    from pipeline.errors import PipelinePaused
    from pipeline.executor import GateFailed, LocalExecutor

    if executor_name not in ("local", "ray"):
        raise UserError(f"--executor {executor_name!r}: choose local or ray")
    if ray_address is not None and executor_name != "ray":
        raise UserError("--ray-address needs --executor ray")
    skip = {"annotate": "run with --no-annotate"} if no_annotate else {}
    cfg = with_reviews(PROJECT.load_config(config, skip=skip), data_dir)  # label reviews pushed for the dataset apply
    folder = Path(data_dir if data_dir is not None else cfg.store.data_dir).absolute()
    # Said first, on every run: a run started from another folder writes to another `data/`.
    console.print(f"data folder: {folder} (versions go to {folder / 'versions' / cfg.dataset})", highlight=False,
                  soft_wrap=True)
    reviews = cfg.annotate.reviews if getattr(cfg, "annotate", None) is not None else []
    if reviews and not no_annotate:
        console.print("label reviews applied: " + ", ".join(f"{r.version} ({r.project_title!r})" for r in reviews),
                      highlight=False, soft_wrap=True)
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

        def drop_unfinished():
            # The bar of the stage that stopped (paused, interrupted) would stay on screen, stalled.
            for task in list(progress.tasks):
                if not task.finished:
                    progress.remove_task(task.id)
            progress.stop()

        options = dict(data_dir=data_dir, batch_size=batch_size, workers=workers,
                       from_stage=from_stage, skip=skip or None,
                       allow_failed_gates=allow_failed_gates,
                       progress=track, log=lambda m: progress.console.print(f"[dim]{escape(m)}[/dim]"))
        if executor_name == "ray":
            from pipeline.ray_executor import RayExecutor  # imports Ray itself only when the run starts

            executor = RayExecutor(cfg, ray_address=ray_address, **options)
        else:
            executor = LocalExecutor(cfg, **options)
        try:
            result = executor.run(tag=tag)
        except PipelinePaused as paused:
            drop_unfinished()
            if paused.stages:
                print_funnel(paused.stages, title="funnel so far")
            console.print(f"[yellow]paused[/yellow]: {escape(str(paused))}", highlight=False, soft_wrap=True)
            console.print(f"nothing published; `sftpipe run {config}` again goes on from {escape(paused.stage or 'there')} "
                          f"(exit code {EXIT_PAUSED}: paused)", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_PAUSED) from None
        except KeyboardInterrupt:
            drop_unfinished()
            raise Interrupted("nothing was published; the stages that finished are kept and the next run "
                              "resumes from them") from None
        except GateFailed as gate:
            progress.stop()
            print_funnel(gate.result.stages)
            print_evaluation(gate.result.evaluation)
            raise
    print_funnel(result.stages)
    path = (executor.store.root / result.dataset / result.version).absolute()
    print_evaluation(result.evaluation, path if result.published else None)
    if result.published:
        console.print(f"[green]published[/green] {result.dataset} {result.version} → {path}", highlight=False,
                      soft_wrap=True)
    else:
        console.print(f"nothing new: the output is identical to {result.dataset} {result.version} "
                      f"(same content fingerprint and config); no version published", highlight=False, soft_wrap=True)
