"""report.html's agreement section: the agreement figures, the annotators' label pairs as a heat map (each
pair of annotations counted once, sized for its labels), the ties and the rows relabelled by people or by a
label review, with their texts. Kept apart from report.py, which renders every other section.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from stages.evaluate.report_html import _e, _img, _plt, _png, _table


# What `unresolved` and `relabelled` count, per annotate mode (rate decides no label and changes none).
OUTCOME_FIGURES = {
    "label": (("unresolved", "ties (no label decided; the source label kept)"),
              ("relabelled", "rows relabelled (people's label or a review's decision differs from the source label)")),
    "compare": (("unresolved", "ties (no better response: a tie won or the vote split)"),
                ("relabelled", "pairs swapped (people preferred the source's rejected response)")),
    "edit": (("relabelled", "responses edited (the original in meta.review.original)"),),
}


def agreement_section(agreement: dict[str, Any], splits: dict[str, pd.DataFrame]) -> str:
    """The agreement figures, the label pairs as a heat map (each pair counted once), the ties and the rows
    whose label people or a label review changed (with their texts)."""
    plt = _plt()
    figures = []
    level = agreement.get("level") or "nominal"  # ordinal for ratings (annotate.mode rate)
    for key, name in (("krippendorff_alpha", f"Krippendorff's alpha ({level})"),
                      ("krippendorff_alpha_interval", "Krippendorff's alpha (interval)"), ("fleiss_kappa", "Fleiss' kappa")):
        if agreement.get(key) is not None:
            figures.append([name, agreement[key]])
    for k, name in (("items", "rows annotated"), ("annotations", "annotations"), ("pairs", "pairs of annotations of a row")):
        if agreement.get(k) is not None:
            figures.append([name, agreement[k]])
    if agreement.get("annotators"):
        a = agreement["annotators"]
        figures.append(["annotators", len(a) if isinstance(a, list) else a])
    for k, name in OUTCOME_FIGURES.get(agreement.get("mode") or "label", ()):
        if agreement.get(k) is not None:
            figures.append([name, agreement[k]])
    review = agreement.get("response_review") or {}
    for k, name in (("mean_rating", "mean rating"), ("kept", "rows kept by their rating")):
        if review.get(k) is not None:
            figures.append([name, review[k]])
    for reason, n in (review.get("rejected") or {}).items():
        figures.append([f"rows rejected: {reason}", n])
    if not figures:
        return '<p class="muted">No annotation in this version (no agreement figures).</p>'
    parts = [_table(["figure", "value"], figures)]
    bias = agreement.get("annotator_bias")
    if isinstance(bias, dict) and bias:
        parts.append("<h3>Per-annotator bias (mean offset from the rows' aggregated rating)</h3>"
                     + _table(["annotator", "ratings", "mean rating", "bias"],
                              [[a, b.get("ratings"), b.get("mean_rating"), b.get("bias")] for a, b in bias.items()]))
    weighted = agreement.get("weighted_kappa")
    if isinstance(weighted, list) and weighted and isinstance(weighted[0], dict):
        keys = list(weighted[0].keys())
        parts.append("<h3>Quadratic-weighted Cohen's kappa per annotator pair</h3>"
                     + _table(keys, [[p.get(k) for k in keys] for p in weighted]))
    accuracy = agreement.get("annotator_accuracy")
    if isinstance(accuracy, dict) and accuracy:
        parts.append("<h3>Annotator accuracy estimated by Dawid–Skene (how much each one's answers count)</h3>"
                     + _table(["annotator", "accuracy"], [[a, v] for a, v in accuracy.items()]))
    pairs = agreement.get("cohen_kappa")
    if isinstance(pairs, list) and pairs and isinstance(pairs[0], dict):
        keys = list(pairs[0].keys())
        parts.append("<h3>Cohen's kappa per annotator pair</h3>" + _table(keys, [[p.get(k) for k in keys] for p in pairs]))
    parts.append(_pair_heat_map(agreement, plt))
    text_of = {i: t for df in splits.values() if "id" in df and "text" in df for i, t in zip(df["id"], df["text"])}
    ties = agreement.get("ties") or []
    if ties:
        shown = f"the first {len(ties)} of {agreement.get('unresolved', len(ties)):,}" if agreement.get("unresolved", 0) > len(ties) else "all"
        parts.append(f"<h3>Ties ({shown}; every one in <code>annotations/agreement.json</code>)</h3>" + _table(
            ["id", "votes", "text"],
            [[t["id"], ", ".join(f"{k}: {v}" for k, v in sorted(t["votes"].items())),
              f'<div class="text">{_e(text_of.get(t["id"]))}</div>'] for t in ties], raw={2}))
    changes = agreement.get("relabelled_rows") or []
    if changes:
        shown = f"the first {len(changes)} of {agreement.get('relabelled', len(changes)):,}" if agreement.get("relabelled", 0) > len(changes) else "all"
        parts.append(f"<h3>Rows relabelled ({shown})</h3>" + _table(
            ["id", "source label", "label now", "by", "text"],
            [[c["id"], c["before"] or "(none)", c["after"], c["by"], f'<div class="text">{_e(text_of.get(c["id"]))}</div>']
             for c in changes], raw={4}))
    for r in agreement.get("reviews") or []:
        parts.append(f"<p>Label review of {_e(r['version'])} (<a href=\"{_e(r['url'])}\">its project</a>): {r['rows']:,} "
                     f"rows, {r.get('decided', 0):,} decided, {r.get('applied', 0):,} applied ({r.get('relabelled', 0):,} "
                     f"relabelled), {r.get('unresolved', 0):,} ties, {r.get('stale', 0):,} not applied because the text "
                     f"changed since, {r.get('absent', 0):,} no longer in the data.</p>")
    return "\n".join(parts)


def pair_figure(conf: dict[str, dict[str, int]], rows_are: str, cols_are: str, plt):
    """The heat map of label pairs, sized for its labels so that the title, the tick labels and the axis
    labels fit in the figure (a test checks every text's extent); (figure, matrix)."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    labs = list(conf.keys())
    m = np.array([[float(conf[a].get(b, 0) or 0) for b in labs] for a in labs])
    n = len(labs)
    longest = max((len(str(l)) for l in labs), default=1)
    fig, ax = plt.subplots(figsize=(max(5.0, 2.6 + 0.55 * n + 0.06 * longest), max(4.0, 1.9 + 0.5 * n + 0.05 * longest)))
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), labs, rotation=45 if n > 3 or longest > 8 else 0,
                  ha="right" if n > 3 or longest > 8 else "center")
    ax.set_yticks(range(n), labs)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(m[i, j]):,}", ha="center", va="center", fontsize=9,
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_ylabel(f"label from {rows_are}")
    ax.set_xlabel(f"label from {cols_are}")
    ax.set_title("Label pairs on the same row")
    fig.colorbar(im, ax=ax, shrink=0.8, ticks=MaxNLocator(integer=True))
    return fig, m


