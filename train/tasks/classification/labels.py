"""Labels of a classification version: the label set, label strings <-> model targets, and class weights."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.errors import UserError
from train.config import Config
from train.data import PublishedVersion
from train.tasks.classification.metrics import multi_label_metrics, single_label_metrics


class LabelCodec:
    """label strings <-> model targets, for single-label (class index) and multi-label (multi-hot) tasks."""

    def __init__(self, labels: list[str], multi: bool, separator: str = "|", threshold: float = 0.5):
        self.labels = list(labels)
        self.multi = multi
        self.separator = separator
        self.threshold = threshold
        self.index = {label: i for i, label in enumerate(self.labels)}

    def split_label(self, value: str) -> list[str]:
        if not self.multi:
            return [value]
        return [p.strip() for p in value.split(self.separator) if p.strip()]

    def encode(self, values: list[str]):
        if not self.multi:
            return [self.index[v] for v in values]
        out = []
        for v in values:
            row = [0.0] * len(self.labels)
            for part in self.split_label(v):
                row[self.index[part]] = 1.0
            out.append(row)
        return out

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """Class indices (single-label) or a 0/1 indicator matrix (multi-label)."""
        if not self.multi:
            return np.asarray(logits).argmax(-1)
        return (self.probabilities(logits) >= self.threshold).astype(int)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Softmax over labels (single-label) or each label's sigmoid (multi-label)."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.multi:
            return 1.0 / (1.0 + np.exp(-logits))
        z = np.exp(logits - logits.max(-1, keepdims=True))
        return z / z.sum(-1, keepdims=True)

    def score(self, label_ids: np.ndarray, predictions: np.ndarray) -> dict:
        """Full scikit-learn metrics from targets and predictions in model space."""
        if not self.multi:
            y_true = [self.labels[i] for i in np.asarray(label_ids).tolist()]
            y_pred = [self.labels[i] for i in np.asarray(predictions).tolist()]
            return single_label_metrics(y_true, y_pred, self.labels)
        return multi_label_metrics(np.asarray(label_ids).round().astype(int), predictions, self.labels)

    def labels_in(self, values: list[str]) -> set[str]:
        """Every label named in `values` (each of a multi-label row's parts)."""
        seen: set[str] = set()
        for value in values:
            seen.update(self.split_label(value))
        return seen


def label_set(version: PublishedVersion, rows: dict[str, pa.Table], cfg: Config) -> list[str]:
    """The labels a model trained on `version` predicts: the manifest's declared set (every row's labels must be
    in it), else the sorted labels seen in the rows."""
    multi = cfg.problem_type == "multi_label"
    codec = LabelCodec([], multi, cfg.label_separator)
    seen: set[str] = set()
    for table in rows.values():
        seen |= codec.labels_in(table["label"].to_pylist())
    declared = version.labels
    if declared:
        unknown = sorted(seen - set(declared))
        if unknown:
            raise UserError(
                f"{version.path}: rows carry labels outside the manifest's label set: {', '.join(unknown[:10])}"
                + (" (is train.problem_type right?)" if not multi else "")
            )
        return list(declared)
    if not seen:
        raise UserError(f"{version.path}: no labelled rows in any split; nothing to train on")
    return sorted(seen)


def class_weights(cfg: Config, codec: LabelCodec, train_rows: pa.Table):
    """The loss weight of each label as a tensor in the codec's order, or None (train.class_weights unset)."""
    if cfg.class_weights is None:
        return None
    if codec.multi:
        raise UserError("train.class_weights is for single_label problems only")
    import torch  # noqa: PLC0415

    if cfg.class_weights == "balanced":
        from sklearn.utils.class_weight import compute_class_weight  # noqa: PLC0415

        y = train_rows["label"].to_pylist()
        present = [label for label in codec.labels if label in set(y)]
        w = dict(zip(present, compute_class_weight("balanced", classes=np.array(present), y=np.array(y))))
        weights = [float(w.get(label, 1.0)) for label in codec.labels]
    else:
        unknown = sorted(set(cfg.class_weights) - set(codec.labels))
        if unknown:
            raise UserError(f"train.class_weights names unknown labels: {', '.join(unknown)} (labels: {codec.labels})")
        weights = [float(cfg.class_weights.get(label, 1.0)) for label in codec.labels]
    return torch.tensor(weights, dtype=torch.float32)
