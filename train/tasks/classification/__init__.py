"""Classification fine-tuning: the task (`task`), its labels (`labels`) and its scikit-learn metrics (`metrics`)."""
from train.tasks.classification.labels import LabelCodec
from train.tasks.classification.task import ClassificationTask

__all__ = ["ClassificationTask", "LabelCodec"]
