"""`sftpipe versions list|show|diff`: the published versions of a dataset."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pipeline.cli.console import DataDir, console, print_funnel_dicts, store as _store
from pipeline.errors import UserError

versions_app = typer.Typer(help="List, inspect and compare published dataset versions.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(versions_app, name="versions")


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
    print_funnel_dicts(m.get("stages", []))
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
