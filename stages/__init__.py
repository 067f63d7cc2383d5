"""The stages, in the order a row goes through them: the one place a stage is registered.

Adding a stage: its own module (or package) with a `pipeline.stage.Stage` subclass that declares its name,
config section, what it adds to a row, whether it needs the whole stream or is optional, its summary and
what it contributes to a version — and one line below. The executor, the Ray executor and the config loader
take it from here; no stage imports another.
"""
from stages.annotate import AnnotateStage
from stages.clean import CleanStage
from stages.collect import CollectStage
from stages.decontaminate import DecontaminateStage
from stages.dedupe import DedupeStage
from stages.label_noise import LabelNoiseStage
from stages.split import SplitStage

STAGES = (
    CollectStage,  # sources → rows {id, source, source_file, source_line, payload, meta}
    CleanStage,  # normalized text, quality signals, rules
    DecontaminateStage,  # optional (a `decontaminate:` section): rows overlapping an evaluation set removed
    LabelNoiseStage,  # label evidence (+ label_prob, suggested_label, ...); confident label errors dropped or sent to review
    DedupeStage,  # + cluster_id; exact and near duplicates removed
    AnnotateStage,  # optional (an `annotate:` section): labels from people in Label Studio; + label_source
    SplitStage,  # + split: train / validation / test, stable per id
)
