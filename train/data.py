"""Reading a published dataset version (read-only) for training and scoring.

Which folder a name such as `v3`, `3`, `latest` or a tag means is the store's fact (`pipeline.store.VersionStore`);
this module only opens that folder. It does not know what a row holds: a task names the payload columns it
reads for each record kind (`Task.kinds`) and decides which rows it can use (`Task.usable_rows`). A published
version is never written to.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError
from pipeline.store import VersionStore

SPLITS = ("train", "validation", "test")

# The manifest key naming the dataset's record kind. Versions published before record kinds existed have none,
# and every one of them is a classification version.
KIND_KEY = "kind"
DEFAULT_KIND = "classification"


@dataclass(frozen=True)
class PublishedVersion:
    """One published version's folder and manifest; its split files are read on demand (`read_split`)."""

    dataset: str
    version: str  # the resolved name, `v3`
    path: Path
    manifest: dict

    @property
    def fingerprint(self) -> str | None:
        return self.manifest.get("content_fingerprint")

    @property
    def labels(self) -> list[str] | None:
        """The label set the manifest declares, if any."""
        labels = self.manifest.get("labels")
        return list(labels) if labels else None

    @property
    def kind(self) -> str:
        return self.manifest.get(KIND_KEY) or DEFAULT_KIND

    def split_file(self, split: str) -> Path:
        return self.path / f"{split}.parquet"

    def read_split(self, split: str, columns: tuple[str, ...]) -> pa.Table:
        """`id` and `columns` of every row of one split (UserError when the file is missing, unreadable or
        lacks a column). A file without `id` gets the row numbers, so predictions can still be matched back."""
        file = self.split_file(split)
        if not file.is_file():
            raise UserError(f"{file}: missing; {self.path} is not a complete published version")
        try:
            names = pq.read_schema(file).names
            missing = [c for c in columns if c not in names]
            if missing:
                raise UserError(f"{file}: column(s) {', '.join(missing)} missing (has: {', '.join(names)})")
            # only what the task reads: a version also carries signal columns, meta and lineage
            table = pq.read_table(file, columns=[c for c in ("id", *columns) if c in names])
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"{file}: unreadable Parquet: {exc}".replace("\n", " ")) from None
        if "id" not in table.column_names:
            table = table.append_column("id", pa.array([str(i) for i in range(table.num_rows)]))
        return table.select(["id", *columns])


def open_version(data_dir: Path | str, dataset: str, version: str | None) -> PublishedVersion:
    """A published version; `version` is `v3`, `3`, `latest` (or None) or a tag. UserError when it does not exist
    or its manifest cannot be read."""
    store = VersionStore(Path(data_dir))
    name = store.resolve(dataset, version or "latest")  # UserError naming the versions there are
    path = Path(store.path(dataset, name))
    manifest = _read_manifest(path)
    store.check_intact(dataset, name, "trained on or scored on")  # a version edited since it was published
    return PublishedVersion(dataset, name, path, manifest)


def _read_manifest(path: Path) -> dict:
    # Read here rather than through VersionStore.manifest: a training run wants to say *why* a version cannot
    # be used (missing: an incomplete version; unreadable: what is wrong), in one line.
    file = path / "manifest.json"
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{file}: missing; {path} is not a complete published version") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{file}: unreadable: {exc}".replace("\n", " ")) from None
    if not isinstance(manifest, dict):
        raise UserError(f"{file}: expected a JSON object")
    return manifest
