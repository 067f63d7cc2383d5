"""The terminal summary of a version's (or a candidate's) evaluation, from what the gate stored: the
manifest's `evaluation` block, or `quality/summary.json` of a candidate that failed its gates."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import schemas
from schemas.summaries import acted_in_passes
from stages.evaluate.evidence import QUALITY_DIR, SUMMARY_FILE, read_json


def stage_line(s: dict[str, Any]) -> str:
    """What the label_noise stage did, in one line, with the model's strength beside the flagged share."""
    if not s.get("ran"):
        return f"no evidence ({s.get('skipped')})"
    head = (f"{s['flagged']:,} of {s['labelled_rows']:,} rows flagged ({s['share']:.2%}) at cross-validated accuracy "
            f"{s['cv_accuracy']:.3f} (majority-class rate {s['majority_rate']:.3f}, kappa {s['kappa']:.3f}); "
            f"{s['confident']:,} with p(suggested) >= {s['min_confidence']:g}")
    if s.get("weak_model"):
        return f"{head}; nothing acted on: {s['weak_model']}"
    done = {"drop": "dropped", "review": "sent to review", "warn": "left (action warn)"}[s["action"]]
    capped = f" ({s['capped']:,} left by the per-class cap)" if s.get("capped") else ""
    return f"{head}; {s['acted']:,} {done}{acted_in_passes(s)}{capped}"


def summarize_report(version_dir: Path | str) -> str:
    """A terminal summary of a version's evaluation: status, splits, failures, leakage, label issues, paths."""
    version_dir = Path(version_dir)
    manifest = read_json(version_dir / "manifest.json")
    ev = manifest.get("evaluation") or read_json(version_dir / QUALITY_DIR / SUMMARY_FILE)
    lines = [f"{manifest.get('dataset', version_dir.parent.name)} {manifest.get('version', version_dir.name)}"]
    report = version_dir / "report.html"
    lines.append(f"report: {report.resolve()}" if report.exists() else "report: (none — this version was not evaluated)")
    if manifest.get("gates") == "failed-gates" or manifest.get("failed_gates"):
        lines.append("published with --allow-failed-gates")
    if not ev:
        return "\n".join(lines)
    n = ev.get("expectations", {})
    lines.append(f"status: {ev.get('status', 'passed' if ev.get('passed') else 'failed-gates')} — "
                 f"{n.get('evaluated', 0)} expectations, {n.get('failed', 0)} failed "
                 f"({ev.get('blocking_failures', 0)} blocking)")
    splits = manifest.get("splits") or {}
    for s in schemas.SPLITS:
        if s in splits:
            labs = splits[s].get("labels") or {}
            dist = ", ".join(f"{k} {v:,}" for k, v in sorted(labs.items(), key=lambda kv: -kv[1])[:8])
            lines.append(f"  {s:<10} {splits[s].get('rows', 0):>8,} rows  {dist}")
    for f in ev.get("failures", []):
        kind = "BLOCKING" if f.get("blocking") else "warning "
        obs = f.get("observed")
        obs = f"{obs:.4g}" if isinstance(obs, float) else obs
        col = f".{f['column']}" if f.get("column") else ""
        lines.append(f"  {kind} {f.get('check')}: {f.get('expectation')} on {f.get('split')}{col}: "
                     f"observed {obs}, expected {f.get('expected')}")
    leak = ev.get("leakage") or {}
    if leak.get("ran"):
        lines.append("leakage: " + (", ".join(f"{k} {v}" for k, v in leak.get("leaked", {}).items()) or "none checked"))
    decon = ev.get("decontamination") or {}
    if decon.get("ran"):
        sets = ", ".join(f"{s['name']} ({s['items']:,} items, {s['rows_removed']:,} rows)" for s in decon["eval_sets"])
        still = f"; published rows still matching: {decon['contaminated_rows']:,}" if decon.get("rechecked") else ""
        lines.append(f"decontamination: {decon['rows_removed']:,} rows removed against {sets}{still}")
    noise = ev.get("label_noise") or {}
    if noise.get("ran"):
        lines.append(f"label issues: {noise.get('flagged', 0):,} of {noise.get('labelled_rows', 0):,} labelled rows "
                     f"({noise.get('share', 0):.2%}) at cross-validated accuracy {noise.get('cv_accuracy', 0):.3f} "
                     f"(kappa {noise.get('kappa', 0):.3f}) → {version_dir / 'label_issues.parquet'}")
    elif noise.get("skipped"):
        lines.append(f"label issues: not checked ({noise['skipped']})")
    if noise.get("stage"):
        lines.append("label_noise stage: " + stage_line(noise["stage"]))
    conf = ev.get("label_conflicts") or {}
    if conf.get("ran", True):
        lines.append(f"label conflicts in duplicate clusters: {conf.get('clusters', 0)}")
    agr = ev.get("agreement") or {}
    figs = ", ".join(f"{k} {v:.3f}" for k, v in agr.items() if isinstance(v, (int, float)))
    if figs:
        lines.append(f"agreement: {figs}")
    return "\n".join(lines)
