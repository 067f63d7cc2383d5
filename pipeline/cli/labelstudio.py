"""`sftpipe labelstudio start|stop|status` and `sftpipe annotate push|status|pull`.

`register(app)` adds both groups to the main Typer app (pipeline/cli/app.py calls it). Text that comes from the
server or its annotators (names, labels, messages) is printed escaped: it is never read as console markup.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.errors import PipelinePaused, UserError

console = Console()

labelstudio_app = typer.Typer(help="A local Label Studio server for annotation (127.0.0.1 only).", no_args_is_help=True)
annotate_app = typer.Typer(help="Send rows to Label Studio, follow the labelling, take the labels back.", no_args_is_help=True)

ServerDir = typer.Option(Path("data/labelstudio"), "--data-dir", help="the server's data folder (SQLite, media, credentials)")


def register(app: typer.Typer) -> None:
    app.add_typer(labelstudio_app, name="labelstudio")
    app.add_typer(annotate_app, name="annotate")


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
        console.print(f"Label Studio is not running (data folder {data_dir})")
        raise typer.Exit(3)
    health = "[green]healthy[/green]" if info.healthy else "[yellow]not answering /health yet[/yellow]"
    console.print(f"Label Studio running at {info.url} (pid {info.pid}), {health}")
    console.print(f"login: {info.username}; credentials: {info.credentials_file}")


# -- annotation ------------------------------------------------------------------------------------------------


def _stage(config: Path, work_dir: Path | None = None):
    from pipeline.cli.project import PROJECT
    from pipeline.stage import StageContext
    from stages.annotate import AnnotateStage

    cfg = PROJECT.load_config(config, check_sources=False)
    section = getattr(cfg, "annotate", None)
    if section is None:
        raise UserError(f"{config}: no `annotate` section — nothing is sent to Label Studio for this dataset")
    ctx = StageContext(dataset=cfg.dataset, config_dir=cfg.config_dir, work_dir=work_dir or Path(tempfile.mkdtemp()),
                       labels=cfg.labels, kind=cfg.record_kind)
    return cfg, AnnotateStage(section, ctx)


@annotate_app.command("push")
def annotate_push(
    config: Path = typer.Argument(..., help="the dataset's YAML config"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="where versions and run folders live"),
    review_label_issues: bool = typer.Option(
        False, "--review-label-issues",
        help="send the rows a version's quality check flagged as likely label errors (label_issues.parquet), "
        "pre-annotated with the suggested label, instead of the config's selection"),
    version: str = typer.Option("latest", help="with --review-label-issues: the version whose label issues to send"),
    top: int = typer.Option(100, min=1, help="with --review-label-issues: how many of the most suspicious rows"),
) -> None:
    """Run the stages before annotate (reusing unchanged outputs) and import the rows that need a human.

    Rows already in the project are not imported again, however often this runs."""
    from pipeline.cli.project import PROJECT
    from pipeline.executor import LocalExecutor
    from stages.annotate import AnnotateStage

    cfg = PROJECT.load_config(config)
    if review_label_issues:
        cfg.annotate = _label_issue_review(cfg, data_dir, version, top)
    if getattr(cfg, "annotate", None) is None:
        raise UserError(f"{config}: no `annotate` section — nothing is sent to Label Studio for this dataset")
    if AnnotateStage.name not in PROJECT.plan(cfg).names:
        raise UserError("the plan does not run the annotate stage (stages/__init__.py STAGES)")
    AnnotateStage.mode = "push"
    try:
        LocalExecutor(cfg, data_dir=data_dir, log=lambda m: console.print(f"[dim]{m}[/dim]")).run()
    except PipelinePaused as exc:
        console.print(f"[green]pushed[/green]: {escape(str(exc))}")
        return
    finally:
        AnnotateStage.mode = "run"


def _label_issue_review(cfg, data_dir: Optional[Path], version: str, top: int):
    """The annotate section that sends a version's top label issues, with the suggested label pre-filled."""
    import pandas as pd

    from pipeline.store import VersionStore
    from stages.annotate import Config as AnnotateConfig

    store = VersionStore(data_dir if data_dir is not None else Path(cfg.store.data_dir))
    name = store.resolve(cfg.dataset, version)
    issues_file = store.path(cfg.dataset, name) / "label_issues.parquet"
    if not issues_file.exists():
        raise UserError(f"{cfg.dataset} {name} has no label_issues.parquet (its quality check did not run)")
    issues = pd.read_parquet(issues_file).sort_values("rank").head(top)
    if issues.empty:
        raise UserError(f"{cfg.dataset} {name}: the quality check flagged no likely label error")
    review = store.root.parent / "runs" / cfg.dataset / "label-review"
    review.mkdir(parents=True, exist_ok=True)
    flagged, predictions = review / f"{name}-ids.parquet", review / f"{name}-suggested.parquet"
    issues[["id"]].to_parquet(flagged, index=False)
    pd.DataFrame({"id": issues["id"], "label": issues["suggested_label"], "score": issues["suggested_score"],
                  "model_version": f"label-issues-{name}"}).to_parquet(predictions, index=False)
    base = cfg.annotate.model_dump() if cfg.annotate is not None else {}
    base.update(select="flagged", flagged_file=str(flagged.resolve()), predictions_file=str(predictions.resolve()),
                sample_size=None, sample_fraction=None, stratify=False, prefill=True)
    console.print(f"sending the {len(issues)} most suspicious rows of {cfg.dataset} {name} for review")
    return AnnotateConfig(**base)


