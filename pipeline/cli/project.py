"""The composition root: the one module that puts the registered stages, the quality gate and the
training section together into the project the CLI runs, and installs it for
`pipeline.config.load_config`. Nothing in the framework (`pipeline/` outside `cli/`) imports a stage or
`train`; this module is where they meet.
"""
import stages
from pipeline.config import Section
from pipeline.project import Project
from stages.evaluate import QualityGate
from train.config import Config as TrainConfig

PROJECT = Project(
    stages=stages.STAGES,
    gate=QualityGate(),
    sections=(Section("train", TrainConfig, data=False),),  # training settings never mint a data version
).install()
