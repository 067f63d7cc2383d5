"""The stages, in the order a row goes through them: the one place a stage is registered.

Adding a stage: its own module (or package) with a `pipeline.stage.Stage` subclass that declares its name,
config section, what it adds to a row, whether it needs the whole stream or is optional, its summary and
what it contributes to a version — and one line below. The executor, the Ray executor and the config loader
take it from here; no stage imports another.

The stage modules are imported when `STAGES` (or a stage class, `stages.DedupeStage`) is first asked for,
not when the package is: importing one stage (`stages.dedupe`, in a worker or a benchmark) then costs only
that stage's imports, not every stage's (annotate's pandas, clean's language model, decontaminate's).
"""
from __future__ import annotations

import importlib

_REGISTRY = (  # (module, class), in plan order
    ("stages.collect", "CollectStage"),  # sources → rows {id, source, source_file, source_line, payload, meta}
    ("stages.clean", "CleanStage"),  # normalized text, quality signals, rules
    ("stages.decontaminate", "DecontaminateStage"),  # optional (a `decontaminate:` section): rows overlapping an evaluation set removed
    ("stages.label_noise", "LabelNoiseStage"),  # label evidence (+ label_prob, suggested_label, ...); confident label errors dropped or sent to review
    ("stages.dedupe", "DedupeStage"),  # + cluster_id; exact and near duplicates removed
    ("stages.annotate", "AnnotateStage"),  # optional (an `annotate:` section): labels from people in Label Studio; + label_source
    ("stages.split", "SplitStage"),  # + split: train / validation / test, stable per id
)
_MODULE_OF = {cls: module for module, cls in _REGISTRY}

__all__ = ["STAGES", *_MODULE_OF]


def __getattr__(name: str):
    if name == "STAGES":
        value = tuple(getattr(importlib.import_module(module), cls) for module, cls in _REGISTRY)
    elif name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    else:
        raise AttributeError(f"module 'stages' has no attribute {name!r}")
    globals()[name] = value
    return value
