"""report.html: the quality gate's evidence for a person who never read the code, drawn from one
`EvaluationResult` (the candidate's rows, each check's result, every expectation result).

The page is self-contained: inline CSS, no script, every plot a matplotlib PNG embedded as base64, so it
opens from a copied folder, an archive or an e-mail attachment alike. Everything from the data is escaped,
and the page carries a Content-Security-Policy that allows no script and no remote load at all, so even a
value that slipped through could not run. Labels and texts reach matplotlib as plain strings: mathtext
(`$...$`) is off while the page is drawn, so a label such as `$\\foo$` is a label, not a formula to parse.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

import schemas
from stages.evaluate.summary import stage_line
from stages.evaluate.figures import SplitFigures, split_figures
from stages.evaluate.report_agreement import agreement_section
from stages.evaluate.report_html import _COLORS, _e, _img, _num, _plt, _png, _table  # noqa: F401 (report_records imports them from here)
from stages.evaluate.result import EvaluationResult

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.2em .7em;border-radius:.3em;color:#fff;font-weight:bold}
.pass{background:#2e7d32} .fail{background:#c62828} .warn{background:#ef6c00}
tr.fail td{background:#fdecea} tr.warn td{background:#fff4e5}
.muted{color:#777} .text{max-width:560px;white-space:pre-wrap;word-break:break-word}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
nav a{margin-right:1em}
"""

# ---------------------------------------------------------------------------------------------------------
# Sections


def _funnel(manifest: dict, rejected: pd.DataFrame | None, n_rejected: int, figures: dict[str, SplitFigures]) -> str:
    plt = _plt()
    stages = [s for s in manifest.get("stages") or [] if isinstance(s, dict)]
    rows = []
    if stages:
        for st in stages:
            dropped = st.get("dropped") or {}
            reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1]))
            rows.append([st.get("name"), st.get("rows_in"), st.get("rows_out"), sum(dropped.values()), reasons or "—",
                         st.get("seconds")])
    elif rejected is not None and len(rejected):
        # No manifest: rebuild what we can from rejected.parquet (a candidate built by hand).
        for stage, g in rejected.groupby("stage", sort=False):
            reasons = ", ".join(f"{k}: {v:,}" for k, v in g["reason"].value_counts().items())
            rows.append([stage, None, None, len(g), reasons, None])
    kept = sum(f.rows for f in figures.values())
    parts = []
    if rows:
        parts.append(_table(["stage", "rows in", "rows out", "dropped", "dropped by reason", "seconds"],
                            [[r[0], r[1] if r[1] is not None else "", r[2] if r[2] is not None else "", r[3], r[4],
                              r[5] if r[5] is not None else ""] for r in rows]))
        # What a stage decided from the data (clean: the languages `lang: {allowed: auto}` found).
        parts += [f"<p>{_e(st.get('name'))}: {_e(note)}</p>" for st in stages for note in st.get("notes") or []]
        names = [str(r[0]) for r in rows if r[2] is not None]
        if names:
            fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
            ins = [r[1] or 0 for r in rows if r[2] is not None]
            outs = [r[2] or 0 for r in rows if r[2] is not None]
            y = list(range(len(names)))[::-1]
            ax.barh(y, ins, color="#e0e0e0", label="rows in")
            ax.barh(y, outs, color="#1f77b4", label="rows out")
            for yi, o in zip(y, outs):
                ax.text(o, yi, f" {o:,}", va="center", fontsize=8)
            ax.set_yticks(y, names)
            ax.set_xlabel("rows")
            ax.set_title("Rows through the stages: in (grey), out (blue)")
            ax.set_xlim(0, max(ins + outs + [1]) * 1.15)  # room for the labels
            parts.append(_img(_png(fig), "funnel: rows in and out per stage"))
    else:
        parts.append('<p class="muted">No stage counts in the manifest and no rejected rows.</p>')
    parts.append(f"<p>{kept:,} rows published in the splits; {n_rejected:,} rows in rejected.parquet.</p>")
    return "\n".join(parts)


