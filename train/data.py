"""Reading published dataset versions (read-only) for training and scoring.

Everything that touches `<data_dir>/versions/` goes through `version_dir` / `read_manifest`, so switching to
the store (`pipeline.store.VersionStore`) is one place. A published version is never written to.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import UserError

SPLITS = ("train", "validation", "test")
_VERSION_RE = re.compile(r"^v(\d+)$")


def _store(data_dir: Path):
    """The lead's VersionStore when it exists, else None (we read the folder layout directly)."""
    try:
        from pipeline.store import VersionStore  # noqa: PLC0415
    except ImportError:
        return None
    return VersionStore(Path(data_dir))


def list_versions(data_dir: Path, dataset: str) -> list[str]:
    root = Path(data_dir) / "versions" / dataset
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)]
    return sorted(found, key=lambda v: int(v[1:]))


def latest_version(data_dir: Path, dataset: str) -> str:
    versions = list_versions(data_dir, dataset)
    if not versions:
        raise UserError(
            f"dataset {dataset!r} has no published version under {Path(data_dir) / 'versions' / dataset}: "
            "run the pipeline first, or pass --data-dir"
        )
    return versions[-1]


def resolve_version(data_dir: Path, dataset: str, version: str | None) -> tuple[str, Path]:
    """(version name, folder) of a published version; `version` may be `v3`, `3`, `latest`/None or a tag (the
    store resolves tags). UserError when it does not exist."""
    store = _store(data_dir)
    if store is not None:
        name = store.resolve(dataset, version or "latest")  # UserError when missing
        return name, Path(store.path(dataset, name))
    if version in (None, "latest"):
        version = latest_version(data_dir, dataset)
    if version.isdigit():
        version = f"v{version}"
    path = Path(data_dir) / "versions" / dataset / version
    if not path.is_dir():
        have = list_versions(data_dir, dataset)
        hint = f"published versions: {', '.join(have)}" if have else f"no published version under {path.parent}"
        raise UserError(f"version {version!r} of dataset {dataset!r} not found ({hint})")
    return version, path


def version_dir(data_dir: Path, dataset: str, version: str) -> Path:
    """The folder of a published version; UserError when it does not exist."""
    return resolve_version(data_dir, dataset, version)[1]


def read_manifest(path: Path) -> dict:
    file = Path(path) / "manifest.json"
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{file}: missing; {path} is not a complete published version") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{file}: unreadable: {exc}".replace("\n", " ")) from None
    if not isinstance(manifest, dict):
        raise UserError(f"{file}: expected a JSON object")
    return manifest


def read_split(path: Path, split: str) -> pa.Table:
    """id, text, label of one split's rows (all rows, labelled or not)."""
    file = Path(path) / f"{split}.parquet"
    if not file.is_file():
        raise UserError(f"{file}: missing; {path} is not a complete published version")
    try:
        table = pq.read_table(file)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"{file}: unreadable Parquet: {exc}".replace("\n", " ")) from None
    missing = [c for c in ("text", "label") if c not in table.column_names]
    if missing:
        raise UserError(f"{file}: column(s) {', '.join(missing)} missing (has: {', '.join(table.column_names)})")
    if "id" not in table.column_names:
        table = table.append_column("id", pa.array([str(i) for i in range(table.num_rows)]))
    table = table.select(["id", "text", "label"])
    try:
        return table.cast(pa.schema([("id", pa.string()), ("text", pa.string()), ("label", pa.string())]))
    except (pa.ArrowException, ValueError) as exc:
        raise UserError(f"{file}: id/text/label are not strings: {exc}".replace("\n", " ")) from None


@dataclass
class VersionData:
    dataset: str
    version: str
    path: Path
    manifest: dict
    splits: dict[str, pa.Table]  # labelled rows only
    unlabelled: dict[str, int]  # rows without a label, per split (not trained or scored on)

    @property
    def fingerprint(self) -> str | None:
        return self.manifest.get("content_fingerprint")

    @property
    def labels(self) -> list[str] | None:
        labels = self.manifest.get("labels")
        return list(labels) if labels else None


def load_version(data_dir: Path, dataset: str, version: str | None, splits=SPLITS) -> VersionData:
    """A published version's labelled rows per split; `version` as in `resolve_version`."""
    version, path = resolve_version(data_dir, dataset, version)
    if not path.is_dir():
        raise UserError(f"version {version!r} of dataset {dataset!r} not found at {path}")
    manifest = read_manifest(path)
    tables, unlabelled = {}, {}
    for split in splits:
        table = read_split(path, split)
        has_label = pc.fill_null(pc.not_equal(pc.utf8_length(pc.utf8_trim_whitespace(table["label"])), 0), False)
        kept = table.filter(has_label)
        tables[split] = kept
        unlabelled[split] = table.num_rows - kept.num_rows
    return VersionData(dataset, version, path, manifest, tables, unlabelled)