def _pair_heat_map(agreement: dict[str, Any], plt) -> str:
    """Each pair of annotations of the same row counted once (rows: one annotator's label, columns: the
    other's), so that the cells add up to the number of pairs. A version from before pairs were kept shows
    the symmetric matrix, where a disagreement is counted in both of its cells, and says so."""
    conf, axes = agreement.get("pair_confusion"), agreement.get("pair_axes") or []
    symmetric = not conf
    if symmetric:
        conf = agreement.get("confusion")
    if not isinstance(conf, dict) or not conf:
        return ""
    rows_are, cols_are = (axes + ["one annotator", "another annotator"])[:2] if not symmetric else ("one annotator", "another")
    fig, m = pair_figure(conf, _short(rows_are), _short(cols_are), plt)
    total = int(m.sum())
    if symmetric:
        note = (f"Counted both ways: a disagreement is in both of its cells, so the cells add up to {total:,}, more "
                f"than the {agreement.get('pairs') or 'number of'} pairs (this version was made before pairs were kept).")
    else:
        note = (f"Each pair of annotations of the same row is counted once: the cells add up to the {total:,} pairs; "
                f"the diagonal is agreement. Rows: the label from {rows_are}; columns: from {cols_are}.")
    return _img(_png(fig), "annotator label pairs") + f'<p class="muted">{_e(note)}</p>'


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
