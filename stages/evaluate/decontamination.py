"""decontamination: the published rows re-checked against the evaluation sets the decontaminate stage used.

"After removal" means the candidate as it will be published: every split is read back and matched again,
with the eval sets, fields, mode and n-gram lengths the stage ran with (its `DecontaminationSummary`
carries the section; paths are relative to the dataset config). `contaminated_rows` — published rows that
still match an eval item — is bounded by `max_contaminated` (default 0, blocking). The stage removes every
match it finds, so the figure is 0 unless something after it changed a compared text (a reviewer's edit,
a stage added later) or the stage was skipped for rows it never saw; the check proves the published
version rather than trusting the stage's count. An eval set file that changed since the stage read it is
counted too (`eval_files_changed`, bounded at 0): the stage must run again (`sftpipe run` does, as the
file's digest is part of its fingerprint).

Without a decontaminate stage in the run the check does not run (and the report says the version was not
checked against any evaluation set). The re-check reads each split once in batches and costs about what
the stage cost on the same rows; in one process the stage's index is reused (`eval_sets.cached_index`).
"""
from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

import schemas
from pipeline.sources import eval_sets
from pipeline.errors import UserError
from schemas.summaries import DecontaminationSummary
from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config
from stages.evaluate.report import _e, _table
from stages.evaluate.result import Bound, CheckResult

MAX_LISTED = 20  # remaining matches listed in the summary and the report


def check(candidate: Candidate, config: Config) -> CheckResult:
    stage = candidate.summaries.get(DecontaminationSummary)
    if stage is None:
        return CheckResult("decontamination", {"ran": False, "skipped": "no decontaminate section in the config"})
    summary: dict[str, Any] = {
        "ran": True, "mode": stage.mode, "fields": stage.fields, "ngram": stage.settings.get("ngram"),
        "rows_checked": stage.rows_checked, "rows_removed": stage.rows_removed,
        "eval_sets": [s.model_dump(mode="json") for s in stage.eval_sets]}
    if candidate.config_dir is None:
        summary.update(rechecked=False, skipped="the dataset config's folder is unknown: published rows not re-checked")
        return CheckResult("decontamination", summary)
    section = eval_sets.Config.model_validate(stage.settings)
    try:
        files = eval_sets.digests(section, candidate.config_dir)
    except UserError as exc:
        files = None
        summary["error"] = str(exc)
    read = {(f["path"], f["sha256"]) for f in files or []}
    changed = [f.path for s in stage.eval_sets for f in s.files if (f.path, f.sha256) not in read]
    remaining: list[dict[str, Any]] = []
    if files is not None:
        index = eval_sets.cached_index(section, candidate.config_dir, files)
        remaining = _remaining(candidate, index, stage.fields)
    summary.update(rechecked=files is not None, contaminated_rows=len(remaining), remaining=remaining[:MAX_LISTED],
                   eval_files_changed=changed)
    metrics = {"contaminated_rows": len(remaining), "eval_files_changed": len(changed) if files is not None else 1}
    bounds = [Bound("decontamination", "eval_files_changed", max_value=0)]
    if config.max_contaminated is not None:
        bounds.append(Bound("decontamination", "contaminated_rows", max_value=config.max_contaminated))
    return CheckResult("decontamination", summary, metrics=metrics, bounds=bounds, evidence=remaining)


def _remaining(candidate: Candidate, index: eval_sets.EvalIndex, fields: list[str]) -> list[dict[str, Any]]:
    """Every published row that matches an eval item: its split, id and the details a removal would have."""
    found = []
    for split in schemas.SPLITS:
        path = candidate.folder / f"{split}.parquet"
        if not path.exists():
            continue
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            if any(c not in batch.schema.names for c in candidate.kind.payload_names):
                break
            texts = eval_sets.views(candidate.kind, batch, fields)
            matches = index.match(texts)
            ids = batch.column("id")
            for k in range(len(matches)):
                row = int(matches.row[k])
                found.append({"split": split, "id": ids[row].as_py(), **index.details(matches, k, fields),
                              "text": eval_sets.excerpt(texts[int(matches.field[k])], row)})
    return found


def section(summary: dict[str, Any] | None) -> str:
    """report.html's decontamination section: per eval set what was read and removed, examples of removed
    rows, and the re-check of the published rows."""
    summary = summary or {}
    if not summary.get("ran"):
        return ('<p class="muted">Not checked against any evaluation set: the config has no <code>decontaminate</code> '
                "section.</p>")
    ngram = f"{summary.get('ngram')}-word n-grams" if summary.get("mode") in ("ngram", "both") else ""
    how = {"ngram": ngram, "near": "MinHash near copies verified by Jaccard",
           "both": f"{ngram} and MinHash near copies"}[summary["mode"]]
    parts = [f"<p>Our field(s) <code>{_e(', '.join(summary['fields']))}</code> compared with each evaluation set by "
             f"{_e(how)}: <b>{summary['rows_removed']:,}</b> of {summary['rows_checked']:,} rows removed "
             "(reason <code>contaminated</code> in <code>rejected.parquet</code>, details naming the item).</p>"]
    rows = []
    for s in summary["eval_sets"]:
        files = ", ".join(f"{f['path']} (sha256 {f['sha256'][:12]}…)" for f in s["files"])
        compared = ", ".join(f"{k} {v:,}" for k, v in s["compared_as"].items() if v)
        unreadable = ", ".join(f"{k}: {v:,}" for k, v in s["unreadable"].items()) or "—"
        rows.append([s["name"], files, ", ".join(s["fields"]), s["items"], unreadable, s["empty"], compared,
                     s["rows_removed"]])
    parts.append(_table(["eval set", "files", "their fields", "items", "unreadable records", "empty items",
                         "compared as (item × field)", "rows removed"], rows))
    examples = [[s["name"], e["id"], e["field"], e["eval_id"], e["match"],
                 e["ngram"] if e.get("ngram") is not None else f"Jaccard {e.get('jaccard')}",
                 f'<div class="text">{_e(e["text"])}</div>'] for s in summary["eval_sets"] for e in s["examples"]]
    if examples:
        parts.append("<h3>Removed rows (the smallest ids per eval set)</h3>" +
                     _table(["eval set", "row id", "our field", "eval item", "match", "overlap", "row text"], examples,
                            raw={6}))
    if summary.get("rechecked"):
        remaining = summary.get("remaining") or []
        parts.append(f"<p>Published rows re-checked after removal: <b>{summary['contaminated_rows']:,}</b> match an "
                     "evaluation item.</p>")
        if remaining:
            parts.append(_table(["split", "id", "eval set", "eval item", "match", "overlap", "text"],
                                [[r["split"], r["id"], r["eval_set"], r["eval_id"], r["match"],
                                  r.get("ngram") or f"Jaccard {r.get('jaccard')}",
                                  f'<div class="text">{_e(r["text"])}</div>'] for r in remaining], raw={6}))
    else:
        parts.append(f'<p class="muted">Published rows not re-checked: {_e(summary.get("skipped") or summary.get("error"))}.</p>')
    if summary.get("eval_files_changed"):
        parts.append(f"<p>Evaluation files changed since the stage read them: {_e(', '.join(summary['eval_files_changed']))}"
                     " — run again.</p>")
    return "\n".join(parts)
