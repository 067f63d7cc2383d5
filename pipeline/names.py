"""Names that become path components: dataset names, version names and tags.

One rule, owned here, checked by the config (a dataset's `dataset:`), by the store (every method that
takes a dataset, version or tag, so every command that names one is covered: `versions show ../../x v1`
is refused before any path is built) and by `--tag`. A name is a single path component made of letters,
digits, `.`, `_` and `-`, starting with a letter or digit (so never `.`, `..` or a hidden file), and short
enough that the folders built from it stay well inside a file system's 255-byte name limit.
"""
from __future__ import annotations

import re

from pipeline.errors import UserError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MAX_NAME_LENGTH = 100
_NAME = re.compile(NAME_PATTERN)


def name_problem(value: object) -> str | None:
    """Why `value` is not a valid name, or None when it is."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_NAME_LENGTH:
        return f"is {len(value)} characters long; at most {MAX_NAME_LENGTH}"
    if not _NAME.match(value):
        return "may hold only letters, digits, '.', '_' and '-', and must start with a letter or digit"
    return None


def check_name(what: str, value: object) -> str:
    """`value` itself, or a UserError saying which name is wrong and why (`what`: "dataset name", ...)."""
    problem = name_problem(value)
    if problem is not None:
        shown = value if not isinstance(value, str) or len(value) <= 60 else value[:57] + "..."
        raise UserError(f"{what} {shown!r} {problem}")
    return value  # type: ignore[return-value]
