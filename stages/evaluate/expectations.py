"""The Great Expectations adapter: every check becomes expectations, run with an ephemeral context.

One suite per split (`<dataset>.<split>`: schema columns and types, no null id / text / label in labelled
splits, unique ids, text length bounds, labels in the label set, languages in the allowed set, a minimum
row count, each class's share between a floor and a ceiling, plus the user's own expectations) and one
suite on a one-row table of dataset-level figures (`<dataset>.dataset`: the figures the other checks
compute, each with the bound its check declared, plus the user's). Every expectation carries `meta.check`
(the built-in check it implements, or `user`) and `meta.blocking`. Suites, validation results (JSON) and
GE's rendered HTML page of each go to `quality/`.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

import schemas
from schemas.summaries import CleanSummary
from stages.evaluate.config import CHECKS, Config
from stages.evaluate.evidence import QUALITY_DIR, jsonable, py
from stages.evaluate.ge import build_expectation, pandas_dtype
from stages.evaluate.result import Bound, Failure


def with_views(split: str, df: pd.DataFrame, candidate, config: Config) -> pd.DataFrame:
    """A generative split's rows plus what its suite checks that is not a column: each bounded field as
    text (`<field>_text`, where the field is not a column itself) and, for conversations, the role-order
    problem of each row (`role_order_problem`, null when the roles are in order)."""
    kind = getattr(candidate, "kind", None)
    if kind is None or kind.default_view is not None or not len(df):
        return df
    df = df.copy()
    for field in config.field_length:
        if field not in df and field in kind.views:
            df[f"{field}_text"] = candidate.view(split, field)
    if "messages" in df:
        from schemas.chat import role_order_problem

        df["role_order_problem"] = [role_order_problem(m["role"] for m in turns) for turns in df["messages"]]
    return df


def split_expectations(split: str, df: pd.DataFrame, labels, allowed_languages, config: Config,
                       schema: pa.Schema = schemas.SPLIT, candidate=None) -> list:
    import great_expectations.expectations as E

    kind = getattr(candidate, "kind", None)
    generative = kind is not None and kind.default_view is None

    out = []

    def add(check: str, exp_cls, **kwargs):
        out.append(exp_cls(**kwargs, meta={"check": check, "blocking": config.blocking(check)}))

    add("schema", E.ExpectTableColumnsToMatchSet, column_set=list(schema.names), exact_match=False)
    for f in schema:
        if f.name in df.columns and not (f.nullable and df[f.name].isna().all()):
            add("schema", E.ExpectColumnValuesToBeOfType, column=f.name, type_=pandas_dtype(f.type))
    required = [f.name for f in kind.payload if not f.nullable] if generative else ["text"]
    for column in ("id", *required):
        add("not_null", E.ExpectColumnValuesToNotBeNull, column=column)
    has_labels = bool(labels)
    if has_labels and split in config.labelled_splits:
        add("not_null", E.ExpectColumnValuesToNotBeNull, column="label")
    add("unique_ids", E.ExpectColumnValuesToBeUnique, column="id")
    clean = candidate.summaries.get(CleanSummary) if candidate is not None else None
    lo, hi = config.text_length.resolved(clean.bound("n_chars", "max") if clean is not None else None)
    if not generative and (lo is not None or hi is not None):
        add("text_length", E.ExpectColumnValueLengthsToBeBetween, column="text", min_value=lo, max_value=hi)
    for field, bound in config.field_length.items() if generative else ():
        column = field if field in df else f"{field}_text"
        lo, hi = bound.resolved(clean.bound(f"{field}.n_chars", "max") if clean is not None else None)
        if column in df and (lo is not None or hi is not None):
            add("field_length", E.ExpectColumnValueLengthsToBeBetween, column=column, min_value=lo, max_value=hi)
    if "role_order_problem" in df:
        add("role_order", E.ExpectColumnValuesToBeNull, column="role_order_problem")
    if has_labels:
        add("label_set", E.ExpectColumnValuesToBeInSet, column="label", value_set=list(labels))
    if allowed_languages and "lang" in df.columns:
        add("language", E.ExpectColumnValuesToBeInSet, column="lang", value_set=list(allowed_languages),
            mostly=config.languages_mostly)
    for column in [c for c in df.columns if c.endswith("_lang")] if generative else ():
        allowed = config.allowed_languages or candidate.default_languages(column)
        if allowed:  # nulls (a field without prose) are left out of `mostly` by GE
            add("language", E.ExpectColumnValuesToBeInSet, column=column, value_set=list(allowed),
                mostly=config.languages_mostly)
    add("min_rows", E.ExpectTableRowCountToBeBetween, min_value=config.min_rows.get(split, 0))
    # Class shares in GE's terms: "values in {label}" for `mostly` = floor; "not in {label}" for
    # `mostly` = 1 - ceiling. Shares are over labelled rows (GE leaves nulls out of `mostly`).
    share_labels = list(labels) if has_labels else sorted(df["label"].dropna().unique()) if "label" in df else []
    floor = config.class_share_floor(len(share_labels))
    if len(share_labels) > 1:
        for lab in share_labels:
            if floor:
                add("class_share", E.ExpectColumnValuesToBeInSet, column="label", value_set=[lab],
                    mostly=round(floor, 12))
            if config.class_share_max is not None and config.class_share_max < 1:
                add("class_share", E.ExpectColumnValuesToNotBeInSet, column="label", value_set=[lab],
                    mostly=round(1 - config.class_share_max, 12))
    for ue in config.expectations:
        if ue.on == "rows" and (ue.splits is None or split in ue.splits):
            out.append(build_expectation(ue.expectation_type, ue.kwargs,
                                          {**ue.meta, "check": "user", "blocking": ue.blocking}))
    return out


def dataset_expectations(bounds: list[Bound], config: Config) -> list:
    """The bounds the checks declared on their figures, then the user's dataset-level expectations."""
    import great_expectations.expectations as E

    out = []
    for b in bounds:
        meta = {"check": b.check, "blocking": config.blocking(b.check), **({"details": b.details} if b.details else {})}
        if b.max_value is not None:
            out.append(E.ExpectColumnMaxToBeBetween(column=b.column, max_value=b.max_value, meta=meta))
        if b.min_value is not None:
            out.append(E.ExpectColumnMinToBeBetween(column=b.column, min_value=b.min_value, meta=meta))
    for ue in config.expectations:
        if ue.on == "dataset":
            out.append(build_expectation(ue.expectation_type, ue.kwargs,
                                         {**ue.meta, "check": "user", "blocking": ue.blocking}))
    return out


