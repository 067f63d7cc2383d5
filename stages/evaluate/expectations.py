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
    tl = config.text_length
    if not generative and (tl.min is not None or tl.max is not None):
        add("text_length", E.ExpectColumnValueLengthsToBeBetween, column="text", min_value=tl.min, max_value=tl.max)
    for field, bound in config.field_length.items() if generative else ():
        column = field if field in df else f"{field}_text"
        if column in df and (bound.min is not None or bound.max is not None):
            add("field_length", E.ExpectColumnValueLengthsToBeBetween, column=column, min_value=bound.min,
                max_value=bound.max)
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
    if len(share_labels) > 1:
        for lab in share_labels:
            if config.class_share_min:
                add("class_share", E.ExpectColumnValuesToBeInSet, column="label", value_set=[lab],
                    mostly=config.class_share_min)
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
        meta = {"check": b.check, "blocking": config.blocking(b.check)}
        if b.max_value is not None:
            out.append(E.ExpectColumnMaxToBeBetween(column=b.column, max_value=b.max_value, meta=meta))
        if b.min_value is not None:
            out.append(E.ExpectColumnMinToBeBetween(column=b.column, min_value=b.min_value, meta=meta))
    for ue in config.expectations:
        if ue.on == "dataset":
            out.append(build_expectation(ue.expectation_type, ue.kwargs,
                                         {**ue.meta, "check": "user", "blocking": ue.blocking}))
    return out


def run_expectations(dataset: str, splits: dict[str, pd.DataFrame], metrics: dict[str, Any], bounds: list[Bound],
                     labels, allowed_languages, config: Config, quality: Path, schema: pa.Schema = schemas.SPLIT,
                     candidate=None) -> dict:
    """Build and run every suite; write suites, results and GE's pages into `quality`; return the failures,
    a row per expectation result, the counts and the files written."""
    import logging

    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(f"{dataset}-candidate")

    batches: list[tuple[str, pd.DataFrame, list]] = []
    for s, df in splits.items():
        df = with_views(s, df, candidate, config)
        batches.append((s, df, split_expectations(s, df, labels, allowed_languages, config, schema, candidate)))
    metrics_df = pd.DataFrame([{k: py(v) for k, v in metrics.items()}])
    batches.append(("dataset", metrics_df, dataset_expectations(bounds, config)))

    failures: list[Failure] = []
    table: list[dict[str, Any]] = []
    suites_by_scope: dict[str, Any] = {}
    results_by_scope: dict[str, Any] = {}
    page_files: dict[str, str] = {}
    counts = {"evaluated": 0, "successful": 0, "failed": 0}
    for scope, df, expectations in batches:
        name = f"{dataset}.{scope}"
        asset = source.add_dataframe_asset(name=scope)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{scope}-whole")
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for e in expectations:
            suite.add_expectation(e)
        vd = context.validation_definitions.add(gx.ValidationDefinition(data=batch_def, suite=suite, name=name))
        result = vd.run(
            batch_parameters={"dataframe": df},
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
        _sanitize(result)
        suite_json = suite.to_json_dict()
        for e in suite_json.get("expectations", []):
            e.pop("id", None)
        suites_by_scope[scope] = suite_json
        results_by_scope[scope] = result.to_json_dict()
        page = _render_ge_page(result)
        if page is not None:
            page_name = f"page-{len(page_files) + 1}.html"
            (quality / page_name).write_text(page)
            page_files[scope] = f"{QUALITY_DIR}/{page_name}"
        for r in result.results:
            cfg = r.expectation_config
            meta = dict(cfg.meta or {})
            check = meta.get("check", "user")
            blocking = bool(meta.get("blocking", True))
            observed, details = _observed(r, check)
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
            table.append(row)
            counts["evaluated"] += 1
            if r.success:
                counts["successful"] += 1
            else:
                counts["failed"] += 1
                failures.append(Failure(check=check, expectation=cfg.type, split=scope, column=row["column"],
                                        observed=observed, expected=row["expected"], blocking=blocking,
                                        details=details))
    order = {c: i for i, c in enumerate(CHECKS)}
    failures.sort(key=lambda f: (not f.blocking, order.get(f.check, len(order)), f.split))
    (quality / "suites.json").write_text(json.dumps(suites_by_scope, indent=2, default=str))
    (quality / "results.json").write_text(json.dumps(results_by_scope, indent=2, default=str))
    return {"failures": failures, "results_table": table, "counts": counts,
            "suite_files": f"{QUALITY_DIR}/suites.json", "result_files": f"{QUALITY_DIR}/results.json",
            "page_files": page_files}


def _render_ge_page(result) -> str | None:
    """GE's own HTML rendering of a validation result (Data Docs page; it loads its CSS from CDNs)."""
    try:
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    except Exception as exc:  # rendering is evidence, not the gate: keep going and say so
        return f"<html><body><p>Great Expectations could not render this result: {html.escape(str(exc))}</p></body></html>"



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


def _expected(etype: str, kw: dict[str, Any], check: str) -> str:
    kw = {k: (int(v) if isinstance(v, float) and v.is_integer() and k in ("min_value", "max_value") else v)
          for k, v in kw.items() if k not in ("batch_id", "column")}
    if check == "class_share":
        lab = kw.get("value_set", ["?"])[0]
        if etype == "expect_column_values_to_be_in_set":
            return f"share of {lab!r} >= {kw.get('mostly')}"
        return f"share of {lab!r} <= {round(1 - kw.get('mostly', 0), 6)}"
    lo, hi = kw.get("min_value"), kw.get("max_value")
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
