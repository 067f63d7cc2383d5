"""The versioned store: the only writer of `<data_dir>/versions/`.

A version is a folder `versions/<dataset>/vN/` holding train / validation / test / rejected Parquet files,
`manifest.json` and a dataset card `README.md`. It is assembled in a temporary folder beside its final
place and renamed into place (atomic on one filesystem), under a per-dataset lock so two runs never take
the same number; once published, its files are made read-only and nothing here writes to it again.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import stat
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from pipeline.errors import UserError

_VERSION = re.compile(r"^v(\d+)$")


class VersionStore:
    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir) / "versions"

    # -- reading --------------------------------------------------------------------------------------------

    def versions(self, dataset: str) -> list[str]:
        folder = self.root / dataset
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p.name) for p in folder.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir()]
        return [name for _, name in sorted(found)]

    def latest(self, dataset: str) -> str | None:
        versions = self.versions(dataset)
        return versions[-1] if versions else None

    def resolve(self, dataset: str, version: str) -> str:
        """Accept `v3`, `3`, `latest` or a tag; return the version name or raise UserError."""
        versions = self.versions(dataset)
        if not versions:
            raise UserError(f"dataset {dataset!r} has no published version under {self.root}")
        if version == "latest":
            return versions[-1]
        if version.isdigit():
            version = f"v{version}"
        if version in versions:
            return version
        tagged = [v for v in versions if self.manifest(dataset, v).get("tag") == version]
        if tagged:
            return tagged[-1]
        raise UserError(f"dataset {dataset!r} has no version {version!r} (versions: {', '.join(versions)})")

    def path(self, dataset: str, version: str) -> Path:
        return self.root / dataset / self.resolve(dataset, version)

    def manifest(self, dataset: str, version: str) -> dict[str, Any]:
        path = self.root / dataset / version / "manifest.json"
        if not path.is_file():
            path = self.path(dataset, version) / "manifest.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None

    def next_version(self, dataset: str) -> str:
        """The name the next publish will take (certain only while holding the dataset's lock)."""
        latest = self.latest(dataset)
        return f"v{int(latest[1:]) + 1}" if latest else "v1"

    def find(self, dataset: str, content_fingerprint: str, config_hash: str) -> str | None:
        """The version with this content and config, if one was published."""
        for v in reversed(self.versions(dataset)):
            m = self.manifest(dataset, v)
            if m.get("content_fingerprint") == content_fingerprint and m.get("config_hash") == config_hash:
                return v
        return None

    def splits_of(self, dataset: str, version: str) -> pa.Table:
        """id → split of a version (what the split stage keeps stable)."""
        folder = self.path(dataset, version)
        parts = [pq.read_table(folder / f"{s}.parquet", columns=["id", "split"]) for s in schemas.SPLITS
                 if (folder / f"{s}.parquet").exists()]
        return pa.concat_tables(parts) if parts else pa.table({"id": pa.array([], pa.string()), "split": pa.array([], pa.string())})

    # -- writing --------------------------------------------------------------------------------------------

    @contextmanager
    def lock(self, dataset: str) -> Iterator[None]:
        """Hold the dataset's publish lock; a second holder gets a clear error instead of waiting."""
        folder = self.root / dataset
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"another run of {dataset!r} is in progress (lock {folder / '.lock'}); try again when it ends") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def publish(self, dataset: str, candidate: Path, manifest: dict[str, Any], tag: str | None = None,
                locked: bool = False) -> str:
        """Copy a candidate folder into the next version number, atomically; return the version name.
        `locked`: the caller already holds the dataset's lock."""
        if tag is not None and (_VERSION.match(tag) or tag == "latest" or tag.isdigit()):
            raise UserError(f"tag {tag!r} would be mistaken for a version name")
        with (nullcontext() if locked else self.lock(dataset)):
            existing = self.versions(dataset)
            if tag is not None and any(self.manifest(dataset, v).get("tag") == tag for v in existing):
                raise UserError(f"tag {tag!r} is already used by a version of {dataset!r}")
            version = self.next_version(dataset)
            final = self.root / dataset / version
            tmp = self.root / dataset / f".tmp-{version}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(candidate, tmp)
            manifest = {**manifest, "version": version, "tag": tag,
                        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            (tmp / "README.md").write_text(render_card(manifest), encoding="utf-8")
            _fsync_tree(tmp)
            os.rename(tmp, final)
            _fsync_dir(final.parent)
            _make_read_only(final)
            return version

    def clean_stale(self, dataset: str) -> None:
        """Remove temporary folders of publishes that were killed midway (never visible as versions)."""
        folder = self.root / dataset
        if folder.is_dir():
            for p in folder.glob(".tmp-*"):
                shutil.rmtree(p, ignore_errors=True)

    # -- comparing ------------------------------------------------------------------------------------------

    def diff(self, dataset: str, a: str, b: str) -> dict[str, Any]:
        """Per split: rows added, removed, relabelled, moved from another split; label distribution change."""
        a, b = self.resolve(dataset, a), self.resolve(dataset, b)
        old, new = self._rows(dataset, a), self._rows(dataset, b)
        joined = old.merge(new, on="id", how="outer", suffixes=("_old", "_new"), indicator=True)
        out: dict[str, Any] = {"dataset": dataset, "from": a, "to": b, "splits": {}}
        for split in schemas.SPLITS:
            in_old = joined["split_old"] == split
            in_new = joined["split_new"] == split
            both = in_old & in_new
            relabelled = both & (joined["label_old"].fillna("\0") != joined["label_new"].fillna("\0"))
            added = in_new & ~in_old
            out["splits"][split] = {
                "rows_before": int(in_old.sum()),
                "rows_after": int(in_new.sum()),
                "added": int((added & (joined["_merge"] == "right_only")).sum()),
                "moved_in": int((added & (joined["_merge"] == "both")).sum()),
                "removed": int((in_old & ~in_new).sum()),
                "relabelled": int(relabelled.sum()),
                "labels_before": _counts(joined.loc[in_old, "label_old"]),
                "labels_after": _counts(joined.loc[in_new, "label_new"]),
                "examples_relabelled": joined.loc[relabelled, ["id", "label_old", "label_new"]].head(5).to_dict("records"),
            }
        return out

    def _rows(self, dataset: str, version: str) -> pd.DataFrame:
        folder = self.root / dataset / version
        parts = []
        for s in schemas.SPLITS:
            if (folder / f"{s}.parquet").exists():
                names = pq.read_schema(folder / f"{s}.parquet").names
                table = pq.read_table(folder / f"{s}.parquet", columns=[c for c in ("id", "label", "split") if c in names])
                if "label" not in table.column_names:  # a kind without labels
                    table = table.append_column("label", pa.nulls(table.num_rows, pa.string()))
                parts.append(table.to_pandas())
        return pd.concat(parts, ignore_index=True)


def _counts(labels: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in labels.fillna("(none)").value_counts().sort_index().items()}


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_read_only(folder: Path) -> None:
    for p in [*folder.rglob("*"), folder]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _decontamination_line(block: dict[str, Any] | None) -> str:
    """The card's line on evaluation sets, from the manifest's `decontamination` block (the decontaminate
    stage's), e.g. "decontaminated against: trec-test (500 items, `TREC_10.label`); 12 rows removed"."""
    if not block or block.get("status") != "decontaminated":
        return "- decontamination: not checked against any evaluation set (no `decontaminate` section)"
    sets = "; ".join(f"{s['name']} ({s['items']:,} items, " + ", ".join(f"`{f['path']}`" for f in s["files"]) + ")"
                     for s in block.get("eval_sets", []))
    how = {"ngram": f"shared {block.get('ngram')}-word n-grams", "near": "MinHash near copies",
           "both": f"shared {block.get('ngram')}-word n-grams and MinHash near copies"}.get(block.get("mode"), "")
    return (f"- decontaminated against: {sets}; {block.get('rows_removed', 0):,} rows removed "
            f"({', '.join(block.get('fields', []))} compared, {how})")


def _label_noise_line(block: dict[str, Any] | None) -> str | None:
    """The card's line on label evidence, from the manifest's `label_noise` block (the label_noise stage's)."""
    if not block:
        return None
    if not block.get("ran"):
        return f"- label noise: not checked ({block.get('skipped')})"
    head = (f"- label noise: {block['flagged']:,} of {block['labelled_rows']:,} rows flagged ({block['share']:.2%}) at "
            f"cross-validated accuracy {block['cv_accuracy']:.3f} (kappa {block['kappa']:.3f})")
    if block.get("weak_model"):
        return f"{head}; nothing acted on — {block['weak_model']}"
    done = {"drop": "dropped (rejected.parquet, reason `label_noise`)", "review": "sent to review",
            "warn": "only reported"}.get(block.get("action"), block.get("action"))
    return f"{head}; {block['acted']:,} confident ones {done}"


def render_card(m: dict[str, Any]) -> str:
    """A Hugging Face-style dataset card for a version, from its manifest: the kind's task categories and
    schema, the splits, the funnel, the inputs, and how to load (and, for generative kinds, train on) it."""
    from schemas.kinds import DEFAULT_KIND, KINDS

    kind = KINDS.get(m.get("kind") or DEFAULT_KIND, KINDS[DEFAULT_KIND])
    path = f"data/versions/{m['dataset']}/{m['version']}"
    labels = sorted({lab for s in m.get("splits", {}).values() for lab in s.get("labels", {})}) \
        if kind.label_field else []
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        *[f"  - split: {s}\n    path: {s}.parquet" for s in schemas.SPLITS],
        "task_categories:",
        *[f"- {c}" for c in kind.task_categories],
        "---",
        f"# {m['dataset']} {m['version']}" + (f" ({m['tag']})" if m.get("tag") else ""),
        "",
        m.get("description") or "",
        "",
        f"- record kind: `{kind.name}` — {kind.description}",
        f"- created: {m.get('created_at')}",
        f"- parent version: {m.get('parent_version') or '—'}",
        f"- content fingerprint: `{m.get('content_fingerprint')}`",
        f"- config hash: `{m.get('config_hash')}`; code version: `{m.get('code_version')}`",
    ]
    if kind.label_field:
        lines.append(f"- labels: {m.get('label_origin', 'source labels')}")
    lines.append(_decontamination_line(m.get("decontamination")))
    noise_line = _label_noise_line(m.get("label_noise")) if kind.label_field else None
    if noise_line:
        lines.append(noise_line)
    lines += [
        "",
        "## Splits",
        "",
        "| split | rows |" + "".join(f" {lab} |" for lab in labels),
        "|---|---|" + "---|" * len(labels),
    ]
    for name, s in m.get("splits", {}).items():
        lines.append(f"| {name} | {s['rows']} |" + "".join(f" {s['labels'].get(lab, 0)} |" for lab in labels))
    lines += ["", "## How the rows got here", "", "| stage | rows in | rows out | dropped (reason: rows) |", "|---|---|---|---|"]
    for st in m.get("stages", []):
        dropped = ", ".join(f"{k}: {v}" for k, v in st.get("dropped", {}).items()) or "—"
        lines.append(f"| {st['name']} | {st['rows_in']} | {st['rows_out']} | {dropped} |")
    record = " (the whole record as JSON in `record`, beside a readable rendering in `text`)" if kind.keeps_record else ""
    lines += ["", f"Rows removed are in `rejected.parquet` with the stage, the reason and details{record}.", "",
              "## Inputs", ""]
    for f in m.get("inputs", []):
        lines.append(f"- `{f['path']}` ({f['bytes']} bytes, sha256 `{f['sha256'][:16]}…`)")
    if kind.card:
        lines += ["", "## Rows and training", "", kind.card.format(path=path, dataset=m["dataset"], version=m["version"])]
    else:
        lines += ["", "## Load", "", "```python", "from datasets import load_dataset",
                  f'ds = load_dataset("parquet", data_dir="{path}")', "```", ""]
    return "\n".join(lines)
