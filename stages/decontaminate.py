"""decontaminate: remove the rows that overlap an evaluation set (optional: runs when the config has a
`decontaminate:` section).

A row whose compared text (the prompt by default; `compare` names our fields) shares an n-gram with an
item of an evaluation set — 13 words after casefolding and punctuation removal, 23 characters of Chinese
or Japanese, 54 code points of Thai; a short item whole — or, in `near` mode, is a MinHash near copy of
one verified by Jaccard, goes to `rejected.parquet` with reason `contaminated` and `details` naming the
eval set, the item's id, both fields, how it matched and the overlapping n-gram (or the Jaccard). Eval
sets are read in any format collect reads; reading them, the index and the matching are
`pipeline.sources.eval_sets` (over the engines `pipeline.decontamination` and `pipeline.decontamination_near`),
shared with the quality gate, which re-checks the published rows.

Where it runs: after clean, before dedupe. After clean, so the texts compared are those that will be
published (mojibake repaired, HTML stripped). Before dedupe, so that every copy of a contaminated text is
removed *as contaminated* (counted against its eval set, not filed as a duplicate of a row that is then
removed), and dedupe's invariant holds on the published version: every removed duplicate names a kept,
published row. Before annotate and split: no human labels a row that is then removed, and splits are
drawn from clean rows.

Row-wise: a row's fate depends on the row and the eval sets only, so the stage streams its input and the
Ray executor runs it on its actors like clean (each actor builds the index once). Locally, with several
workers, the index is saved to a temporary folder that worker processes memory-map, and batches are
matched in parallel, results consumed in input order. The eval sets' file digests are the stage's
fingerprint inputs: a changed benchmark file re-runs it.

Its typed summary (`schemas.summaries.DecontaminationSummary`) carries per eval set the items read, how
they are compared, the rows removed and examples; the manifest's `decontamination` block and the dataset
card's line come from it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from pipeline.sources import eval_sets
from pipeline.errors import UserError
from pipeline.sources import records
from pipeline.sources.files import check_source
from pipeline.stage import Stage, StageInput, StageOutput, rejected_rows
from pipeline.workers import worker_pool
from schemas.summaries import (ContaminationExample, DecontaminationSummary, EvalFile, EvalSetFigures)

REASON = "contaminated"


class DecontaminateStage(Stage):
    name = "decontaminate"
    Config = eval_sets.Config
    optional = True
    summary_type = DecontaminationSummary

    @classmethod
    def check_section(cls, section: eval_sets.Config, config_dir: Path, config: Any) -> None:
        """Our fields exist for the kind; each eval set's files exist, hold the fields it names and, where the
        config sets `inputs_within`, resolve inside that folder (as the sources must)."""
        section.fields_for(config.record_kind)
        within = getattr(config, "inputs_within", None)
        within = config_dir / within if within is not None else None
        for i, eval_set in enumerate(section.eval_sets):
            try:
                source = eval_sets.resolved(eval_set)
                required = records.required_columns(source) if source.record_format else None
                check_source(source, config_dir, within, required)
            except (UserError, ValueError) as exc:
                raise UserError(f"decontaminate.eval_sets[{i}] ({eval_set.name}): {exc}") from None

    @classmethod
    def manifest_entries(cls, summary: DecontaminationSummary | None, skipped: str | None) -> dict[str, Any]:
        """The manifest's `decontamination` block (the dataset card's line is drawn from it)."""
        if summary is None:
            return {"decontamination": {"status": "not run", "reason": skipped or "no decontaminate section"}}
        return {"decontamination": {
            "status": "decontaminated", "mode": summary.mode, "fields": summary.fields,
            "ngram": summary.settings.get("ngram"), "rows_checked": summary.rows_checked,
            "rows_removed": summary.rows_removed,
            "eval_sets": [{"name": s.name, "items": s.items, "fields": s.fields, "rows_removed": s.rows_removed,
                           "files": [f.model_dump() for f in s.files]} for s in summary.eval_sets]}}

    def __init__(self, config: eval_sets.Config, ctx):
        super().__init__(config, ctx)
        self.fields = config.fields_for(ctx.kind)
        self._digests: list[dict[str, Any]] | None = None

    def _files(self) -> list[dict[str, Any]]:
        if self._digests is None:
            try:
                self._digests = eval_sets.digests(self.config, self.ctx.config_dir)
            except UserError as exc:
                raise UserError(f"decontaminate: {exc}") from None
        return self._digests

    def fingerprint_inputs(self) -> str:
        return json.dumps(self._files(), sort_keys=True)

    def _index(self) -> eval_sets.EvalIndex:
        return eval_sets.cached_index(self.config, self.ctx.config_dir, self._files())

    # -- a run -----------------------------------------------------------------------------------------------

    def run(self, inputs: StageInput | None) -> Iterator[StageOutput]:
        index = self._index()
        names = index.names
        removed = {name: 0 for name in names}
        by_match: dict[str, int] = {}
        examples: dict[str, dict[str, dict]] = {name: {} for name in names}
        checked = 0
        for batch, texts, matches in self._matched(inputs, index):
            checked += batch.num_rows
            self.ctx.progress(batch.num_rows)
            keep = np.ones(batch.num_rows, dtype=bool)
            keep[matches.row] = False
            rejected = None
            if len(matches):
                details = [index.details(matches, k, self.fields) for k in range(len(matches))]
                rows = batch.take(pa.array(matches.row))
                rejected = rejected_rows(rows, self.name, REASON, details, kind=self.ctx.kind)
                ids = rows.column("id").to_pylist()
                for k, d in enumerate(details):
                    removed[d["eval_set"]] += 1
                    by_match[d["match"]] = by_match.get(d["match"], 0) + 1
                    self._keep_example(examples[d["eval_set"]], ids[k], d,
                                       eval_sets.excerpt(texts[int(matches.field[k])], int(matches.row[k])))
            kept = batch.filter(pa.array(keep)) if not keep.all() else batch
            yield StageOutput(kept=kept if kept.num_rows else None, rejected=rejected)
        # Additive over chunks (the Ray executor sums numbers and merges dicts): `summarize` trims examples.
        self.stats.update(rows_checked=checked, rows_removed=sum(removed.values()), removed_by_eval_set=removed,
                          removed_by_match=by_match, examples=examples)

    def _keep_example(self, kept: dict[str, dict], row_id: str, details: dict[str, Any], text: str) -> None:
        """Keep the examples with the smallest row ids: the same ones whatever the batches or chunks."""
        kept[row_id] = {"id": row_id, **{k: v for k, v in details.items() if k not in ("eval_set", "eval_text")},
                        "text": text}
        if len(kept) > self.config.examples:
            del kept[max(kept)]

    def _matched(self, inputs: StageInput | None, index: eval_sets.EvalIndex):
        """(batch, our compared texts, matches) per input batch, in input order; matched on worker processes
        (each memory-maps the saved index) when there are several workers and more than one batch."""
        if inputs is None or inputs.num_rows == 0:
            return
        kind, workers = self.ctx.kind, self.ctx.workers
        pool = worker_pool(workers) if inputs.num_rows > self.ctx.batch_size else None
        if pool is None:
            for batch in inputs.batches():
                texts = eval_sets.views(kind, batch, self.fields)
                yield batch, texts, index.match(texts)
            return
        folder = tempfile.mkdtemp(prefix="decontaminate-")
        try:
            index.save(folder)
            pending: deque = deque()
            for batch in inputs.batches():
                texts = eval_sets.views(kind, batch, self.fields)
                pending.append((batch, texts, pool.submit(eval_sets.match_saved, folder, texts)))
                while len(pending) > 2 * workers:  # bounded read-ahead, results in submission order
                    batch, texts, future = pending.popleft()
                    yield batch, texts, future.result()
            while pending:
                batch, texts, future = pending.popleft()
                yield batch, texts, future.result()
        finally:
            pool.shutdown(cancel_futures=True)
            shutil.rmtree(folder, ignore_errors=True)

    def summarize(self) -> DecontaminationSummary:
        index = self._index()
        removed = self.stats.get("removed_by_eval_set") or {}
        found = self.stats.get("examples") or {}
        chosen = {name: [found.get(name, {})[i] for i in sorted(found.get(name, {}))[: self.config.examples]]
                  for name in index.names}
        self.stats["examples"] = chosen  # the final examples, as the summary has them
        self.stats.setdefault("rows_checked", 0)
        self.stats.setdefault("rows_removed", 0)
        figures = index.item_figures()
        return DecontaminationSummary(
            mode=self.config.mode, fields=self.fields, settings=self.config.model_dump(mode="json"),
            rows_checked=int(self.stats["rows_checked"]), rows_removed=int(self.stats["rows_removed"]),
            eval_sets=[EvalSetFigures(name=info["name"], files=[EvalFile(**f) for f in info["files"]],
                                      fields=info["fields"], items=info["items"], unreadable=info["unreadable"],
                                      empty=fig["empty"], compared_as=fig["compared_as"],
                                      rows_removed=int(removed.get(info["name"], 0)),
                                      examples=[ContaminationExample(**e) for e in chosen[info["name"]]])
                       for info, fig in zip(index.sets, figures)])