def _labels(figures: dict[str, SplitFigures]) -> str:
    plt = _plt()
    counts = {s: f.labels for s, f in figures.items()}
    labels = sorted(set().union(*[set(c.index) for c in counts.values()]))
    if not labels:
        return '<p class="muted">No labels.</p>'
    rows = []
    for lab in labels:
        row: list[Any] = [lab]
        for s in schemas.SPLITS:
            n = int(counts[s].get(lab, 0))
            total = int(counts[s].sum())
            row.append(f"{n:,} ({n / total:.1%})" if total else "0")
        rows.append(row)
    rows.append(["total"] + [f"{figures[s].rows:,}" for s in schemas.SPLITS])
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.9 * len(labels)), 3.2))
    width = 0.8 / len(schemas.SPLITS)
    for k, s in enumerate(schemas.SPLITS):
        total = max(1, int(counts[s].sum()))
        ax.bar([i + k * width for i in range(len(labels))], [counts[s].get(l, 0) / total for l in labels],
               width=width, label=f"{s} ({figures[s].rows:,})", color=_COLORS[s])
    ax.set_xticks([i + width for i in range(len(labels))], labels, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    ax.set_ylabel("share of split")
    ax.set_title("Label distribution per split")
    ax.legend(fontsize=8)
    return _table(["label", *schemas.SPLITS], rows) + _img(_png(fig), "label distribution per split")


def _lengths(figures: dict[str, SplitFigures]) -> str:
    import numpy as np

    plt = _plt()
    lens = {s: f.chars for s, f in figures.items() if f.chars is not None}
    allv = np.concatenate([v for v in lens.values() if len(v)]) if any(len(v) for v in lens.values()) else np.array([])
    if not len(allv):
        return '<p class="muted">No texts.</p>'
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    hi = max(2, int(allv.max()))
    bins = np.unique(np.geomspace(1, hi + 1, 40).astype(int))
    for s, v in lens.items():
        if len(v):
            axes[0].hist(np.maximum(v, 1), bins=bins, histtype="step", density=True, label=s, color=_COLORS[s], linewidth=1.5)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("characters (log scale)")
    axes[0].set_ylabel("density")
    axes[0].set_title("Text length per split")
    axes[0].legend(fontsize=8)
    words = {s: f.words for s, f in figures.items() if f.words is not None}
    for s, v in words.items():
        if len(v):
            axes[1].hist(v, bins=40, histtype="step", density=True, label=s, color=_COLORS[s], linewidth=1.5)
    axes[1].set_xlabel("words")
    axes[1].set_title("Words per text")
    rows = []
    for s, v in lens.items():
        if len(v):
            q = np.percentile(v, [0, 5, 50, 95, 100])
            rows.append([s, len(v), *[int(x) for x in q], round(float(v.mean()), 1)])
    return _img(_png(fig), "text length histograms") + _table(["split", "texts", "min", "p5", "median", "p95", "max", "mean"], rows)


def _languages(figures: dict[str, SplitFigures]) -> str:
    plt = _plt()
    if not any(f.langs is not None and (f.langs.index != "(none)").any() for f in figures.values()):
        return ('<p class="muted">No language column: the clean stage computes <code>lang</code> for a <code>lang</code> '
                'rule or with <code>signals: [lang]</code> in its section.</p>')
    counts = {s: f.langs if f.langs is not None else pd.Series(dtype=int) for s, f in figures.items()}
    total = Counter()
    for c in counts.values():
        total.update(c.to_dict())
    top = [l for l, _ in total.most_common(12)]
    other = [l for l in total if l not in top]
    fig, ax = plt.subplots(figsize=(8, 3))
    bottom = [0] * (len(top) + (1 if other else 0))
    names = top + (["other"] if other else [])
    for s in schemas.SPLITS:
        vals = [int(counts[s].get(l, 0)) for l in top] + ([int(sum(counts[s].get(l, 0) for l in other))] if other else [])
        ax.bar(names, vals, bottom=bottom, label=s, color=_COLORS[s])
        bottom = [b + v for b, v in zip(bottom, vals)]
    if max(total.values()) > 50 * min(total.values()):
        ax.set_yscale("log")
        ax.set_ylabel("rows (log scale)")
    else:
        ax.set_ylabel("rows")
    ax.set_title("Language mix (detected)")
    ax.legend(fontsize=8)
    rows = [[l, *[int(counts[s].get(l, 0)) for s in schemas.SPLITS], total[l]] for l in top]
    if other:
        rows.append([f"other ({len(other)} languages)", *[int(sum(counts[s].get(l, 0) for l in other)) for s in schemas.SPLITS],
                     sum(total[l] for l in other)])
    score = ""
    if any(f.lang_scores is not None for f in figures.values()):
        vals = pd.Series(np.concatenate([f.lang_scores for f in figures.values() if f.lang_scores is not None]))
        if len(vals):
            score = f"<p>Detector confidence: median {vals.median():.3f}, {(vals < 0.9).mean():.1%} of rows below 0.9.</p>"
    return _img(_png(fig), "language mix") + _table(["language", *schemas.SPLITS, "total"], rows) + score


def _clusters(sizes: Counter, conflicts: dict[str, Any], manifest: dict) -> str:
    plt = _plt()
    parts = []
    if not sizes:
        parts.append('<p class="muted">No cluster ids.</p>')
    else:
        multi = {k: v for k, v in sizes.items() if k > 1}
        n_clusters = sum(sizes.values())
        parts.append(f"<p>{n_clusters:,} clusters; {sum(multi.values()):,} had duplicates (the largest: "
                     f"{max(sizes):,} rows); {sizes.get(1, 0):,} rows had none. Size counts kept rows plus the "
                     "duplicates removed in their favour.</p>")
        ks = sorted(sizes)
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.bar([str(k) for k in ks], [sizes[k] for k in ks], color="#6a51a3")
        ax.set_yscale("log")
        ax.set_xlabel("cluster size (rows)")
        ax.set_ylabel("clusters (log scale)")
        ax.set_title("Duplicate-cluster sizes")
        if len(ks) > 25:
            ax.set_xticks(range(0, len(ks), max(1, len(ks) // 20)))
        parts.append(_img(_png(fig), "duplicate cluster sizes"))
    if conflicts.get("ran", True):
        parts.append(f"<p>Clusters whose rows carry different labels (as the dedupe stage counted them, over kept "
                     f"and removed rows): <b>{conflicts.get('clusters', 0):,}</b>.</p>")
    else:
        parts.append(f'<p class="muted">Label conflicts not checked: {_e(conflicts.get("skipped"))}.</p>')
    if conflicts.get("examples"):
        parts.append(_table(["cluster", "labels", "text (a kept row)"],
                            [[ex["cluster_id"], ", ".join(ex["labels"]), f'<div class="text">{_e(ex.get("text"))}</div>']
                             for ex in conflicts["examples"]], raw={2}))
    return "\n".join(parts)


def _leakage(leak: dict[str, Any]) -> str:
    if not leak.get("ran"):
        return '<p class="muted">Leakage check disabled.</p>'
    rows = [[k, v] for k, v in leak.get("leaked", {}).items()]
    parts = [f"<p>Near duplicates of train rows ({_e(leak.get('shingle'))}, Jaccard ≥ {leak.get('threshold')}), "
             "MinHash candidates verified by exact Jaccard. The full list is <code>quality/leakage.parquet</code>.</p>",
             _table(["compared with", "leaked rows"], rows)]
    if leak.get("examples"):
        parts.append(_table(["in", "id", "text", "train id", "train text", "Jaccard"],
                            [[p["against"], p["id"], f'<div class="text">{_e(p["text"])}</div>', p["train_id"],
                              f'<div class="text">{_e(p["train_text"])}</div>', p["jaccard"]] for p in leak["examples"]],
                            raw={2, 4}))
    return "\n".join(parts)


def _noise(noise: dict[str, Any], issues: list[dict[str, Any]], top: int) -> str:
    if not noise.get("ran"):
        return f'<p class="muted">Label-noise check not run: {_e(noise.get("skipped", "no labelled rows"))}.</p>'
    parts = [f"<p>{noise['flagged']:,} of {noise['labelled_rows']:,} labelled rows ({noise['share']:.2%}) look "
             f"mislabelled. Model: {_e(noise['model'])} (out-of-sample accuracy {noise['cv_accuracy']:.3f}, "
             f"majority-class rate {noise.get('majority_rate', 0):.3f}, kappa {noise.get('kappa', 0):.3f}); "
             f"{_e(noise['method'])}; probabilities {_e(noise.get('evidence', 'fitted on the published rows'))}. "
             "All of them are in <code>label_issues.parquet</code>; "
             "<code>sftpipe annotate push --review-label-issues</code> sends them to Label Studio.</p>"]
    if noise.get("stage"):
        parts.append(f"<p>Before dedupe, the label_noise stage: {_e(stage_line(noise['stage']))}. Its rows are in "
                     "<code>rejected.parquet</code> (reason <code>label_noise</code>) when it dropped them.</p>")
    if noise.get("by_label_pair"):
        parts.append(_table(["given → suggested", "rows"], [[k, v] for k, v in noise["by_label_pair"].items()]))
    if issues and top:
        parts.append(f"<h3>Top {min(top, len(issues))} label issues</h3>")
        parts.append(_table(["rank", "split", "id", "given", "suggested", "p(given)", "text"],
                            [[x["rank"], x["split"], x["id"], x["given_label"], x["suggested_label"], x["score"],
                              f'<div class="text">{_e(x["text"])}</div>'] for x in issues[:top]], raw={6}))
    return "\n".join(parts)


def _expectations(table: list[dict[str, Any]]) -> str:
    scopes = [*schemas.SPLITS, "dataset"]
    order = {s: i for i, s in enumerate(scopes)}
    checks = list(dict.fromkeys(r["check"] for r in table))
    # Summary: one row per check, one column per split: passed / evaluated, marked when one failed.
    matrix_rows, matrix_classes = [], []
    for check in checks:
        row: list[Any] = [check]
        worst = ""
        for scope in scopes:
            rs = [r for r in table if r["check"] == check and r["scope"] == scope]
            if not rs:
                row.append("")
                continue
            ok = sum(r["success"] for r in rs)
            failed_blocking = any(not r["success"] and r["blocking"] for r in rs)
            mark = "✓" if ok == len(rs) else ("✗" if failed_blocking else "!")
            row.append(f"{mark} {ok}/{len(rs)}")
            if ok < len(rs):
                worst = "fail" if failed_blocking or worst == "fail" else "warn"
        matrix_rows.append(row)
        matrix_classes.append(worst)
    summary = _table(["check", *scopes], matrix_rows, matrix_classes)
    rows, classes = [], []
    for r in sorted(table, key=lambda r: (r["success"], order.get(r["scope"], 9))):
        status = "pass" if r["success"] else ("FAIL (blocking)" if r["blocking"] else "fail (warning)")
        classes.append("" if r["success"] else ("fail" if r["blocking"] else "warn"))
        obs = r["observed"]
        if isinstance(obs, list):
            obs = f"{len(obs)} columns"
        rows.append([status, r["scope"], r["check"], r["expectation"], r["column"] or "", r["expected"],
                     obs if isinstance(obs, (int, float)) else json.dumps(obs, default=str)[:200] if obs is not None else "",
                     r.get("details", "")])
    full = _table(["result", "split", "check", "expectation", "column", "expected", "observed", "details"], rows, classes)
    return (summary + f"<details><summary>All {len(table)} expectation results (failures first)</summary>"
            + full + "</details>")


# ---------------------------------------------------------------------------------------------------------


# No script, no remote anything: images are data: URIs and the style is inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def write_report(path: Path, result: EvaluationResult,
                 kind_sections: list[tuple[str, str, str]] = (), added_sections: list[tuple[str, str, str]] = ()) -> None:
    """Write report.html for an evaluation (its candidate, checks, expectation results and config).
    `kind_sections` ((anchor, title, html)) replace the label, text-length and language sections (a record
    kind without labels has its own); `added_sections` come after the funnel."""
    with no_mathtext():
        _write_report(path, result, kind_sections, added_sections)


def no_mathtext():
    """A context in which matplotlib draws every string as it is: labels and texts are data, and `$\\foo$`
    would otherwise be parsed (and fail) as a formula."""
    import matplotlib

    return matplotlib.rc_context({"text.parse_math": False})


def _write_report(path: Path, result: EvaluationResult, kind_sections, added_sections) -> None:
    candidate, summary, checks = result.candidate, result.summary, result.checks
    dataset, manifest = candidate.dataset, candidate.manifest
    # The classification sections' figures (a kind with its own sections computed them already).
    figures = {s: split_figures(candidate, s, text=not kind_sections) for s in schemas.SPLITS}
    # The funnel comes from the manifest; rejected.parquet is read only for a candidate without one.
    rejected = None if any(isinstance(st, dict) for st in manifest.get("stages") or []) else candidate.rejected
    path_rejected = candidate.folder / "rejected.parquet"
    n_rejected = pq.read_metadata(path_rejected).num_rows if path_rejected.exists() else 0
    issues = checks["label_noise"].evidence if "label_noise" in checks else []
    cluster_sizes = checks["label_conflicts"].evidence if "label_conflicts" in checks else Counter()
    agreement = checks["agreement"].evidence if "agreement" in checks else {}
    passed = summary["passed"]
    badge = '<span class="badge pass">PASSED</span>' if passed else '<span class="badge fail">FAILED GATES</span>'
    version = manifest.get("version") or "candidate"
    fails = [f for f in summary["failures"]]
    head = [
        f"<h1>{_e(dataset)} <span class='muted'>{_e(version)}</span> {badge}</h1>",
        f"<p class='muted'>parent version: {_e(manifest.get('parent_version') or '—')} · content fingerprint: "
        f"{_e((manifest.get('content_fingerprint') or '—')[:16])} · {summary['expectations']['evaluated']} expectations, "
        f"{summary['expectations']['failed']} failed ({summary['blocking_failures']} blocking)</p>",
        "<nav>" + " ".join(f'<a href="#{a}">{t}</a>' for a, t in [
            ("gates", "Gates"), ("funnel", "Funnel"), *[(a, t.split(" ")[0]) for a, t, _ in added_sections],
            *([(a, t) for a, t, _ in kind_sections] or [("labels", "Labels"), ("lengths", "Text length"),
                                                        ("languages", "Languages")]),
            ("duplicates", "Duplicates"), ("leakage", "Leakage"),
            ("label-issues", "Label issues"), ("agreement", "Agreement"), ("expectations", "Expectations")]) + "</nav>",
    ]
    own = [part for a, t, h in kind_sections for part in (f'<h2 id="{a}">{_e(t)}</h2>', h)] or [
        '<h2 id="labels">Label distribution per split</h2>', _labels(figures),
        '<h2 id="lengths">Text length</h2>', _lengths(figures),
        '<h2 id="languages">Language mix</h2>', _languages(figures)]
    if fails:
        gates = _table(["", "check", "split", "expectation", "column", "observed", "expected", "details"],
                       [["BLOCKING" if f["blocking"] else "warning", f["check"], f["split"], f["expectation"],
                         f["column"] or "", f["observed"] if isinstance(f["observed"], (int, float)) else str(f["observed"]),
                         f["expected"], f.get("details", "")] for f in fails],
                       ["fail" if f["blocking"] else "warn" for f in fails])
    else:
        gates = "<p>Every expectation passed.</p>"
    body = head + [
        '<h2 id="gates">Gates</h2>', gates,
        '<h2 id="funnel">Funnel</h2>', _funnel(manifest, rejected, n_rejected, figures),
        *[part for a, t, h in added_sections for part in (f'<h2 id="{a}">{_e(t)}</h2>', h)],
        *own,
        '<h2 id="duplicates">Duplicate clusters and label conflicts</h2>',
        _clusters(cluster_sizes or Counter(), summary.get("label_conflicts", {}), manifest),
        '<h2 id="leakage">Leakage</h2>', _leakage(summary["leakage"]),
        '<h2 id="label-issues">Label issues</h2>', _noise(summary["label_noise"], issues or [], result.config.report_label_issues),
        '<h2 id="agreement">Annotator agreement</h2>', agreement_section(agreement, candidate.splits if agreement else {}),  # rows only for annotated data
        '<h2 id="expectations">Expectation results</h2>',
        "<p>Great Expectations suites, validation results (JSON) and GE's own pages are under <code>quality/</code>: " +
        f'<code>{_e(summary["files"]["suites"])}</code>, <code>{_e(summary["files"]["results"])}</code>, ' +
        ", ".join(f'<a href="{_e(p)}">{_e(scope)}</a>' for scope, p in summary["files"]["pages"].items()) +
        ". ✓ all passed, ✗ a blocking expectation failed, ! a warning.</p>",
        _expectations(result.results_table),
    ]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>{_e(dataset)} {_e(version)} — quality report</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