class Validation:
    """The suites of one candidate, run one scope at a time with an ephemeral GE context: suites, results
    and GE's pages go to `quality`; `finish()` writes the JSON files and returns the failures, a row per
    expectation result, the counts and the files written.

    Exact on every row, bounded in memory: the gate hands in one split's rows at a time and lets them go
    before the next, and results are computed in GE's BASIC format — counts, shares and a sample of 5
    unexpected values; not SUMMARY's counts of every distinct unexpected value, which for a class-share
    expectation means counting nearly every row's label, once per label."""

    def __init__(self, dataset: str, quality: Path):
        import logging

        import great_expectations as gx
        import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
        from great_expectations.data_context.types.base import ProgressBarsConfig

        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        # GE fingerprints every pandas batch by hashing all its values — unless the frame is over its
        # HASH_THRESHOLD bytes, where GE itself skips it as too costly. For a split of 650k texts the hash is
        # the gate's largest transient (~1.8 GB at 1M rows, twice the frame) and buys nothing here: the
        # candidate's content fingerprint already identifies the rows. So never hash (the results' batch
        # markers just lack `pandas_data_fingerprint`).
        pandas_engine.HASH_THRESHOLD = 0
        self.gx, self.dataset, self.quality = gx, dataset, quality
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.failures: list[Failure] = []
        self.table: list[dict[str, Any]] = []
        self.suites: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self.pages: dict[str, str] = {}
        self.counts = {"evaluated": 0, "successful": 0, "failed": 0}

    def validate(self, scope: str, df: pd.DataFrame, expectations: list) -> None:
        gx = self.gx
        name = f"{self.dataset}.{scope}"
        # A datasource per scope, deleted with its validation definition once run: GE's execution engine
        # keeps every batch it loaded (the whole frame) for as long as its datasource lives.
        source = self.context.data_sources.add_pandas(f"{self.dataset}-{scope}")
        batch_def = source.add_dataframe_asset(name=scope).add_batch_definition_whole_dataframe(f"{scope}-whole")
        suite = self.context.suites.add(gx.ExpectationSuite(name=name))
        for e in expectations:
            suite.add_expectation(e)
        vd = self.context.validation_definitions.add(gx.ValidationDefinition(data=batch_def, suite=suite, name=name))
        try:
            result = vd.run(batch_parameters={"dataframe": df},
                            result_format={"result_format": "BASIC", "partial_unexpected_count": 5})
        finally:
            self.context.validation_definitions.delete(name)
            self.context.data_sources.delete(source.name)
            del vd, batch_def, source
        _sanitize(result)
        suite_json = suite.to_json_dict()
        for e in suite_json.get("expectations", []):
            e.pop("id", None)
        self.suites[scope] = suite_json
        self.results[scope] = result.to_json_dict()
        page = _render_ge_page(result)
        if page is not None:
            page_name = f"page-{len(self.pages) + 1}.html"
            (self.quality / page_name).write_text(page)
            self.pages[scope] = f"{QUALITY_DIR}/{page_name}"
        for r in result.results:
            cfg = r.expectation_config
            meta = dict(cfg.meta or {})
            check = meta.get("check", "user")
            blocking = bool(meta.get("blocking", True))
            observed, details = _observed(r, check)
            details = details or str(meta.get("details") or "")  # a check's own words for what it measured
            row = {
                "scope": scope,
                "check": check,
                "expectation": cfg.type,
                "column": cfg.kwargs.get("column"),
                "expected": _expected(cfg.type, dict(cfg.kwargs), check),
                "observed": observed,
                "success": bool(r.success),
                "blocking": blocking,
                "details": details,
            }
            self.table.append(row)
            self.counts["evaluated"] += 1
            if r.success:
                self.counts["successful"] += 1
            else:
                self.counts["failed"] += 1
                self.failures.append(Failure(check=check, expectation=cfg.type, split=scope, column=row["column"],
                                             observed=observed, expected=row["expected"], blocking=blocking,
                                             details=details))

    def finish(self) -> dict:
        order = {c: i for i, c in enumerate(CHECKS)}
        self.failures.sort(key=lambda f: (not f.blocking, order.get(f.check, len(order)), f.split))
        (self.quality / "suites.json").write_text(json.dumps(self.suites, indent=2, default=str))
        (self.quality / "results.json").write_text(json.dumps(self.results, indent=2, default=str))
        return {"failures": self.failures, "results_table": self.table, "counts": self.counts,
                "suite_files": f"{QUALITY_DIR}/suites.json", "result_files": f"{QUALITY_DIR}/results.json",
                "page_files": self.pages}


