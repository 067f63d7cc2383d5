"""Hostile data in what a version shows a person: every HTML page a version ships (report.html and Great
Expectations' quality/page-N.html) is loaded in a real headless Chromium with script payloads arriving as
live tags in the rows — text, labels, ids — and no script from the data may run; labels that are mathtext
(`$\\foo$`), hold a newline, a `|`, HTML or 5,000 characters neither crash the report nor break the dataset
card.

The payloads reach the gate as tags, whatever clean's `strip_html` does: the config turns it off.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from .conftest import chromium_path, run_pipeline, write_config

# Each payload, if it ran, would mark the page: its title, or an element with id "pwned".
MARK = "document.title='PWNED';var d=document.createElement('p');d.id='pwned';document.body.appendChild(d)"
IMG = f'<img src=x onerror="{MARK}">'
SVG = f'<svg onload="{MARK}"></svg>'
SCRIPT = f"<script>{MARK}</script>"
WEIRD_LABELS = ["$\\foo$", "two\nlines", "a|b", "<b>bold</b>", "L" * 5000, IMG]


def _rows(odd_labels: list[str]) -> list[dict]:
    words = "an ordinary message about the weather and the trains today, number {i} of many"
    rows = [{"id": f"row{i}", "text": words.format(i=i), "label": "ham" if i % 3 else "spam"} for i in range(60)]
    long_tail = " and then it went on" * 8  # over the gate's text_length.max (100): shown as unexpected values
    for k, payload in enumerate((IMG, SVG, SCRIPT)):
        for copy in range(4):  # copies land in several splits: leakage examples show them too
            rows.append({"id": f"p{k}c{copy}", "text": f"{payload} copy {copy}{long_tail}", "label": "ham"})
    for k, label in enumerate(odd_labels):
        rows.append({"id": f"w{k}", "text": f"a message with an odd label, {k}", "label": label})
    rows.append({"id": IMG, "text": "a row whose id is a tag", "label": "spam"})
    rows.append({"id": "dropped", "text": f"{SVG} and a NUL\0 here", "label": "ham"})  # rejected: drop examples
    return rows


def _publish(folder, odd_labels: list[str]):
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(odd_labels)), encoding="utf-8")
    config = write_config(folder, {
        "dataset": "pages",
        "sources": [{"name": "s", "path": "rows.jsonl", "format": "jsonl", "label_field": "label", "id_field": "id"}],
        "clean": {"normalize": {"strip_html": False}, "signals": []},
        "dedupe": {"exact": False, "near": False},
        "evaluate": {
            "text_length": {"max": 100},
            "label_noise": {"min_rows": 10},
            "expectations": [
                {"expectation_type": "expect_column_values_to_be_in_set", "kwargs": {"column": "label", "value_set": ["ham", "spam"]}},
                {"expectation_type": "expect_column_distinct_values_to_be_in_set", "kwargs": {"column": "label", "value_set": ["ham", "spam"]}},
                {"expectation_type": "expect_column_values_to_match_regex", "kwargs": {"column": "id", "regex": "^[a-z0-9]+$"}},
                {"expectation_type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "text", "regex": IMG}},
            ],
        },
    })
    result = run_pipeline(config, folder / "data", allow_failed_gates=True)  # the rare labels fail class_share
    assert result.published and not result.evaluation.passed
    return folder / "data" / "versions" / "pages" / result.version


@pytest.fixture(scope="module")
def hostile_version(tmp_path_factory):
    """Script payloads in texts, a label and an id (and labels that are only odd as HTML)."""
    return _publish(tmp_path_factory.mktemp("pages"), ["<b>bold</b>", IMG])


@pytest.fixture(scope="module")
def odd_labels_version(tmp_path_factory):
    return _publish(tmp_path_factory.mktemp("labels"), WEIRD_LABELS)


def _dom(page) -> str:
    cmd = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-dev-shm-usage", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert "</html>" in out.stdout, f"Chromium did not render {page}: {out.stderr[-2000:]}"
    return out.stdout


@pytest.mark.skipif(chromium_path() is None, reason="Chromium not installed (apt-get install -y chromium)")
def test_no_script_from_the_data_runs_in_any_page_a_version_ships(hostile_version, tmp_path):
    pages = sorted(hostile_version.rglob("*.html"))
    assert hostile_version / "report.html" in pages and len(pages) >= 5  # report + a GE page per scope
    shown = set()
    for page in pages:
        html = page.read_text(encoding="utf-8")
        dom = _dom(page)
        assert 'id="pwned"' not in dom and "<title>PWNED</title>" not in dom, f"a script from the data ran in {page.name}"
        assert "&amp;lt;img" not in dom, f"{page.name} shows the data escaped twice"
        shown |= {name for name, needle in (("img", "&lt;img src=x onerror="), ("svg", "&lt;svg onload="),
                                            ("script", "&lt;script&gt;document.title")) if needle in dom}
        if page.name == "report.html":
            # No script at all may run there (its Content-Security-Policy), and without the policy, escaping
            # alone holds: a copy with the policy removed runs nothing either.
            assert 'http-equiv="Content-Security-Policy"' in html and "script-src" not in html.split("default-src 'none'")[0]
            bare = tmp_path / "report-without-csp.html"
            bare.write_text(re.sub(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", "", html), encoding="utf-8")
            dom = _dom(bare)
            assert 'id="pwned"' not in dom and "<title>PWNED</title>" not in dom, "report.html relies on its policy alone"
    # Shown, as text: the img payload is a label and an id (in every page that lists them); which sampled
    # unexpected texts GE keeps (5 per expectation) decides whether the others are.
    assert "img" in shown and len(shown) >= 2, f"the payloads were not shown as text: only {shown}"


def test_odd_labels_neither_crash_the_report_nor_break_the_dataset_card(odd_labels_version):
    report = (odd_labels_version / "report.html").read_text(encoding="utf-8")
    assert 'alt="label distribution per split"' in report  # drawn, with the mathtext label as a tick label
    assert "$\\foo$" in report and "&lt;b&gt;bold&lt;/b&gt;" in report
    card = (odd_labels_version / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"(?<!\\)<[A-Za-z/]", card), "raw HTML in the dataset card"
    assert "L" * 100 not in card  # the 5,000-character label is cut
    labels = card[card.index("| label |"):].split("\n\n")[0].splitlines()
    cells = {len(re.split(r"(?<!\\)\|", row)) for row in labels}
    assert len(cells) == 1, f"the label table's rows differ in their number of cells: {labels}"
    assert len(labels) == 2 + 2 + len(WEIRD_LABELS)  # header, rule, ham, spam, the odd ones
    assert r"two lines" in card and r"a\|b" in card and r"\$\\foo\$" in card
