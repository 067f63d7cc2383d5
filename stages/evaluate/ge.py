"""Great Expectations primitives the config and the suites share: build an expectation from its name."""
from __future__ import annotations

from typing import Any

import pyarrow as pa


def build_expectation(expectation_type: str, kwargs: dict[str, Any], meta: dict[str, Any]):
    """An expectation object from its type name and kwargs, as GE's own configuration builds it (raises
    when GE cannot build it: the config reports that as an error naming the expectation)."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return ExpectationConfiguration(type=expectation_type, kwargs=dict(kwargs), meta=dict(meta)).to_domain_obj()


def pandas_dtype(t: pa.DataType) -> str:
    """The dtype name pandas gives an Arrow column of type `t` in this environment ("str" or "object")."""
    return str(pa.array([], t).to_pandas().dtype)
