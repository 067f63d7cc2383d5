"""`sftpipe versions list|show|diff|verify`: the published versions of a dataset."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from pipeline.cli.console import DataDir, console, err_console, print_funnel_dicts, store as _store, typer_app
from pipeline.errors import UserError
from pipeline.store import gates_line

versions_app = typer_app(help="List, inspect and compare published dataset versions.")


def register(app: typer.Typer) -> None:
    app.add_typer(versions_app, name="versions")


@versions_app.command("list")
def versions_list(dataset: str = typer.Argument(..., help="dataset name"), data_dir: Optional[Path] = DataDir) -> None:
    """One line per version: rows per split, rejected rows, the quality gates' verdict, tag, creation time."""
    store = _store(data_dir)
    versions = store.versions(dataset)
    if not versions:
        raise store.no_version_error(dataset)
    table = Table("version", "tag", "created", "train", "validation", "test", "rejected", "gates", "fingerprint")
    for v in versions:
        m = store.manifest(dataset, v)
        s = m.get("splits", {})
        gates = {"failed-gates": "[red]FAILED[/red]", "passed": "passed"}.get(m.get("gates"), "not evaluated")
        table.add_row(v, escape(m.get("tag") or ""), m.get("created_at", ""),
                      *(str(s.get(k, {}).get("rows", 0)) for k in ("train", "validation", "test")),
                      str(m.get("rejected", {}).get("rows", 0)), gates, m.get("content_fingerprint", "")[:12])
    console.print(table)


@versions_app.command("show")
def versions_show(
    dataset: str = typer.Argument(..., help="dataset name"), version: str = typer.Argument(..., help="v3, 3, latest or a tag"),
    data_dir: Optional[Path] = DataDir, as_json: bool = typer.Option(False, "--json", help="print the whole manifest"),
) -> None:
    """A version's manifest: where its rows came from, what was dropped and why, splits and labels."""
    store = _store(data_dir)
    name = store.resolve(dataset, version)
    m = store.manifest(dataset, name)
    if as_json:
        print(json.dumps(m, indent=2, ensure_ascii=False))
        return
    console.print(f"[bold]{dataset} {name}[/bold]" + (f" ({m['tag']})" if m.get("tag") else "") + f" — {store.path(dataset, name).absolute()}")
    console.print(f"created {m.get('created_at')}, parent {m.get('parent_version') or '—'}, "
                  f"fingerprint {m.get('content_fingerprint', '')[:16]}, code {m.get('code_version')}")
    colour = {"failed-gates": "red", "passed": "green"}.get(m.get("gates"), "yellow")
    console.print(f"quality gates: [{colour}]{escape(gates_line(m))}[/{colour}]", highlight=False, soft_wrap=True)
    print_funnel_dicts(m.get("stages", []))
    table = Table("split", "rows", "labels")
    for s, info in m.get("splits", {}).items():
        table.add_row(s, str(info["rows"]), ", ".join(f"{k}: {v}" for k, v in info["labels"].items()))
    console.print(table)


@versions_app.command("diff")
def versions_diff(
    dataset: str = typer.Argument(..., help="dataset name"),
    a: str = typer.Argument(..., help="the version to compare from, the older one (v1, 1, a tag); a newer one is "
                            "accepted with a warning, and the changes then read backwards"),
    b: str = typer.Argument(..., help="the version to compare to, the newer one (v2, latest, a tag)"),
    data_dir: Optional[Path] = DataDir,
    as_json: bool = typer.Option(False, "--json", help="print the whole diff as JSON (with up to 5 relabelled rows per split)"),
) -> None:
    """Per split: rows added, removed, relabelled, moved in; and how the label distribution changed."""
    store = _store(data_dir)
    older, newer = store.resolve(dataset, a), store.resolve(dataset, b)
    if older == newer:
        console.print(f"{dataset} {older} and {newer} are the same version: nothing differs"
                      + (f" ({a!r} and {b!r} both name it)" if a != b else ""))
        return
    if int(older[1:]) > int(newer[1:]):
        err_console.print(f"[yellow]note:[/yellow] {older} is newer than {newer}: showing the changes from {older} back "
                          f"to {newer} (`sftpipe versions diff {dataset} {newer} {older}` shows what changed since {newer})",
                          highlight=False, soft_wrap=True)
    d = store.diff(dataset, older, newer)
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


@versions_app.command("verify")
def versions_verify(
    dataset: str = typer.Argument(..., help="dataset name"),
    version: Optional[str] = typer.Argument(None, help="v3, 3, latest or a tag (default: every version)"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Check that published versions are what was published: every file's sha256 against the manifest and
    the content fingerprint recomputed from the rows. Exits non-zero when one differs (read-only modes do
    not stop root or the owner from editing a version)."""
    store = _store(data_dir)
    names = [store.resolve(dataset, version)] if version is not None else store.versions(dataset)
    if not names:
        raise store.no_version_error(dataset)
    modified = []
    for name in names:
        problems = store.verify(dataset, name)
        if not problems:
            console.print(f"[green]ok[/green] {dataset} {name}: files and content fingerprint as published")
            continue
        modified.append(name)
        console.print(f"[red]modified[/red] {dataset} {name}:", highlight=False)
        for problem in problems:
            console.print(f"  {escape(problem)}", highlight=False, soft_wrap=True)
    if modified:
        raise UserError(f"{len(modified)} of {len(names)} version(s) of {dataset!r} differ from what was published: "
                        f"{', '.join(modified)}")