def metrics_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """The one-row table of dataset-level figures the `dataset` suite runs on."""
    return pd.DataFrame([{k: py(v) for k, v in metrics.items()}])


def _render_ge_page(result) -> str | None:
    """GE's own HTML rendering of a validation result (Data Docs page; it loads its CSS and scripts from
    CDNs), with every value from the data escaped (`_escaping_page_view`)."""
    try:
        from great_expectations.render.renderer import ValidationResultsPageRenderer

        return _escaping_page_view()().render(ValidationResultsPageRenderer().render(result))
    except Exception as exc:  # rendering is evidence, not the gate: keep going and say so
        return f"<html><body><p>Great Expectations could not render this result: {html.escape(str(exc))}</p></body></html>"


_VIEW: list[type] = []


def _escaping_page_view() -> type:
    """GE's page view, with its one unescaped path closed. GE's templates (`*.j2`) are rendered without
    autoescaping; string-template parameters are escaped by GE, but a content block that is a bare value —
    a table cell such as a sampled unexpected value, an observed value — is printed as it is, so a row
    holding `<img src=x onerror=...>` becomes a live tag. Every GE renderer builds markup as typed content
    blocks (dicts); bare values are data. Here they are escaped, whatever their type."""
    if _VIEW:
        return _VIEW[0]
    from great_expectations.render.components import RenderedComponentContent
    from great_expectations.render.view import DefaultJinjaPageView
    from jinja2 import pass_context

    def is_block(value: Any) -> bool:
        return isinstance(value, RenderedComponentContent) or (isinstance(value, dict) and "content_block_type" in value)

    class EscapingPageView(DefaultJinjaPageView):
        @pass_context
        def render_content_block(self, jinja_context, content_block, index=None, content_block_id=None,
                                 render_to_markdown=False):
            if content_block is None or is_block(content_block):
                return super().render_content_block(jinja_context, content_block, index, content_block_id,
                                                    render_to_markdown)
            if isinstance(content_block, list):
                content_block = [v if is_block(v) else html.escape("" if v is None else str(v)) for v in content_block]
                return super().render_content_block(jinja_context, content_block, index, content_block_id,
                                                    render_to_markdown)
            return html.escape(str(content_block))

    _VIEW.append(EscapingPageView)
    return EscapingPageView


