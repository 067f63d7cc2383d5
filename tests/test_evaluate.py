"""The quality gate on candidate folders built from real data (SMS Spam Collection, TREC).

Each candidate comes with the summaries the executor would hand the gate (dedupe's clusters and label
conflicts, computed here from the fixture's own clustering). A clean candidate passes; a collapsed class, nulls, a leaked test row and planted label flips each fail
the right gate with the right observed value; planted flips are found; report.html renders in a real
headless Chromium with its images loaded.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import schemas
from schemas.summaries import (Agreement, AnnotationSummary, ConflictRow, DedupeSummary, LabelConflict, Similarity,
                               Summaries)
from stages import evaluate
from stages.evaluate import Config, evaluate_candidate, summarize_report

from .conftest import SHARED_DATA as DATA
from .conftest import chromium_path

SMS = DATA / "sms_spam" / "data.parquet"
TREC = DATA / "trec" / "data.parquet"

pytestmark = pytest.mark.skipif(not SMS.exists(), reason=f"real data sets not found at {DATA} (set SFTPIPE_SHARED_DATA)")


# ---------------------------------------------------------------------------------------------------------
# Candidate folders as the executor writes them (collect → clean → dedupe → split), built from real rows.


def _stable_unit(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12


def build_rows(path: Path, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of a real data set after exact + near dedupe (word 5-grams, Jaccard 0.8) and a split by cluster.

    Returns (published rows with split, rejected rows)."""
    raw = pd.read_parquet(path)
    n = len(raw)
    df = pd.DataFrame(
        {
            "id": [hashlib.sha1(f"{source}:{i + 1}".encode()).hexdigest()[:16] for i in range(n)],
            "source": source,
            "source_file": str(path),
            "source_line": np.arange(1, n + 1, dtype=np.int64),
            "text": raw["text"].astype(str).to_numpy(),
            "label": raw["label"].astype(str).to_numpy(),
            "meta": "{}",
        }
    )
    # Cluster near duplicates (as the dedupe stage would) and keep the first row of each cluster.
    texts = df["text"].tolist()
    pairs = np.array([(i, j) for j, i, _ in evaluate.near_duplicate_pairs(texts, texts, evaluate.Leakage().resolved())],
                     dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    component = connected_components(graph, directed=False)[1]
    root = pd.Series(np.arange(n)).groupby(component).transform("min").to_numpy()  # smallest row of each cluster
    _, cluster = np.unique(root, return_inverse=True)
    df["cluster_id"] = cluster.astype(np.int64)
    first = ~pd.Series(root).duplicated().to_numpy()
    kept, removed = df[first].copy(), df[~first].copy()
    rep_id = dict(zip(df.index[first], df["id"][first]))
    rejected = pd.DataFrame(
        {
            "id": removed["id"],
            "stage": "dedupe",
            "reason": "near_duplicate",
            "details": [json.dumps({"duplicate_of": rep_id[r], "jaccard": 1.0, "cluster_id": int(c)})
                        for r, c in zip(root[~first], removed["cluster_id"])],
            "source": removed["source"],
            "source_file": removed["source_file"],
            "source_line": removed["source_line"],
            "text": removed["text"],
            "label": removed["label"],
        }
    )
    u = np.array([_stable_unit(f"{source}:{c}") for c in kept["cluster_id"]])
    kept["split"] = np.where(u < 0.8, "train", np.where(u < 0.9, "validation", "test"))
    kept["n_chars"] = kept["text"].str.len().astype(np.float64)
    kept["n_words"] = kept["text"].str.split().str.len().astype(np.float64)
    kept["lang"] = "en"
    kept["lang_score"] = 0.99
    return kept.reset_index(drop=True), rejected.reset_index(drop=True)


# What the executor hands the gate with each candidate written here (by folder): see `check`.
HANDED_ON: dict[Path, Summaries] = {}


def dedupe_summary(rows: pd.DataFrame, rejected: pd.DataFrame) -> DedupeSummary:
    """The summary the dedupe stage would hand on for these kept and removed rows: cluster sizes over both,
    and the clusters whose labelled rows disagree."""
    removed_cluster = [json.loads(d)["cluster_id"] for d in rejected["details"]]
    members = pd.concat([
        pd.DataFrame({"cluster": rows["cluster_id"].to_numpy(), "id": rows["id"], "text": rows["text"],
                      "label": rows["label"], "kept": True}),
        pd.DataFrame({"cluster": removed_cluster, "id": rejected["id"], "text": rejected["text"],
                      "label": rejected["label"], "kept": False}),
    ], ignore_index=True)
    sizes = members.groupby("cluster").size().value_counts()
    distinct = members.dropna(subset=["label"]).groupby("cluster")["label"].nunique()
    conflicting = sorted(distinct[distinct > 1].index)
    examples = [LabelConflict(cluster_id=int(c), rows=[
        ConflictRow(id=r.id, text=r.text, label=r.label, kept=bool(r.kept))
        for r in members[members["cluster"] == c].head(10).itertuples()]) for c in conflicting[:10]]
    return DedupeSummary(similarity=Similarity(shingle="word", ngram=5, threshold=0.8), exact_removed=0,
                         near_removed=len(rejected), cluster_sizes={int(k): int(v) for k, v in sizes.items()},
                         label_conflict_clusters=len(conflicting), label_conflict_examples=examples)


def check(folder: Path, config: Config, dataset_config, parent: Path | None = None):
    """The gate on a candidate written by `write_candidate`, with the summaries handed on with it."""
    return evaluate_candidate(folder, config, dataset_config, parent, HANDED_ON.get(folder))


def write_candidate(folder: Path, dataset: str, rows: pd.DataFrame, rejected: pd.DataFrame,
                    labels: list[str] | None, parent: str | None = None,
                    annotation: AnnotationSummary | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    HANDED_ON[folder] = Summaries([dedupe_summary(rows, rejected), *([annotation] if annotation else [])])
    split_schema = pa.schema(list(schemas.SPLIT) + [pa.field("n_chars", pa.float64()), pa.field("n_words", pa.float64()),
                                                   pa.field("lang", pa.string()), pa.field("lang_score", pa.float64())])
    splits = {}
    for s in schemas.SPLITS:
        part = rows[rows["split"] == s]
        table = pa.Table.from_pandas(part[split_schema.names], schema=split_schema, preserve_index=False)
        pq.write_table(table, folder / f"{s}.parquet")
        splits[s] = {"rows": len(part), "labels": part["label"].fillna("(none)").value_counts().to_dict()}
    pq.write_table(pa.Table.from_pandas(rejected[schemas.REJECTED.names], schema=schemas.REJECTED,
                                        preserve_index=False), folder / "rejected.parquet")
    n_in = len(rows) + len(rejected)
    stages = [
        {"name": "collect", "rows_in": n_in, "rows_out": n_in, "dropped": {}, "seconds": 0.1, "stats": {}},
        {"name": "clean", "rows_in": n_in, "rows_out": n_in, "dropped": {}, "seconds": 0.5, "stats": {}},
        {"name": "dedupe", "rows_in": n_in, "rows_out": len(rows), "dropped": {"near_duplicate": len(rejected)},
         "seconds": 1.0, "stats": {}},
        {"name": "split", "rows_in": len(rows), "rows_out": len(rows), "dropped": {}, "seconds": 0.1, "stats": {}},
    ]
    if annotation is not None:
        stages.insert(3, {"name": "annotate", "rows_in": len(rows), "rows_out": len(rows), "dropped": {},
                          "seconds": 2.0, "stats": {}})
    manifest = {"dataset": dataset, "version": "candidate", "parent_version": parent, "labels": labels,
                "stages": stages, "splits": splits, "content_fingerprint": "0" * 64}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


@pytest.fixture(scope="module")
def sms_rows():
    return build_rows(SMS, "sms")


@pytest.fixture(scope="module")
def trec_rows():
    return build_rows(TREC, "trec")


SMS_CFG = SimpleNamespace(dataset="sms", labels=["ham", "spam"])
TREC_CFG = SimpleNamespace(dataset="trec", labels=["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"])


def fast(**kw) -> Config:
    """A config without the label-noise model, for the gates that do not need it."""
    return Config(label_noise={"enabled": False}, **kw)


def failing(result, check: str) -> list:
    return [f for f in result.failures if f.check == check]


# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_sms(tmp_path_factory, sms_rows):
    rows, rejected = sms_rows
    folder = write_candidate(tmp_path_factory.mktemp("clean") / "sms", "sms", rows, rejected, SMS_CFG.labels)
    return folder, check(folder, Config(), SMS_CFG, None)


def test_clean_real_dataset_passes_and_writes_evidence(clean_sms):
    folder, result = clean_sms
    assert result.passed, [str(f) for f in result.failures]
    assert not result.blocking_failures
    s = result.summary
    assert s["status"] == "passed" and s["expectations"]["evaluated"] > 30
    assert s["leakage"]["leaked"] == {"validation": 0, "test": 0}
    assert s["label_noise"]["ran"] and s["label_noise"]["share"] < 0.02
    # Evidence stored in the version: suites, results (JSON), GE's pages, the report, label issues.
    suites = json.loads((folder / "quality" / "suites.json").read_text())
    results = json.loads((folder / "quality" / "results.json").read_text())
    for scope in (*schemas.SPLITS, "dataset"):
        assert suites[scope]["name"] == f"sms.{scope}" and suites[scope]["expectations"]
        assert results[scope]["success"] is True and results[scope]["results"]
        assert "<html" in (folder / s["files"]["pages"][scope]).read_text().lower()
    # No path in the version names a split (load_dataset would take it for split data).
    words = re.compile(r"train|validation|valid|val|dev|test|eval", re.I)
    evidence = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    assert [p for p in evidence if words.search(p) and p not in {f"{x}.parquet" for x in schemas.SPLITS}] == []
    assert json.loads((folder / "quality" / "summary.json").read_text()) == s
    issues = pd.read_parquet(folder / "label_issues.parquet")
    assert list(issues.columns) == evaluate.LABEL_ISSUES_SCHEMA.names
    assert json.loads(json.dumps(s)) == s  # JSON-ready for the manifest
    assert (folder / "report.html").stat().st_size > 10_000


def test_clean_trec_passes(tmp_path, trec_rows):
    rows, rejected = trec_rows
    folder = write_candidate(tmp_path / "trec", "trec", rows, rejected, TREC_CFG.labels)
    result = check(folder, Config(), TREC_CFG, None)
    assert result.passed, [str(f) for f in result.failures]
    assert 0 < result.summary["label_noise"]["share"] < 0.1


def test_collapsed_class_fails_class_share_with_the_share(tmp_path, sms_rows):
    rows, rejected = sms_rows
    rows = rows.copy()
    test_spam = rows.index[(rows["split"] == "test") & (rows["label"] == "spam")]
    keep = 2
    rows = rows.drop(test_spam[keep:])
    n_test = int((rows["split"] == "test").sum())
    folder = write_candidate(tmp_path / "c", "sms", rows, rejected, SMS_CFG.labels)
    result = check(folder, fast(class_share_min=0.05), SMS_CFG, None)
    assert not result.passed
    fails = {(f.split, f.expectation): f for f in failing(result, "class_share")}
    # spam fell under its floor; ham, its complement, rose over the 0.99 ceiling.
    assert sorted(fails) == [("test", "expect_column_values_to_be_in_set"), ("test", "expect_column_values_to_not_be_in_set")]
    floor = fails["test", "expect_column_values_to_be_in_set"]
    assert floor.blocking and floor.observed == pytest.approx(keep / n_test, abs=1e-6)
    assert "'spam'" in floor.expected and "0.05" in floor.expected
    ceiling = fails["test", "expect_column_values_to_not_be_in_set"]
    assert ceiling.observed == pytest.approx(1 - keep / n_test, abs=1e-6) and "'ham'" in ceiling.expected
    assert {f.check for f in result.blocking_failures} == {"class_share"}


def test_nulls_fail_not_null_with_the_count(tmp_path, sms_rows):
    rows, rejected = sms_rows
    rows = rows.copy()
    train = rows.index[rows["split"] == "train"]
    rows.loc[train[:7], "label"] = None
    folder = write_candidate(tmp_path / "n", "sms", rows, rejected, SMS_CFG.labels)
    result = check(folder, fast(), SMS_CFG, None)
    assert not result.passed
    fails = failing(result, "not_null")
    assert [(f.split, f.column, f.observed) for f in fails] == [("train", "label", 7)]
    assert fails[0].blocking and "7 unexpected" in fails[0].details
    # A label-free split is fine when the config says it need not be labelled.
    result = check(folder, fast(labelled_splits=["validation", "test"]), SMS_CFG, None)
    assert result.passed, [str(f) for f in result.failures]


def test_leaked_test_row_fails_leakage(tmp_path, sms_rows):
    rows, rejected = sms_rows
    rows = rows.copy()
    train_text = rows.loc[(rows["split"] == "train") & (rows["text"].str.split().str.len() > 15), "text"].iloc[0]
    # A test row that is the train row with a word changed: a near duplicate, not an exact one.
    t = rows.index[rows["split"] == "test"][0]
    rows.loc[t, "text"] = train_text.rstrip() + " ok"
    folder = write_candidate(tmp_path / "l", "sms", rows, rejected, SMS_CFG.labels)
    result = check(folder, fast(), SMS_CFG, None)
    assert not result.passed
    fails = failing(result, "leakage")
    assert [(f.split, f.column, f.observed, f.blocking) for f in fails] == [("dataset", "leaked_test_rows", 1, True)]
    leaks = pd.read_parquet(folder / "quality" / "leakage.parquet")
    assert leaks["against"].tolist() == ["test"] and leaks["id"].iloc[0] == rows.loc[t, "id"]
    assert 0.8 <= leaks["jaccard"].iloc[0] < 1.0

    # Against the previous version's test split: that version's test row is now in train.
    prev = write_candidate(tmp_path / "prev", "sms", rows, rejected, SMS_CFG.labels)
    moved = rows.copy()
    moved.loc[t, "split"] = "train"
    folder2 = write_candidate(tmp_path / "l2", "sms", moved, rejected, SMS_CFG.labels, parent="v1")
    result = check(folder2, fast(), SMS_CFG, prev)
    fails = failing(result, "leakage")
    assert [(f.column, f.observed) for f in fails] == [("leaked_previous_test_rows", 1)]


def test_planted_label_flips_are_found_and_fail_the_gate(tmp_path, sms_rows):
    rows, rejected = sms_rows
    rows = rows.copy()
    rng = np.random.default_rng(7)
    flip = rng.choice(len(rows), size=int(0.05 * len(rows)), replace=False)
    rows.loc[flip, "label"] = np.where(rows.loc[flip, "label"] == "spam", "ham", "spam")
    flipped = set(rows.loc[flip, "id"])
    folder = write_candidate(tmp_path / "f", "sms", rows, rejected, SMS_CFG.labels)
    cfg = Config(label_noise={"max_share": 0.02}, non_blocking=["label_conflicts"])  # label noise made blocking
    result = check(folder, cfg, SMS_CFG, None)
    fails = failing(result, "label_noise")
    assert [(f.split, f.column, f.blocking) for f in fails] == [("dataset", "label_issue_share", True)]
    issues = pd.read_parquet(folder / "label_issues.parquet")
    assert fails[0].observed == pytest.approx(len(issues) / len(rows), abs=1e-6)
    # Recall of the planted flips at a fixed budget: the 10 % most suspicious rows.
    budget = int(0.10 * len(rows))
    top = issues.sort_values("rank").head(budget)
    recall = len(flipped & set(top["id"])) / len(flipped)
    print(f"planted flips: {len(flipped)}, flagged: {len(issues)}, recall in top 10%: {recall:.3f}")
    assert recall >= 0.8
    hit = top[top["id"].isin(flipped)].iloc[0]
    original = sms_rows[0].set_index("id")["label"]
    given = rows.set_index("id")["label"]
    assert hit["given_label"] == given[hit["id"]] and hit["suggested_label"] == original[hit["id"]]
    assert issues["score"].is_monotonic_increasing or issues["score"].iloc[0] <= issues["score"].median()
    assert issues["rank"].tolist() == list(range(1, len(issues) + 1))


def test_user_expectations_in_ge_terms(tmp_path, sms_rows):
    rows, rejected = sms_rows
    folder = write_candidate(tmp_path / "u", "sms", rows, rejected, SMS_CFG.labels)
    cfg = fast(expectations=[
        {"expectation_type": "expect_column_values_to_match_regex", "kwargs": {"column": "text", "regex": "^zzz"},
         "blocking": False, "splits": ["test"]},
        {"expectation_type": "expect_column_max_to_be_between", "kwargs": {"column": "ids_in_several_splits", "max_value": 0},
         "on": "dataset"},
    ])
    result = check(folder, cfg, SMS_CFG, None)
    assert result.passed
    [w] = result.warnings
    assert (w.check, w.split, w.expectation, w.blocking) == ("user", "test", "expect_column_values_to_match_regex", False)
    assert w.observed == int((rows["split"] == "test").sum())
    with pytest.raises(Exception, match="expect_nonsense"):
        Config(expectations=[{"expectation_type": "expect_nonsense", "kwargs": {}}])
    with pytest.raises(Exception, match="unknown check"):
        Config(non_blocking=["leakge"])


def test_agreement_floor_and_confusion(tmp_path, sms_rows):
    rows, rejected = sms_rows
    # The annotate stage's outcome as it hands it on: agreement figures and the annotators' confusion matrix.
    annotation = AnnotationSummary(
        url="http://127.0.0.1:8080", project_id=1, project_title="sftpipe: sms", select="sample",
        annotators_per_task=3, selected=40, done=40, coverage=1.0, annotations=120, annotations_aside=0,
        annotators=["a", "b", "c"], aggregation="majority", labelled_rows=40, unresolved=0, changed_from_source=3,
        agreement=Agreement(items=40, annotations=120, krippendorff_alpha=0.31, fleiss_kappa=0.3,
                            cohen_kappa=[{"a": "a", "b": "b", "kappa": 0.28, "items": 40}],
                            confusion={"ham": {"ham": 70, "spam": 12}, "spam": {"ham": 12, "spam": 26}}))
    folder = write_candidate(tmp_path / "a", "sms", rows, rejected, SMS_CFG.labels, annotation=annotation)
    result = check(folder, fast(), SMS_CFG, None)
    fails = failing(result, "agreement")
    assert sorted((f.column, f.observed, f.blocking) for f in fails) == [
        ("fleiss_kappa", 0.3, True), ("krippendorff_alpha", 0.31, True)]
    assert result.summary["agreement"]["krippendorff_alpha"] == 0.31
    page = (folder / "report.html").read_text()
    assert "annotator label pairs" in page and "Krippendorff" in page and "Cohen" in page
    assert "Counted both ways" in page  # a summary with only the symmetric matrix says how it counts
    assert {f.check for f in result.failures} == {"agreement"}


def test_label_conflicts_are_dedupes_figure(tmp_path, sms_rows):
    """The gate bounds and shows the label conflicts dedupe counted; it computes none itself."""
    rows, rejected = sms_rows
    folder = write_candidate(tmp_path / "k", "sms", rows, rejected, SMS_CFG.labels)
    rows_of = rows.set_index("id")
    conflict = LabelConflict(cluster_id=7, rows=[
        ConflictRow(id=i, text=rows_of.loc[i, "text"], label=label, kept=True)
        for i, label in zip(rows["id"].head(2), ["ham", "spam"])])
    handed = HANDED_ON[folder].get(DedupeSummary).model_copy(
        update={"label_conflict_clusters": 3, "label_conflict_examples": [conflict]})
    HANDED_ON[folder] = Summaries([handed])
    result = check(folder, fast(), SMS_CFG, None)
    [warning] = failing(result, "label_conflicts")
    assert (warning.observed, warning.blocking) == (3, False)  # a warning by default
    assert result.summary["label_conflicts"]["clusters"] == 3
    assert result.summary["label_conflicts"]["examples"][0]["labels"] == ["ham", "spam"]
    # Without a dedupe summary there is nothing to bound: the check does not run.
    result = evaluate_candidate(folder, fast(), SMS_CFG, None)
    assert not failing(result, "label_conflicts") and result.summary["label_conflicts"]["ran"] is False


def test_summarize_report(clean_sms):
    folder, result = clean_sms
    text = summarize_report(folder)
    assert str((folder / "report.html").resolve()) in text
    assert "status: passed" in text and "train" in text and "label issues:" in text


# ---------------------------------------------------------------------------------------------------------
# The page in a real browser.


@pytest.mark.skipif(chromium_path() is None, reason="Chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(clean_sms, tmp_path):
    folder, _ = clean_sms
    page = (folder / "report.html").read_text()
    assert not re.search(r'(?:src|href)="https?://', page), "report.html must be self-contained"
    n_images = page.count("<img ")
    assert n_images >= 5
    # A copy of the page with a probe that writes, after load, how many images decoded with a size.
    probe = """<script>window.addEventListener('load', () => {
      const imgs = [...document.images];
      const ok = imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);
      const div = document.createElement('div'); div.id = 'probe';
      div.textContent = `images ${ok.length}/${imgs.length} tables ${document.querySelectorAll('table').length}`;
      document.body.appendChild(div);
    });</script>"""
    # The page allows no script (its Content-Security-Policy): the copy lets the probe's inline script run
    # and keeps the rest of the policy, so the images are loaded under the page's own rules.
    assert "default-src 'none'" in page and "script-src" not in page
    copy = tmp_path / "probe.html"
    copy.write_text(page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
                    .replace("</body>", probe + "</body>"))
    cmd = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-dev-shm-usage", "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    m = re.search(r'<div id="probe">images (\d+)/(\d+) tables (\d+)</div>', out.stdout)
    assert m, f"probe not found; chromium said: {out.stderr[-2000:]}"
    ok, total, tables = map(int, m.groups())
    assert total == n_images and ok == total, f"{ok} of {total} images loaded"
    assert tables >= 8


@pytest.mark.parametrize("labels", [["ham", "spam"], ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"],
                                    ["a rather long label name", "another long label, with a comma", "x"]],
                         ids=["two labels", "six labels", "long labels"])
def test_annotator_heat_map_fits_its_figure(labels):
    """Nothing of the label-pair heat map is cut off: after the layout report.html's images get, every text
    (title, tick labels, axis labels, cell counts, colour-bar ticks) lies inside the figure."""
    from stages.evaluate.report_agreement import pair_figure
    from stages.evaluate.report_html import _plt

    plt = _plt()
    conf = {a: {b: (i * 7 + j * 3) % 11 for j, b in enumerate(labels)} for i, a in enumerate(labels)}
    fig, m = pair_figure(conf, "annotator.a@example.com", "annotator.b@example.com", plt)
    fig.tight_layout()
    fig.canvas.draw()
    box = fig.bbox
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.findobj(match=lambda o: hasattr(o, "get_window_extent") and hasattr(o, "get_text"))
             if t.get_text() and t.get_visible()]
    assert len(texts) >= len(labels) ** 2 + 2 * len(labels) + 3
    outside = [t.get_text() for t in texts
               if not (box.x0 - 1 <= t.get_window_extent(renderer).x0 and t.get_window_extent(renderer).x1 <= box.x1 + 1
                       and box.y0 - 1 <= t.get_window_extent(renderer).y0 and t.get_window_extent(renderer).y1 <= box.y1 + 1)]
    plt.close(fig)
    assert outside == [], f"cut off: {outside}"
    assert int(m.sum()) == sum(sum(r.values()) for r in conf.values())


def test_agreement_section_shows_pairs_ties_and_relabelled_rows():
    import pandas as pd

    from stages.evaluate.report_agreement import agreement_section as _agreement

    evidence = {"krippendorff_alpha": 0.6, "fleiss_kappa": 0.58, "items": 10, "annotations": 20, "pairs": 10,
                "annotators": ["ann.a", "ann.b"], "pair_axes": ["ann.a", "ann.b"],
                "pair_confusion": {"ham": {"ham": 5, "spam": 1}, "spam": {"ham": 1, "spam": 3}},
                "unresolved": 2, "ties": [{"id": "r5", "votes": {"ham": 1, "spam": 1}}, {"id": "r9", "votes": {"ham": 1, "spam": 1}}],
                "relabelled": 1, "relabelled_rows": [{"id": "r2", "before": "spam", "after": "ham", "by": "review of v1"}],
                "reviews": [{"version": "v1", "url": "http://ls/projects/2/data", "rows": 3, "decided": 3, "applied": 3,
                             "relabelled": 1, "unresolved": 0, "stale": 0, "absent": 0}]}
    splits = {"train": pd.DataFrame({"id": ["r2", "r5"], "text": ["free <b>prize</b>", "see you"]}),
              "validation": pd.DataFrame({"id": ["r9"], "text": ["call me"]}), "test": pd.DataFrame({"id": [], "text": []})}
    page = _agreement(evidence, splits)
    assert "the cells add up to the 10 pairs" in page and "Rows: the label from ann.a; columns: from ann.b" in page
    assert "<h3>Ties (all;" in page and "ham: 1, spam: 1" in page and "see you" in page and "call me" in page
    assert "<h3>Rows relabelled (all)</h3>" in page and "review of v1" in page and "free &lt;b&gt;prize&lt;/b&gt;" in page
    assert "Label review of v1" in page and "3 applied (1 relabelled)" in page
    # A version made before pairs were kept: the symmetric matrix, said to count disagreements twice.
    old = _agreement({"items": 10, "pairs": 10, "confusion": {"ham": {"ham": 5, "spam": 2}, "spam": {"ham": 2, "spam": 3}}}, splits)
    assert "the cells add up to 12, more than the 10 pairs" in old


def test_report_command_prints_where_and_summary(clean_sms, tmp_path):
    import typer
    from typer.testing import CliRunner

    from pipeline.cli import report as report_cli

    folder, _ = clean_sms
    shutil.copytree(folder, tmp_path / "versions" / "sms" / "v1")
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a multi-command app, like sftpipe
    report_cli.register(app)
    out = CliRunner().invoke(app, ["report", "sms", "v1", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert str((tmp_path / "versions" / "sms" / "v1" / "report.html").resolve()) in out.output
    assert "status: passed" in out.output
    out = CliRunner().invoke(app, ["report", "sms", "--candidate", str(folder)])
    assert out.exit_code == 0 and "status: passed" in out.output
    out = CliRunner().invoke(app, ["report", "sms", "v9", "--data-dir", str(tmp_path)])
    assert out.exit_code != 0 and "v9" in str(out.exception)


def test_unlabelled_dataset_and_an_empty_split(tmp_path, sms_rows):
    rows, rejected = sms_rows
    rows = rows.copy()
    rows["label"] = None
    rows = rows[rows["split"] != "validation"]
    folder = write_candidate(tmp_path / "u", "sms", rows, rejected, None)
    unlabelled = SimpleNamespace(dataset="sms", labels=None)
    result = check(folder, Config(), unlabelled, None)
    # No labels: no label checks, no label-noise model; the empty validation split is below its minimum.
    assert [(f.check, f.split, f.observed) for f in result.failures] == [("min_rows", "validation", 0)]
    assert result.summary["label_noise"]["ran"] is False
    assert not (folder / "quality" / "validation.parquet").exists()
    assert pd.read_parquet(folder / "label_issues.parquet").empty
    result = check(folder, Config(min_rows={"validation": 0}), unlabelled, None)
    assert result.passed, [str(f) for f in result.failures]


def test_disabled_evaluation_passes_without_writing(tmp_path, sms_rows):
    rows, rejected = sms_rows
    folder = write_candidate(tmp_path / "d", "sms", rows.head(0), rejected.head(0), SMS_CFG.labels)
    result = check(folder, Config(enabled=False), SMS_CFG, None)
    assert result.passed and result.summary["status"] == "not evaluated"
    assert not (folder / "report.html").exists()
