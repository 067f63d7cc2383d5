"""report.html's sections for instruction and chat records (`generation`, `chat`), and the examples of
every drop reason that every kind's report shows.

Per-field length distributions (prompt, completion; a conversation's turns), turns per conversation, the
refusal phrases and placeholders found (published and removed), the language mix of each field that has a
language column, and, for each (stage, reason) of `rejected.parquet`, its count and a few rows.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

import schemas
from stages.evaluate import decontamination
from stages.evaluate.report import _COLORS, _e, _img, _plt, _png, _table

FIELDS = ("prompt", "completion", "system")  # the views whose lengths are plotted (when not all empty)
EXAMPLES_PER_REASON = 3


def _short(text: Any, n: int = 400) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def field_lengths(candidate) -> str:
    """Characters per field and split (log-scale histograms and percentiles)."""
    plt = _plt()
    rows, series = [], {}
    for field in FIELDS:
        for split in schemas.SPLITS:
            texts = candidate.view(split, field)
            lengths = np.array([len(t) for t in texts])
            if not len(lengths) or not lengths.any():
                continue
            series.setdefault(field, {})[split] = lengths
            q = np.percentile(lengths, [0, 5, 50, 95, 100])
            rows.append([field, split, len(lengths), *[int(x) for x in q], round(float(lengths.mean()), 1)])
    if not series:
        return '<p class="muted">No texts.</p>'
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.2), squeeze=False)
    for ax, (field, by_split) in zip(axes[0], series.items()):
        hi = max(2, max(int(v.max()) for v in by_split.values()))
        bins = np.unique(np.geomspace(1, hi + 1, 40).astype(int))
        for split, v in by_split.items():
            ax.hist(np.maximum(v, 1), bins=bins, histtype="step", density=True, label=split, color=_COLORS[split],
                    linewidth=1.5)
        ax.set_xscale("log")
        ax.set_xlabel("characters (log scale)")
        ax.set_title(f"{field} length")
        ax.legend(fontsize=8)
    return (_img(_png(fig), "length per field") +
            _table(["field", "split", "rows", "min", "p5", "median", "p95", "max", "mean"], rows))


def turns(candidate) -> str:
    """User turns per conversation, and turns of each role (chat only)."""
    if "messages" not in candidate.kind.payload_names:
        return '<p class="muted">One prompt and one completion per row (a single turn).</p>'
    plt = _plt()
    counts: dict[str, np.ndarray] = {}
    roles: dict[str, dict[str, int]] = {}
    for split, df in candidate.splits.items():
        if not len(df):
            continue
        counts[split] = np.array([sum(m["role"] == "user" for m in msgs) for msgs in df["messages"]])
        per_role: dict[str, int] = {}
        for msgs in df["messages"]:
            for m in msgs:
                per_role[m["role"]] = per_role.get(m["role"], 0) + 1
        roles[split] = per_role
    if not counts:
        return '<p class="muted">No conversations.</p>'
    hi = max(int(v.max()) for v in counts.values())
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.8 / len(counts)
    for k, (split, v) in enumerate(counts.items()):
        values = np.bincount(v, minlength=hi + 1)
        ax.bar(np.arange(hi + 1) + k * width, values / max(1, len(v)), width=width, label=split, color=_COLORS[split])
    ax.set_xlabel("user turns")
    ax.set_ylabel("share of conversations")
    ax.set_title("Turns per conversation")
    ax.legend(fontsize=8)
    role_names = ["system", "user", "assistant", "tool"]
    table = _table(["split", "conversations", "median user turns", "max", *[f"{r} turns" for r in role_names]],
                   [[s, len(v), float(np.median(v)), int(v.max()), *[roles[s].get(r, 0) for r in role_names]]
                    for s, v in counts.items()])
    return _img(_png(fig), "turns per conversation") + table


def refusals(summary: dict[str, Any]) -> str:
    """The refusal phrases and placeholders found in published rows and in the rows clean removed."""
    if not summary or summary.get("skipped") == "classification records have no responses":
        return '<p class="muted">Not applicable.</p>'
    parts = []
    if summary.get("ran"):
        parts.append(f"<p>{summary.get('refusals', 0):,} of {summary.get('rows', 0):,} published rows "
                     f"({summary.get('share', 0):.2%}) have a refusal in <code>{_e(summary.get('column'))}</code>.</p>")
    elif summary.get("skipped"):
        parts.append(f'<p class="muted">{_e(summary["skipped"])}.</p>')
    for title, key in (("Refusal phrases removed by clean", "refusal_phrases_removed"),
                       ("Refusal phrases in published rows", "refusal_phrases"),
                       ("Placeholders removed by clean", "placeholders_removed"),
                       ("Placeholders in published rows", "placeholders")):
        found = summary.get(key) or {}
        if found:
            parts.append(f"<h3>{title}</h3>" + _table(["found", "rows"], [[k, v] for k, v in found.items()]))
    return "\n".join(parts) or '<p class="muted">No refusal phrase or placeholder found.</p>'


def languages(candidate) -> str:
    """The language mix of every field with a language column (`prompt_lang`, `completion_lang`, ...)."""
    columns = sorted({c for df in candidate.splits.values() for c in df.columns if c.endswith("_lang")})
    if not columns:
        return ('<p class="muted">No language per field: add <code>prompt.lang</code> / <code>completion.lang</code> '
                "to <code>clean.signals</code> or a rule.</p>")
    rows = []
    for column in columns:
        values = pd.concat([df[column] for df in candidate.splits.values() if column in df])
        counts = values.fillna("(too little prose)").value_counts()
        rows.append([column.removesuffix("_lang"), len(values),
                     ", ".join(f"{k} {v:,}" for k, v in counts.head(10).items())])
    return _table(["field", "rows", "languages (rows)"], rows)


def drop_examples(rejected: pd.DataFrame | None) -> str:
    """Every (stage, reason) of rejected.parquet with its count and a few rows as removed."""
    if rejected is None or not len(rejected):
        return "<p>No row was removed.</p>"
    rows = []
    for (stage, reason), group in rejected.groupby(["stage", "reason"], sort=False):
        for k, (_, r) in enumerate(group.head(EXAMPLES_PER_REASON).iterrows()):
            details = r.get("details")
            try:
                details = json.dumps(json.loads(details), ensure_ascii=False) if isinstance(details, str) else ""
            except ValueError:
                pass
            rows.append([stage if k == 0 else "", reason if k == 0 else "", len(group) if k == 0 else "",
                         f'<div class="text">{_e(_short(r.get("text"), 300))}</div>', _short(details, 200)])
    return ("<p>A few rows per reason; every removed row is in <code>rejected.parquet</code>"
            " (generative kinds: the whole record as JSON in its <code>record</code> column).</p>" +
            _table(["stage", "reason", "rows", "example (as removed)", "details"], rows, raw={3}))


def sections(result) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(anchor, title, html) sections for `write_report`: those that replace the classification sections
    (labels, text length, languages) for a generative kind — none for classification — and those every
    kind's report adds (examples of each drop reason, decontamination)."""
    candidate = result.candidate
    common = [("drops", "Removed rows by reason, with examples", drop_examples(candidate.rejected)),
              ("decontamination", "Decontamination against evaluation sets",
               decontamination.section(result.summary.get("decontamination")))]
    if candidate.kind.label_field is not None:
        return [], common
    own = [
        ("lengths", "Length per field", field_lengths(candidate)),
        ("turns", "Turns per conversation", turns(candidate)),
        ("refusals", "Refusals and placeholders", refusals(result.summary.get("refusals") or {})),
        ("languages", "Language mix per field", languages(candidate)),
    ]
    return own, common