def _sanitize(result) -> None:
    """GE keeps numpy scalars / NaN in results; its renderer and JSON want plain values."""
    for r in result.results:
        if isinstance(r.result, dict):
            r.result = jsonable(r.result)


def _observed(r, check: str) -> tuple[Any, str]:
    """The observed value to show for one expectation result, and a few words of detail."""
    res = r.result or {}
    exc = r.exception_info or {}
    if exc.get("raised_exception") or (not res and not r.success):
        msg = exc.get("exception_message")
        if not msg:  # GE nests per-metric exception infos
            msg = next((v.get("exception_message") for v in exc.values() if isinstance(v, dict)), None)
        return f"error: {msg or 'expectation could not be evaluated'}", ""
    kwargs = r.expectation_config.kwargs
    if check == "class_share" and res.get("unexpected_percent_nonmissing") is not None:
        p = res["unexpected_percent_nonmissing"] / 100
        share = 1 - p if r.expectation_config.type == "expect_column_values_to_be_in_set" else p
        labelled = (res.get("element_count") or 0) - (res.get("missing_count") or 0)
        return round(share, 6), f"share of {kwargs['value_set'][0]!r} among {labelled} labelled rows"
    if check in LENGTH_CHECKS and "unexpected_count" in res:
        return _lengths_observed(res)
    if "observed_value" in res:
        obs = res["observed_value"]
        details = ""
        if isinstance(res.get("details"), dict) and res["details"].get("mismatched"):
            missing = res["details"]["mismatched"].get("missing")
            if missing:
                return f"missing columns: {', '.join(map(str, missing))}", ""
        return obs, details
    if "unexpected_count" in res:
        n = res.get("unexpected_count") or 0
        examples = res.get("partial_unexpected_list") or []
        shown = ", ".join(_short(repr(x), 60) for x in examples[:3])
        pct = res.get("unexpected_percent")
        details = f"{n} unexpected" + (f" ({pct:.2f}%)" if isinstance(pct, (int, float)) else "")
        if shown:
            details += f", e.g. {shown}"
        return n, details
    return None, ""


LENGTH_CHECKS = ("text_length", "field_length")


def _lengths_observed(res: dict[str, Any]) -> tuple[str, str]:
    """A length bound's result in what was measured: how many texts fall outside, and the lengths (not the
    texts) of those GE sampled — a row count must not read as a length."""
    n = res.get("unexpected_count") or 0
    total = res.get("element_count") or 0
    lengths = sorted({len(str(x)) for x in res.get("partial_unexpected_list") or []}, reverse=True)
    observed = f"{n:,} of {total:,} texts outside the bounds"
    details = ("lengths of those sampled: " + ", ".join(f"{x:,}" for x in lengths[:5])) if lengths else ""
    return observed, details


def _expected(etype: str, kw: dict[str, Any], check: str) -> str:
    kw = {k: (int(v) if isinstance(v, float) and v.is_integer() and k in ("min_value", "max_value") else v)
          for k, v in kw.items() if k not in ("batch_id", "column")}
    if check == "class_share":
        lab = kw.get("value_set", ["?"])[0]
        if etype == "expect_column_values_to_be_in_set":
            return f"share of {lab!r} >= {kw.get('mostly')}"
        return f"share of {lab!r} <= {round(1 - kw.get('mostly', 0), 6)}"
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if check in LENGTH_CHECKS:
        bounds = f"between {lo:,} and {hi:,}" if lo is not None and hi is not None else \
            f"at least {lo:,}" if lo is not None else f"at most {hi:,}"
        return f"every length {bounds} characters"
    if lo is not None or hi is not None:
        if lo is not None and hi is not None:
            return f"between {lo} and {hi}"
        return f">= {lo}" if lo is not None else f"<= {hi}"
    if etype in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_unique"):
        return "0 unexpected" + (f" (mostly {kw['mostly']})" if kw.get("mostly") else "")
    if "value_set" in kw:
        vs = kw["value_set"]
        s = ", ".join(map(str, vs[:10])) + (" …" if len(vs) > 10 else "")
        return f"in {{{s}}}" + (f" for at least {kw['mostly']:.0%}" if kw.get("mostly", 1) < 1 else "")
    if "column_set" in kw:
        return "columns include " + ", ".join(kw["column_set"])
    if "type_" in kw:
        return f"type {kw['type_']}"
    return ", ".join(f"{k}={_short(json.dumps(v, default=str), 60)}" for k, v in kw.items()) or "pass"


def _short(s: str, n: int) -> str:
    s = str(s).replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"