@annotate_app.command("status")
def annotate_status(config: Path = typer.Argument(..., help="the dataset's YAML config")) -> None:
    """Tasks total / done / remaining, and each annotator's work."""
    cfg, stage = _stage(config)
    pid = stage.project(create=False)
    if pid is None:
        raise UserError(f"no Label Studio project {stage.title!r} at {stage.client().url} yet — run `sftpipe annotate push {config}`")
    need = stage.config.annotators_per_task
    tasks = stage.client().tasks(pid)
    ann, aside, _ = stage.pull(pid)
    per_task = (ann.groupby("task_id").size().add(aside.groupby("task_id").size(), fill_value=0)) if len(ann) or len(aside) else None
    done = int((per_task >= need).sum()) if per_task is not None else 0
    started = int(((per_task > 0) & (per_task < need)).sum()) if per_task is not None else 0
    total = len(tasks)
    console.print(f"project {escape(repr(stage.title))} at {stage.project_url(pid)}")
    console.print(f"tasks: {total} total, {done} done ({need} annotation(s) each), {started} started, {total - done} remaining")
    cancelled = sum(t["cancelled_annotations"] for t in tasks)
    table = Table("annotator", "annotations", "set aside", "median lead time (s)", title="per annotator")
    names = sorted(set(ann["annotator"]) | set(aside["annotator"]))
    for name in names:
        mine = ann[ann["annotator"] == name]
        lead = mine["lead_time"].median()
        table.add_row(escape(str(name)), str(len(mine)), str(int((aside["annotator"] == name).sum())), "" if lead != lead else f"{lead:.1f}")
    if names:
        console.print(table)
    else:
        console.print("no annotations yet")
    if cancelled:
        console.print(f"{cancelled} skipped (cancelled) annotation(s) are not counted")
    if len(aside):
        console.print(f"[yellow]{len(aside)} annotation(s) set aside[/yellow] (choice outside the label set or empty): "
                      "see `sftpipe annotate pull`")


@annotate_app.command("pull")
def annotate_pull(
    config: Path = typer.Argument(..., help="the dataset's YAML config"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for annotations.parquet, labels.parquet, agreement.json "
                                                          "(default data/labelstudio/pulls/<dataset>)"),
) -> None:
    """Export a snapshot and write the annotations, aggregated labels and agreement figures.

    (`sftpipe run` does the same and puts them into the published version.)"""
    from pipeline import labelstudio

    cfg, stage = _stage(config)
    folder = out or labelstudio.server_dir() / "pulls" / cfg.dataset
    pid = stage.project(create=False)
    if pid is None:
        raise UserError(f"no Label Studio project {stage.title!r} at {stage.client().url} yet — run `sftpipe annotate push {config}`")
    ann, aside, source_of = stage.pull(pid)
    stage.aggregate_labels(ann, aside, source_of, folder)
    s = stage.stats
    console.print(f"{len(ann)} annotation(s) of {ann['row_id'].nunique()} row(s) by {len(s['annotators'])} annotator(s); "
                  f"{s['labelled_rows']} labelled by {s['aggregation']}, {s['unresolved']} unresolved (ties), "
                  f"{s['changed_from_source']} differ from the source label")
    ag = s["agreement"]
    for pair in ag["cohen_kappa"]:
        console.print(f"Cohen's kappa {escape(str(pair['a']))} × {escape(str(pair['b']))}: {pair['kappa']} (n={pair['n']})")
    console.print(f"Fleiss' kappa: {ag['fleiss_kappa']}   Krippendorff's alpha (nominal): {ag['krippendorff_alpha']}")
    if len(aside):
        console.print(f"[yellow]{len(aside)} annotation(s) set aside[/yellow]: " + "; ".join(
            escape(f"{r.row_id} by {r.annotator}: {r.reason}") for r in aside.head(5).itertuples()))
    console.print(f"written to {folder}/ (annotations.parquet, annotations_aside.parquet, labels.parquet, agreement.json)")
