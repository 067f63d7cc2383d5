"""The layout's rules, read from the source tree (AST, `pipeline.imports`): no import cycles between modules
or packages; the framework imports no stage, no `train` and no CLI; stages never import each other; no
source file over ~500 lines without its docstring saying why."""
from __future__ import annotations

import ast

import pytest

from pipeline.imports import ROOT, all_modules, imports_of, module_file

MODULES = all_modules()


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (as a path a → … → a), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def package_of(module: str) -> str:
    """The unit a package-level cycle is about: the framework (`pipeline` outside its subpackages), each of
    its subpackages (cli, labelstudio), each stage (module or package), the stage registry (`stages`),
    `schemas`, `train`."""
    parts = module.split(".")
    if parts[0] == "pipeline" and len(parts) > 1 and module_file("pipeline." + parts[1]).name == "__init__.py":
        return "pipeline." + parts[1]
    if parts[0] == "stages" and len(parts) > 1:
        return "stages." + parts[1]
    return parts[0]


def is_framework(module: str) -> bool:
    return module.split(".")[0] == "pipeline" and package_of(module) != "pipeline.cli"


def test_the_import_graph_is_read():
    """The rules below are only as good as the graph: it knows what the executor and a stage import."""
    assert "pipeline.executor" in MODULES and "stages.annotate.stage" in MODULES
    assert "pipeline.project" in imports_of("pipeline.executor")
    assert {"pipeline.stage", "stages.annotate.agreement"} <= set(imports_of("stages.annotate.stage"))
    assert "train.cli" in imports_of("pipeline.cli.app")  # lazy (in-function) imports count too
    assert "pipeline.labelstudio" in imports_of("stages.annotate.stage")


def test_no_import_cycle_between_modules():
    graph = {m: set(imports_of(m)) for m in MODULES}
    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for m in MODULES:
        graph.setdefault(package_of(m), set()).update(package_of(i) for i in imports_of(m) if package_of(i) != package_of(m))
    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def test_the_framework_imports_no_stage_no_train_and_no_cli():
    offending = [(m, i) for m in MODULES if is_framework(m) for i in imports_of(m)
                 if i.split(".")[0] in ("stages", "train") or package_of(i) == "pipeline.cli"]
    assert offending == []


def test_only_the_composition_root_puts_stages_and_train_together():
    both = [m for m in MODULES if m.split(".")[0] != "train"
            and {i.split(".")[0] for i in imports_of(m)} >= {"stages", "train"}]
    assert both == ["pipeline.cli.project"]


def test_stages_never_import_each_other():
    offending = [(m, i) for m in MODULES if m.startswith("stages.") for i in imports_of(m)
                 if i.startswith("stages") and package_of(i) != package_of(m)]
    assert offending == []


@pytest.mark.parametrize("package", ["pipeline", "stages", "schemas", "train"])
def test_source_files_are_small_or_say_why(package):
    """~500 lines at most, unless the module's docstring says why."""
    too_long = []
    for path in sorted((ROOT / package).rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if lines > 500 and "lines" not in docstring:
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert too_long == []


# -- registration: a stage's declarations are all the plan needs ------------------------------------------


def test_the_plan_derives_boundaries_from_the_kind_and_what_stages_add(tmp_path):
    import pyarrow as pa
    from pydantic import BaseModel

    import schemas
    import stages
    from pipeline.project import Project
    from pipeline.stage import Stage
    from stages.evaluate import QualityGate

    from .conftest import sms_config, write_config

    base = {k: v for k, v in sms_config().items() if k != "train"}  # a project without a train section
    project = Project(stages=stages.STAGES, gate=QualityGate())
    config = project.load_config(write_config(tmp_path, base))
    plan = project.plan(config)
    assert plan.names == ["collect", "clean", "label_noise", "dedupe", "split"]
    assert [(s, why) for s, why in plan.skipped] == [(stages.DecontaminateStage, "no decontaminate section"),
                                                     (stages.AnnotateStage, "no annotate section")]
    assert plan.steps[0].input_schema is None and plan.published_schema.equals(schemas.SPLIT)
    assert plan.steps[3].output_schema.equals(schemas.DEDUPED)

    class Scores(BaseModel):
        model_config = {"extra": "forbid"}

    class ScoreClusters(Stage):  # a new stage: its module, its declarations, one line in the list
        name = "score_clusters"
        Config = Scores
        needs = ("cluster_id",)
        adds = (pa.field("cluster_score", pa.float64()),)

    dedupe = stages.STAGES.index(stages.DedupeStage) + 1
    after = Project(stages=(*stages.STAGES[:dedupe], ScoreClusters, *stages.STAGES[dedupe:]), gate=QualityGate())
    config = after.load_config(write_config(tmp_path, {**base, "score_clusters": {}}))
    plan = after.plan(config)
    assert plan.names == ["collect", "clean", "label_noise", "dedupe", "score_clusters", "split"]
    assert plan.published_schema.names[-3:] == ["cluster_id", "cluster_score", "split"]
    before = Project(stages=(stages.STAGES[0], ScoreClusters, *stages.STAGES[1:]), gate=QualityGate())
    with pytest.raises(Exception, match="stage score_clusters needs column.s. cluster_id, which no stage before it adds"):
        before.plan(before.load_config(write_config(tmp_path, base)))
