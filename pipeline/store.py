"""The versioned store: the only writer of `<data_dir>/versions/`.

A version is a folder `versions/<dataset>/vN/` holding train / validation / test / rejected Parquet files,
`manifest.json` and a dataset card `README.md`. It is assembled in a temporary folder beside its final
place and renamed into place (atomic on one filesystem), under a per-dataset lock so two runs never take
the same number; once published, its files are made read-only and nothing here writes to it again.

Read-only modes do not stop root or the owner: the manifest records every other file's size and sha256
(`files`), and `verify` / `check_intact` recompute them (and the content fingerprint), so a version edited
after publication is noticed before it is used as a parent, found "identical" or trained on.

Every dataset, version and tag name is checked (`pipeline.names`) before a path is built from it.
"""
from __future__ import annotations

import fcntl
import hashlib
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
from schemas.summaries import acted_in_passes
from pipeline.errors import UserError, os_error_message
from pipeline.names import check_name

_VERSION = re.compile(r"^v(\d+)$")
MANIFEST = "manifest.json"


class VersionStore:
    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir) / "versions"

    # -- reading --------------------------------------------------------------------------------------------

    def datasets(self) -> list[str]:
        """The datasets with at least one published version, by name."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def no_version_error(self, dataset: str) -> UserError:
        """What to say when `dataset` has no published version here: which datasets there are, and where
        "here" is (a run started from another folder writes to another `data/`)."""
        where = self.root.absolute()
        others = self.datasets()
        if others:
            return UserError(f"dataset {dataset!r} has no published version under {where} "
                             f"(datasets there: {', '.join(others)})")
        return UserError(f"no dataset has a published version under {where} (`sftpipe run CONFIG` publishes one; "
                         f"--data-dir points elsewhere)")

    def versions(self, dataset: str) -> list[str]:
        folder = self.root / check_name("dataset name", dataset)
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
        check_name("version", version)
        if not versions:
            raise self.no_version_error(dataset)
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
        path = self.root / check_name("dataset name", dataset) / check_name("version", version) / MANIFEST
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

    def check_writable(self) -> None:
        """UserError naming the folder when versions and run folders cannot be written under the data folder
        (a read-only file system, no permission): said before any work, by `run` and by `validate`."""
        folder = self.root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        if read_only or not os.access(folder, os.W_OK | os.X_OK):
            why = "read-only file system" if read_only else "permission denied"
            raise UserError(f"{folder}: not writable ({why}); versions and run folders go under {self.root.parent} "
                            f"— choose another --data-dir or store.data_dir")

    @contextmanager
    def lock(self, dataset: str) -> Iterator[None]:
        """Hold the dataset's publish lock; a second holder gets a clear error instead of waiting."""
        folder = self.root / check_name("dataset name", dataset)
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
        if tag is not None:
            check_name("tag", tag)
            if _VERSION.match(tag) or tag == "latest" or tag.isdigit():
                raise UserError(f"tag {tag!r} would be mistaken for a version name")
        with (nullcontext() if locked else self.lock(dataset)):
            existing = self.versions(dataset)
            if tag is not None and any(self.manifest(dataset, v).get("tag") == tag for v in existing):
                raise UserError(f"tag {tag!r} is already used by a version of {dataset!r}")
            version = self.next_version(dataset)
            final = self.root / dataset / version
            tmp = self.root / dataset / f".tmp-{version}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                shutil.copytree(candidate, tmp)
                manifest = {**manifest, "version": version, "tag": tag,
                            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                manifest.pop("files", None)
                (tmp / "README.md").write_text(render_card(manifest, final), encoding="utf-8")
                manifest["files"] = file_hashes(tmp)  # every file but the manifest: what `verify` checks
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                _fsync_tree(tmp)
                os.rename(tmp, final)
            except (OSError, shutil.Error) as exc:  # a full disk, a read-only or vanished folder: nothing half-published
                shutil.rmtree(tmp, ignore_errors=True)
                raise UserError(f"cannot publish {dataset} {version}: {os_error_message(exc)}") from None
            _fsync_dir(final.parent)
            _make_read_only(final)
            return version

    def clean_stale(self, dataset: str) -> None:
        """Remove temporary folders of publishes that were killed midway (never visible as versions)."""
        folder = self.root / check_name("dataset name", dataset)
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

    # -- integrity ------------------------------------------------------------------------------------------

    def verify(self, dataset: str, version: str, content: bool = True) -> list[str]:
        """What differs between a version's files and its manifest (empty: intact). Each file the manifest
        lists is hashed again; a file missing, added or changed is named. With `content`, the content
        fingerprint (every column of every split and of rejected.parquet) is recomputed too. A version
        published before file hashes were recorded (no `files` in its manifest) has only its content
        fingerprint to check."""
        from pipeline.candidate import content_fingerprint_of

        name = self.resolve(dataset, version)
        folder = self.root / dataset / name
        manifest = self.manifest(dataset, name)
        problems: list[str] = []
        recorded = manifest.get("files")
        if isinstance(recorded, dict):
            actual = file_hashes(folder)
            for rel in sorted(set(recorded) | set(actual)):
                if rel not in actual:
                    problems.append(f"{rel}: missing")
                elif rel not in recorded:
                    problems.append(f"{rel}: not part of the version as published")
                elif actual[rel] != recorded[rel]:
                    problems.append(f"{rel}: changed (sha256 {actual[rel]['sha256'][:12]}…, "
                                    f"published {str(recorded[rel].get('sha256'))[:12]}…)")
        if content:
            try:
                fingerprint = content_fingerprint_of(folder)
            except (OSError, pa.ArrowException) as exc:
                problems.append(f"content unreadable: {exc}".replace("\n", " "))
            else:
                if fingerprint != manifest.get("content_fingerprint"):
                    problems.append(f"content fingerprint {fingerprint[:16]}… ≠ published "
                                    f"{str(manifest.get('content_fingerprint'))[:16]}…")
        return problems

    def check_intact(self, dataset: str, version: str, purpose: str) -> None:
        """UserError when a version's files are not the ones published (`purpose`: what it was about to be
        used for). Hashes only (a second or two per GB); a version from before file hashes were recorded
        is not checked here (`verify` recomputes its content fingerprint)."""
        problems = self.verify(dataset, version, content=False)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise UserError(f"{dataset} {version} was modified after it was published, so it cannot be {purpose}: "
                            f"{problems[0]}{more}; `sftpipe versions verify {dataset} {version}` lists every "
                            f"difference (restore the version from a copy, or remove its folder)")

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


def file_hashes(folder: Path) -> dict[str, dict[str, Any]]:
    """{path relative to `folder`: {bytes, sha256}} of every file under it but the manifest."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if rel == MANIFEST or p.is_dir():
            continue
        h, size = hashlib.sha256(), 0
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
        out[rel] = {"bytes": size, "sha256": h.hexdigest()}
    return out


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


# The characters that make Markdown (CommonMark, GitHub tables, the Hub's $math$) out of text; CommonMark
# lets any ASCII punctuation be backslash-escaped. `_` is left alone: inside a word it is no emphasis.
_MD_SPECIAL = re.compile(r"([\\`*\[\]()<>|!~{}#&$])")


def md_text(value: Any, limit: int = 80) -> str:
    """A value from the data (a label, a reason, a path) as literal Markdown text for one table cell or
    list item: whitespace runs (newlines too) become one space, it is cut at `limit` characters, and every
    character Markdown would read as markup is backslash-escaped — so `|` cannot split a cell, `<b>` is not
    HTML, `[x](javascript:...)` is not a link, `*` is not emphasis and `$...$` is not math."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(value: Any, limit: int = 200) -> str:
    """A value from the data (a file name) as one Markdown code span: literal whatever it holds (a fence of
    more backticks than any run inside it), on one line, cut at `limit` characters."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _decontamination_line(block: dict[str, Any] | None) -> str:
    """The card's line on evaluation sets, from the manifest's `decontamination` block (the decontaminate
    stage's), e.g. "decontaminated against: trec-test (500 items, `TREC_10.label`); 12 rows removed"; names and
    fields escaped Markdown text, file names code spans."""
    if not block or block.get("status") != "decontaminated":
        return "- decontamination: not checked against any evaluation set (no `decontaminate` section)"
    sets = "; ".join(f"{md_text(s['name'])} ({s['items']:,} items, " + ", ".join(md_code(f["path"]) for f in s["files"]) + ")"
                     for s in block.get("eval_sets", []))
    how = {"ngram": f"shared {block.get('ngram')}-word n-grams", "near": "MinHash near copies",
           "both": f"shared {block.get('ngram')}-word n-grams and MinHash near copies"}.get(block.get("mode"), "")
    return (f"- decontaminated against: {sets}; {block.get('rows_removed', 0):,} rows removed "
            f"({', '.join(md_text(f) for f in block.get('fields', []))} compared, {how})")


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
    return f"{head}; {block['acted']:,} confident ones {done}{acted_in_passes(block)}"


def gates_line(m: dict[str, Any]) -> str:
    """What the quality gate said about a version, in one line of plain text: passed, not evaluated, or
    failed and published anyway (`--allow-failed-gates`) with its blocking failures named."""
    evaluation = m.get("evaluation") or {}
    if m.get("gates") == "failed-gates":
        blocking = [f for f in evaluation.get("failures", []) if f.get("blocking")]
        named = "; ".join(f"{f.get('check')} on {f.get('split')}" + (f".{f['column']}" if f.get("column") else "")
                          for f in blocking[:5]) + (f"; and {len(blocking) - 5} more" if len(blocking) > 5 else "")
        return (f"FAILED, published with --allow-failed-gates: {len(blocking)} blocking failure(s)"
                + (f" ({named})" if named else ""))
    if m.get("gates") == "passed":
        warnings = evaluation.get("warnings") or 0
        return "passed" + (f" ({warnings} warning(s))" if warnings else "")
    return "not evaluated" + (f" ({evaluation['skipped']})" if evaluation.get("skipped") else "")


def render_card(m: dict[str, Any], folder: Path | str | None = None) -> str:
    """A Hugging Face-style dataset card for a version, from its manifest: the kind's task categories and
    schema, the splits, the funnel, the inputs, and how to load (and, for generative kinds, train on) it.
    Values from the data (labels, reasons, file names) are escaped Markdown text; labels are rows of their
    own table, so any number of them (or a very long one) keeps it readable."""
    from schemas.kinds import DEFAULT_KIND, KINDS

    kind = KINDS.get(m.get("kind") or DEFAULT_KIND, KINDS[DEFAULT_KIND])
    # Where the version is (under the store's --data-dir; the folder this card is in), for the load snippet.
    path = Path(folder).as_posix() if folder is not None else f"data/versions/{m['dataset']}/{m['version']}"
    splits = m.get("splits", {})
    labels = sorted({lab for s in splits.values() for lab in s.get("labels", {})}) if kind.label_field else []
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
        f"- quality gates: {md_text(gates_line(m), 400)}",
    ]
    if kind.label_field:
        lines.append(f"- labels: {md_text(m.get('label_origin', 'source labels'))}")
    lines.append(_decontamination_line(m.get("decontamination")))
    noise_line = _label_noise_line(m.get("label_noise")) if kind.label_field else None
    if noise_line:
        lines.append(noise_line)
    lines += [
        "",
        "## Splits",
        "",
        "| split | rows |",
        "|---|---|",
        *[f"| {md_text(name)} | {s['rows']} |" for name, s in splits.items()],
        "",
    ]
    if labels:
        names = list(splits)
        lines += ["Rows per label:", "", "| label | " + " | ".join(md_text(n) for n in names) + " |",
                  "|---|" + "---|" * len(names)]
        for lab in labels:
            lines.append(f"| {md_text(lab)} | " + " | ".join(str(splits[n].get("labels", {}).get(lab, 0)) for n in names) + " |")
        lines.append("")
    own = next((st.get("stats", {}).get("source_split") for st in m.get("stages", []) if st.get("name") == "split"), None)
    if own:
        taken = ", ".join(f"{md_text(s)} {n}" for s, n in own.items() if n)
        lines += [f"Rows whose source names its own split are in that split ({taken or 'none'}; column "
                  "`source_split`); the others were split by ratio, stable per row id.", ""]
    lines += ["## How the rows got here", "", "| stage | rows in | rows out | dropped (reason: rows) |", "|---|---|---|---|"]
    for st in m.get("stages", []):
        dropped = ", ".join(f"{md_text(k)}: {v}" for k, v in st.get("dropped", {}).items()) or "—"
        lines.append(f"| {md_text(st['name'])} | {st['rows_in']} | {st['rows_out']} | {dropped} |")
    record = " (the whole record as JSON in `record`, beside a readable rendering in `text`)" if kind.keeps_record else ""
    lines += ["", f"Rows removed are in `rejected.parquet` with the stage, the reason and details{record}.", "",
              "## Inputs", ""]
    for f in m.get("inputs", []):
        lines.append(f"- {md_code(f['path'])} ({f['bytes']} bytes, sha256 `{f['sha256'][:16]}…`)")
    if kind.card:
        lines += ["", "## Rows and training", "", kind.card.format(path=path, dataset=m["dataset"], version=m["version"])]
    else:
        lines += ["", "## Load", "", "```python", "from datasets import load_dataset",
                  f'ds = load_dataset("parquet", data_dir="{path}")', "```", ""]
    return "\n".join(lines)
