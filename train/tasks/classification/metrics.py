"""Classification metrics computed with scikit-learn (nothing hand-rolled), and the confusion-matrix plot.

All figures are fractions in 0-1 (the one convention of metrics.json, the CLI and the model card)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
)


def single_label_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    """accuracy, macro/weighted F1, per-class precision/recall/F1/support and the confusion matrix.

    `labels` fixes the class order (the model's labels); a label seen only in y_true/y_pred is appended.
    """
    order = list(labels) + sorted({*y_true, *y_pred} - set(labels))
    report = classification_report(y_true, y_pred, labels=order, output_dict=True, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=order)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=order, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=order, average="weighted", zero_division=0)),
        "per_class": _per_class(report, order),
        "confusion_matrix": {"labels": order, "matrix": cm.tolist(), "rows": "true", "columns": "predicted"},
    }


def multi_label_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """The multi-label counterpart: indicator matrices (rows x labels) in, subset accuracy, macro/weighted/
    micro F1, per-label scores and one 2x2 confusion matrix per label out."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    report = classification_report(
        y_true, y_pred, labels=list(range(len(labels))), target_names=labels, output_dict=True, zero_division=0
    )
    mcm = multilabel_confusion_matrix(y_true, y_pred)
    return {
        "n": int(y_true.shape[0]),
        "accuracy": float(accuracy_score(y_true, y_pred)),  # subset accuracy: every label right
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "per_class": _per_class(report, labels),
        "confusion_matrix": {
            "labels": labels,
            "per_label": {label: mcm[i].tolist() for i, label in enumerate(labels)},
            "layout": "[[tn, fp], [fn, tp]] per label",
        },
    }


def plot_confusion_matrix(metrics: dict, path: Path, title: str) -> None:
    """Write the confusion matrix (single-label) or the per-label 2x2 matrices (multi-label) as a PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from sklearn.metrics import ConfusionMatrixDisplay  # noqa: PLC0415

    with matplotlib.rc_context({"text.parse_math": False}):  # labels are data: `$\\foo$` is not a formula
        _plot(plt, ConfusionMatrixDisplay, metrics["confusion_matrix"], path, title)


def _plot(plt, ConfusionMatrixDisplay, cm: dict, path: Path, title: str) -> None:
    if "matrix" in cm:
        labels = cm["labels"]
        size = max(4.0, 0.6 * len(labels) + 2.5)
        fig, ax = plt.subplots(figsize=(size, size))
        ConfusionMatrixDisplay(np.array(cm["matrix"]), display_labels=labels).plot(
            ax=ax, cmap="Blues", colorbar=False, values_format="d", xticks_rotation=45 if len(labels) > 4 else 0
        )
    else:
        labels = cm["labels"]
        cols = min(4, len(labels))
        rows = (len(labels) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
        for ax in axes.flat[len(labels):]:
            ax.axis("off")
        for ax, label in zip(axes.flat, labels):
            ConfusionMatrixDisplay(np.array(cm["per_label"][label]), display_labels=["no", "yes"]).plot(
                ax=ax, cmap="Blues", colorbar=False, values_format="d"
            )
            ax.set_title(label)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _per_class(report: dict, labels: list[str]) -> dict:
    """Precision / recall / F1 / support per label from scikit-learn's classification_report dict."""
    return {
        label: {
            "precision": float(report[label]["precision"]),
            "recall": float(report[label]["recall"]),
            "f1": float(report[label]["f1-score"]),
            "support": int(report[label]["support"]),
        }
        for label in labels
    }
