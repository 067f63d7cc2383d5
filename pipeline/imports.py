"""The project's own import graph, read statically (AST) from the source files.

`imports_of(module)` lists the project modules a module imports — at its top and inside functions alike,
since a lazy import is a dependency too; `closure(module)` follows them. Importing a submodule is counted
as depending on that submodule only, not on its package's `__init__` (which may merely re-export), so that
a stage's closure is the code it uses. Used for code fingerprints (`pipeline.fingerprint`) and by the
layout tests (no cycles; the framework imports no stage).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "stages", "schemas", "train")  # the project's top-level packages


def module_file(module: str) -> Path | None:
    """The source file of a project module (a package's `__init__.py`), or None if there is none."""
    base = ROOT.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def all_modules() -> list[str]:
    """Every module of the project's packages."""
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _is_project(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


@functools.lru_cache(maxsize=None)
def imports_of(module: str) -> tuple[str, ...]:
    """The project modules `module` imports (sorted, without itself)."""
    path = module_file(module)
    if path is None:
        return ()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if module_file(sub) is not None else source)
    return tuple(sorted(m for m in found if _is_project(m) and m != module and module_file(m) is not None))


@functools.lru_cache(maxsize=None)
def closure(module: str) -> tuple[str, ...]:
    """`module` and every project module it imports, directly or not (sorted)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(imports_of(m))
    return tuple(sorted(seen))
