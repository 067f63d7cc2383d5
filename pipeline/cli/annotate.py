"""`sftpipe annotate push|status|pull|forget-review`: rows to Label Studio, the labelling followed, the labels
back; and the label reviews a dataset carries.

A label review (`annotate push --review-label-issues`) is recorded for the dataset in
`<data dir>/runs/<dataset>/reviews.json`; `with_reviews` adds every recorded review to the annotate section
of the config a command runs with (a config without one gets a section that selects no rows of its own), so
that `sftpipe run` applies the decisions and `annotate status` / `pull` follow the review's project too.
How a review is pushed and applied: `stages.annotate.review`.

Text that comes from the server or its annotators (names, labels, messages) is printed escaped: it is never
read as console markup.
"""
from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from pipeline.cli.console import console, typer_app
from pipeline.errors import PipelinePaused, UserError

annotate_app = typer_app(help="Send rows to Label Studio, follow the labelling, take the labels back.")

DataDirOpt = typer.Option(None, "--data-dir", help="where versions, run folders and recorded label reviews live "
                          "(default: the config's store.data_dir)")
REVIEWS_FILE = "reviews.json"


def register(app: typer.Typer) -> None:
    app.add_typer(annotate_app, name="annotate")


# -- recorded label reviews ------------------------------------------------------------------------------------


def _reviews_file(cfg, data_dir: Optional[Path]) -> Path:
    return Path(data_dir if data_dir is not None else cfg.store.data_dir) / "runs" / cfg.dataset / REVIEWS_FILE


def recorded_reviews(cfg, data_dir: Optional[Path]) -> dict[str, dict]:
    """version → what was recorded when its review was pushed (project title, rows, people per row, ...)."""
    path = _reviews_file(cfg, data_dir)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the recorded label reviews {path}: {exc}") from None


