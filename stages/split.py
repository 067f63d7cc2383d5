"""split: assign train / validation / test, stratified by label, stable per row id across versions.

A row whose source has its own split (a source's `split_field`, carried by collect as `source_split`) is
published in that split, whatever its parent version had (a row that moved is counted:
`moved_to_source_split`); such rows do not count towards the ratios, which apply to the other rows.
A row that was in the parent version keeps its split (so no test row ever leaks into a later version's
train split). New rows are placed per label: ordered by a seeded hash of their id and cut so that each
label's split shares (counting the rows that kept theirs) come as close to the configured ratios as
whole rows allow. The result depends only on ids, labels, the seed and the parent version — never on
batch size or row order.
"""
from __future__ import annotations

import hashlib
from typing import Iterator

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

import schemas
from pipeline.stage import Stage, StageOutput

SOURCE_SPLIT = "source_split"  # collect's column of a row's own split from its source (null: none)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    seed: int = 0
    stratify: bool = True  # per label; rows without a label form a group of their own

    @model_validator(mode="after")
    def _check(self) -> "Config":
        unknown = set(self.ratios) - set(schemas.SPLITS)
        if unknown:
            raise ValueError(f"ratios: unknown split {', '.join(sorted(unknown))} (splits: {', '.join(schemas.SPLITS)})")
        if any(r < 0 for r in self.ratios.values()) or abs(sum(self.ratios.values()) - 1) > 1e-6:
            raise ValueError(f"ratios must be non-negative and sum to 1 (got {self.ratios})")
        return self


def id_hash(ids: list[str], seed: int) -> np.ndarray:
    """A uint64 per id from a seeded hash: the order in which new rows are dealt to splits."""
    salt = str(seed).encode() + b"\x1f"
    return np.array([int.from_bytes(hashlib.blake2b(salt + i.encode(), digest_size=8).digest(), "big") for i in ids],
                    dtype=np.uint64)


def allocate(n: int, ratios: list[float], existing: list[int]) -> list[int]:
    """How many of `n` new rows each split gets so that existing + new comes closest to the ratios."""
    total = n + sum(existing)
    need = np.maximum(np.array(ratios) * total - np.array(existing), 0.0)
    if need.sum() == 0:
        need = np.array(ratios, dtype=float)
    share = need / need.sum() * n
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


class SplitStage(Stage):
    name = "split"
    Config = Config
    whole_stream = True
    adds = (schemas.SPLIT_COLUMN,)

    def fingerprint_inputs(self) -> str:
        prev = self.ctx.previous_splits
        if prev is None or prev.num_rows == 0:
            return ""
        h = hashlib.sha256()
        for batch in prev.sort_by("id").to_batches():
            for i, s in zip(batch.column("id").to_pylist(), batch.column("split").to_pylist()):
                h.update(f"{i}\x1f{s}\x1e".encode())
        return h.hexdigest()

    def run(self, inputs) -> Iterator[StageOutput]:
        ids, labels, own = [], [], []
        label_field = self.ctx.kind.label_field  # a kind without labels: one stratum
        first = next(iter(inputs.batches()), None)
        has_own = first is not None and SOURCE_SPLIT in first.schema.names
        columns = ["id", *([label_field] if label_field else []), *([SOURCE_SPLIT] if has_own else [])]
        for batch in inputs.batches(columns=columns):
            ids.extend(batch.column("id").to_pylist())
            labels.extend(batch.column(label_field).to_pylist() if label_field else [None] * batch.num_rows)
            own.extend(batch.column(SOURCE_SPLIT).to_pylist() if has_own else [None] * batch.num_rows)
        assignment = self._assign(ids, labels, own)
        del ids, labels, own
        for batch in inputs.batches():
            splits = [assignment[i] for i in batch.column("id").to_pylist()]
            self.ctx.progress(batch.num_rows)
            yield StageOutput(kept=batch.append_column("split", pa.array(splits, pa.string())))
        self.stats["kept_previous_split"] = self._kept
        if has_own:
            self.stats["source_split"] = self._own
            self.stats["moved_to_source_split"] = self._moved

    def _assign(self, ids: list[str], labels: list[str | None], own: list[str | None]) -> dict[str, str]:
        names = [s for s in schemas.SPLITS if self.config.ratios.get(s, 0) > 0]
        ratios = [self.config.ratios[s] for s in names]
        previous: dict[str, str] = {}
        if self.ctx.previous_splits is not None:
            prev = self.ctx.previous_splits
            previous = dict(zip(prev.column("id").to_pylist(), prev.column("split").to_pylist()))
        assignment: dict[str, str] = {}
        groups: dict[str | None, list[int]] = {}
        existing: dict[str | None, list[int]] = {}
        self._own, self._moved = {s: 0 for s in schemas.SPLITS}, 0
        for pos, (rid, label, split) in enumerate(zip(ids, labels, own)):
            if split is not None:  # the source's own split (collect checked it names one)
                assignment[rid] = split
                self._own[split] += 1
                self._moved += previous.get(rid, split) != split
                continue
            key = label if self.config.stratify else None
            counts = existing.setdefault(key, [0] * len(names))
            kept = previous.get(rid)
            if kept in names:
                assignment[rid] = kept
                counts[names.index(kept)] += 1
            else:
                groups.setdefault(key, []).append(pos)
        self._kept = len(assignment) - sum(self._own.values())
        order = id_hash(ids, self.config.seed)
        for key in sorted(groups, key=lambda k: (k is None, k or "")):
            members = np.array(groups[key])
            members = members[np.argsort(order[members], kind="stable")]
            counts = allocate(len(members), ratios, existing[key])
            start = 0
            for name, count in zip(names, counts):
                for pos in members[start : start + count]:
                    assignment[ids[pos]] = name
                start += count
        return assignment