def _write_reviews(cfg, data_dir: Optional[Path], reviews: dict[str, dict]) -> None:
    path = _reviews_file(cfg, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(reviews, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def with_reviews(cfg, data_dir: Optional[Path]):
    """`cfg` with the dataset's recorded label reviews in its annotate section (in the order they were
    pushed; a later one wins for a row both reviewed)."""
    from stages.annotate import Config as AnnotateConfig
    from stages.annotate.config import Review

    recorded = recorded_reviews(cfg, data_dir)
    if not recorded:
        return cfg
    reviews = [Review(version=v, project_title=r["project_title"], annotators_per_task=r.get("annotators_per_task", 1))
               for v, r in sorted(recorded.items(), key=lambda kv: kv[1].get("pushed_at", ""))]
    section = cfg.annotate if cfg.annotate is not None else AnnotateConfig(select="none")
    known = {r.version for r in section.reviews}
    cfg.annotate = section.model_copy(update={"reviews": [*section.reviews, *(r for r in reviews if r.version not in known)]})
    return cfg


def _config(config: Path, data_dir: Optional[Path], check_sources: bool = True):
    from pipeline.cli.project import PROJECT

    return with_reviews(PROJECT.load_config(config, check_sources=check_sources), data_dir)


def _stage(cfg, section=None, work_dir: Path | None = None):
    from pipeline.stage import StageContext
    from stages.annotate import AnnotateStage

    ctx = StageContext(dataset=cfg.dataset, config_dir=cfg.config_dir, work_dir=work_dir or Path(tempfile.mkdtemp()),
                       labels=cfg.labels, kind=cfg.record_kind)
    return AnnotateStage(section if section is not None else cfg.annotate, ctx)


def _projects(cfg, config: Path):
    """(what, stage) for the config's own project and each review's: what `status` and `pull` follow."""
    from stages.annotate.review import review_section

    section = getattr(cfg, "annotate", None)
    if section is None:
        raise UserError(f"{config}: no `annotate` section and no label review — nothing of this dataset is in Label "
                        f"Studio (`sftpipe annotate push {config} --review-label-issues` sends a version's likely "
                        f"label errors)")
    out = []
    if section.select != "none":
        out.append(("annotation", _stage(cfg)))
    out += [(f"review of {r.version}", _stage(cfg, review_section(section, r))) for r in section.reviews]
    return out


# -- push ------------------------------------------------------------------------------------------------------


@annotate_app.command("push")
def annotate_push(
    config: Path = typer.Argument(..., help="the dataset's YAML config"),
    data_dir: Optional[Path] = DataDirOpt,
    review_label_issues: bool = typer.Option(
        False, "--review-label-issues",
        help="send a version's most likely label errors (its label_issues.parquet) for people to decide, as the "
        "version published them, instead of the config's selection; later runs apply the decisions"),
    version: str = typer.Option("latest", help="with --review-label-issues: the version whose label issues to send"),
    top: int = typer.Option(100, min=1, help="with --review-label-issues: how many of the most suspicious rows"),
    annotators: int = typer.Option(1, min=1, max=20, help="with --review-label-issues: people per row (with one, the "
                                   "suggested label is pre-selected; with more, nothing is, so that their agreement means something)"),
) -> None:
    """Send the rows that need a human to Label Studio; import only the rows that are not tasks yet.

    Without --review-label-issues: runs the stages before annotate (reusing unchanged outputs) and imports the
    rows the config's annotate section selects. Rows already in the project are not imported again, however
    often this runs."""
    if review_label_issues:
        _push_review(config, data_dir, version, top, annotators)
        return
    from pipeline.cli.project import PROJECT
    from pipeline.executor import LocalExecutor
    from stages.annotate import AnnotateStage

    cfg = _config(config, data_dir)
    if getattr(cfg, "annotate", None) is None or cfg.annotate.select == "none":
        raise UserError(f"{config}: no `annotate` section — nothing is sent to Label Studio for this dataset "
                        f"(--review-label-issues sends a version's likely label errors)")
    if AnnotateStage.name not in PROJECT.plan(cfg).names:
        raise UserError("the plan does not run the annotate stage (stages/__init__.py STAGES)")
    AnnotateStage.mode = "push"
    try:
        LocalExecutor(cfg, data_dir=data_dir, log=lambda m: console.print(f"[dim]{escape(m)}[/dim]")).run()
    except PipelinePaused as exc:
        console.print(f"[green]pushed[/green]: {escape(str(exc))}", highlight=False, soft_wrap=True)
        return
    finally:
        AnnotateStage.mode = "run"


def _push_review(config: Path, data_dir: Optional[Path], version: str, top: int, annotators: int) -> None:
    """Send the version's `top` likely label errors, as it published them, to their own project; record the
    review for the dataset."""
    import pandas as pd

    from pipeline.store import VersionStore
    from stages.annotate import Config as AnnotateConfig
    from stages.annotate.config import Review
    from stages.annotate.review import review_section, review_title, rows_to_review

    cfg = _config(config, data_dir, check_sources=False)
    store = VersionStore(data_dir if data_dir is not None else Path(cfg.store.data_dir))
    name = store.resolve(cfg.dataset, version)
    rows = rows_to_review(store.path(cfg.dataset, name), top)
    review = Review(version=name, project_title=review_title(cfg.dataset, name), annotators_per_task=annotators)
    suggestions = _reviews_file(cfg, data_dir).parent / "label-review" / f"{name}-suggested.parquet"
    suggestions.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": rows["id"], "label": rows["suggested_label"], "score": rows["suggested_score"],
                  "model_version": f"label-issues-{name}"}).to_parquet(suggestions, index=False)
    base = cfg.annotate if cfg.annotate is not None else AnnotateConfig(select="none")
    stage = _stage(cfg, review_section(base, review, predictions_file=str(suggestions.resolve())))
    pid = stage.project()
    pushed = stage.push(pid, rows[["id", "text", "label", "source"]])
    reviews = recorded_reviews(cfg, data_dir)
    reviews[name] = {"project_title": review.project_title, "annotators_per_task": annotators, "rows": int(len(rows)),
                     "url": stage.project_url(pid),
                     "pushed_at": reviews.get(name, {}).get("pushed_at") or datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write_reviews(cfg, data_dir, reviews)
    prefill = "the suggested label pre-selected" if stage.config.prefilled else "no label pre-selected"
    console.print(f"sent the {len(rows)} most likely label errors of {cfg.dataset} {name} for review "
                  f"({pushed['imported']} imported now, {pushed['already_in_project']} already there; {annotators} "
                  f"{'person' if annotators == 1 else 'people'} per row, {prefill}) at {stage.project_url(pid)}", highlight=False, soft_wrap=True)
    console.print(f"label them there, then `sftpipe run {config}` publishes a version with the decisions "
                  f"(every later run applies them; `sftpipe annotate status {config}` shows the progress)",
                  highlight=False, soft_wrap=True)


@annotate_app.command("forget-review")
def annotate_forget_review(
    config: Path = typer.Argument(..., help="the dataset's YAML config"),
    version: str = typer.Argument(..., help="the reviewed version (v1) whose decisions later runs should no longer apply"),
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Stop applying a label review's decisions (its Label Studio project is left as it is)."""
    from pipeline.cli.project import PROJECT

    cfg = PROJECT.load_config(config, check_sources=False)
    reviews = recorded_reviews(cfg, data_dir)
    if version not in reviews:
        raise UserError(f"{cfg.dataset} has no label review of {version!r} recorded "
                        f"(recorded: {', '.join(reviews) or 'none'})")
    forgotten = reviews.pop(version)
    _write_reviews(cfg, data_dir, reviews)
    console.print(f"the review of {version} is no longer applied; its project stays in Label Studio at "
                  f"{escape(str(forgotten.get('url', '?')))}", highlight=False, soft_wrap=True)


# -- status, pull ----------------------------------------------------------------------------------------------


@annotate_app.command("status")
def annotate_status(config: Path = typer.Argument(..., help="the dataset's YAML config"), data_dir: Optional[Path] = DataDirOpt) -> None:
    """Tasks total / done / remaining, and each annotator's work, for the annotation and each label review."""
    cfg = _config(config, data_dir, check_sources=False)
    for what, stage in _projects(cfg, config):
        pid = stage.project(create=False)
        if pid is None:
            raise UserError(f"no Label Studio project {stage.title!r} at {stage.client().url} yet — run "
                            f"`sftpipe annotate push {config}`")
        need = stage.config.annotators_per_task
        tasks = stage.client().tasks(pid)
        ann, aside, _ = stage.pull(pid)
        per_task = (ann.groupby("task_id").size().add(aside.groupby("task_id").size(), fill_value=0)) if len(ann) or len(aside) else None
        done = int((per_task >= need).sum()) if per_task is not None else 0
        started = int(((per_task > 0) & (per_task < need)).sum()) if per_task is not None else 0
        total = len(tasks)
        console.print(f"[bold]{escape(what)}[/bold]: project {escape(repr(stage.title))} at {stage.project_url(pid)}",
                      highlight=False, soft_wrap=True)
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
                                                          "(default data/labelstudio/pulls/<dataset>; a review's in review-<version>/ inside)"),
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Export a snapshot and write the annotations, aggregated labels and agreement figures, for the annotation
    and each label review.

    (`sftpipe run` does the same and puts them into the published version.)"""
    from pipeline import labelstudio

    cfg = _config(config, data_dir, check_sources=False)
    base = out or labelstudio.server_dir() / "pulls" / cfg.dataset
    for what, stage in _projects(cfg, config):
        folder = base if what == "annotation" else base / f"review-{what.rsplit(' ', 1)[-1]}"
        pid = stage.project(create=False)
        if pid is None:
            raise UserError(f"no Label Studio project {stage.title!r} at {stage.client().url} yet — run "
                            f"`sftpipe annotate push {config}`")
        ann, aside, source_of = stage.pull(pid)
        stage.aggregate_labels(ann, aside, source_of, folder)
        s = stage.stats
        console.print(f"[bold]{escape(what)}[/bold]: {len(ann)} annotation(s) of {ann['row_id'].nunique()} row(s) by "
                      f"{len(s['annotators'])} annotator(s); {s['labelled_rows']} labelled by {s['aggregation']}, "
                      f"{s['unresolved']} unresolved (ties), {s['changed_from_source']} differ from the source label",
                      highlight=False, soft_wrap=True)
        ag = s["agreement"]
        for pair in ag["cohen_kappa"]:
            console.print(f"Cohen's kappa {escape(str(pair['a']))} × {escape(str(pair['b']))}: {pair['kappa']} (n={pair['n']})")
        if ag["fleiss_kappa"] is not None or ag["krippendorff_alpha"] is not None:
            console.print(f"Fleiss' kappa: {ag['fleiss_kappa']}   Krippendorff's alpha (nominal): {ag['krippendorff_alpha']}")
        if len(aside):
            console.print(f"[yellow]{len(aside)} annotation(s) set aside[/yellow]: " + "; ".join(
                escape(f"{r.row_id} by {r.annotator}: {r.reason}") for r in aside.head(5).itertuples()))
        console.print(f"written to {folder}/ (annotations.parquet, annotations_aside.parquet, labels.parquet, agreement.json)",
                      highlight=False, soft_wrap=True)
