"""Sequence classification, single- or multi-label: the task every `classification` version is trained as.

`AutoModelForSequenceClassification` with a head sized to the version's labels (the label <-> id mapping is
saved in the model config, so `transformers.pipeline("text-classification")` names labels); optional class
weights in the loss; validation by macro-F1 each epoch; scored with scikit-learn (accuracy, macro / weighted F1,
per class, confusion matrix) from the logits; per-row predictions carry each label's probability.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import UserError
from train.config import Config
from train.data import PublishedVersion
from train.runtime import Runtime
from train.tasks.base import CardSection, Task
from train.tasks.classification.labels import LabelCodec, class_weights, label_set
from train.tasks.classification.metrics import (
    multi_label_metrics,
    plot_confusion_matrix,
    single_label_metrics,
)

_STRINGS = pa.schema([("id", pa.string()), ("text", pa.string()), ("label", pa.string())])


class ClassificationTask(Task):
    name = "classification"
    kinds = {"classification": ("text", "label")}
    usable_rows_are = "labelled rows"
    best_metric = "macro_f1"
    greater_is_better = True
    headline = {"accuracy": "accuracy", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1"}

    def __init__(self, cfg: Config, codec: LabelCodec, *, pad_to_max_length: bool = False):
        super().__init__(cfg)
        self.codec = codec
        # Fixed-length padding exists for the benchmark's plain-Trainer baseline; runs pad dynamically.
        self.pad_to_max_length = pad_to_max_length

    @property
    def labels(self) -> list[str]:
        return self.codec.labels

    # -- rows and set-up ----------------------------------------------------------------------------------------
    @classmethod
    def usable_rows(cls, table: pa.Table, file: Path) -> tuple[pa.Table, int]:
        try:
            table = table.cast(_STRINGS)
        except (pa.ArrowException, ValueError) as exc:
            raise UserError(f"{file}: id/text/label are not strings: {exc}".replace("\n", " ")) from None
        # a row the annotators left without a label is published, but neither trained nor scored on
        has_label = pc.fill_null(pc.not_equal(pc.utf8_length(pc.utf8_trim_whitespace(table["label"])), 0), False)
        kept = table.filter(has_label)
        return kept, table.num_rows - kept.num_rows

    @classmethod
    def for_training(cls, cfg: Config, version: PublishedVersion, rows: dict[str, pa.Table]) -> ClassificationTask:
        labels = label_set(version, rows, cfg)
        multi = cfg.problem_type == "multi_label"
        if not multi and len(labels) < 2:
            raise UserError(f"{version.path}: need at least 2 labels for classification, found {labels}")
        return cls(cfg, LabelCodec(labels, multi, cfg.label_separator, cfg.multi_label_threshold))

    @classmethod
    def for_scoring(cls, cfg: Config, run_dir: Path, record: dict) -> ClassificationTask:
        from transformers import AutoConfig  # noqa: PLC0415

        config = AutoConfig.from_pretrained(str(run_dir))  # the labels the model was trained on, in its order
        labels = [config.id2label[i] for i in range(config.num_labels)]
        multi = config.problem_type == "multi_label_classification"
        return cls(cfg, LabelCodec(labels, multi, cfg.label_separator, cfg.multi_label_threshold))

    # -- model and tokens ---------------------------------------------------------------------------------------
    def build_model(self, model_path: str):
        import torch  # noqa: PLC0415
        from transformers import AutoModelForSequenceClassification  # noqa: PLC0415

        try:
            return AutoModelForSequenceClassification.from_pretrained(
                model_path,
                num_labels=len(self.labels),
                id2label=dict(enumerate(self.labels)),
                label2id={label: i for i, label in enumerate(self.labels)},
                problem_type="multi_label_classification" if self.codec.multi else "single_label_classification",
                dtype=torch.float32,  # fp32 master weights even when the checkpoint is stored in half precision
            )
        except OSError as exc:
            raise UserError(f"cannot load base model {model_path!r}: {exc}".replace("\n", " ")) from None

    def load_trained_model(self, run_dir: Path):
        from transformers import AutoModelForSequenceClassification  # noqa: PLC0415

        return AutoModelForSequenceClassification.from_pretrained(str(run_dir))

    def encoding_key(self) -> list:
        c = self.codec
        return [self.cfg.max_length, self.pad_to_max_length, c.labels, c.multi, c.separator]

    def encode_inputs(self, tokenizer, batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(
            batch["text"],
            truncation=True,
            max_length=self.cfg.max_length,
            padding="max_length" if self.pad_to_max_length else False,
        )

    def encode_examples(self, tokenizer, batch: dict[str, list]) -> dict[str, list]:
        enc = self.encode_inputs(tokenizer, batch)
        enc["labels"] = self.codec.encode(batch["label"])
        return enc

    # -- training -----------------------------------------------------------------------------------------------
    def compute_metrics(self, pred) -> dict:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        m = self.codec.score(pred.label_ids, self.codec.predict(logits))
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "weighted_f1": m["weighted_f1"]}

    def trainer(self, train_rows: pa.Table, **kwargs):
        from train.trainer import WeightedLossTrainer  # noqa: PLC0415

        return WeightedLossTrainer(class_weights=class_weights(self.cfg, self.codec, train_rows), **kwargs)

    # -- scoring ------------------------------------------------------------------------------------------------
    def scoring_notes(self, rows: pa.Table, version: PublishedVersion) -> dict:
        # rows whose label the model does not know can never be right; single-label ones are scored (as misses)
        # and reported, a multi-label row cannot even be encoded against the model's labels
        unknown = sorted(self.codec.labels_in(rows["label"].to_pylist()) - set(self.labels))
        if unknown and self.codec.multi:
            raise UserError(f"{version.path}: labels unknown to the model: {', '.join(unknown)}")
        return {"labels_unknown_to_model": unknown}

    def predict(self, model, tokenizer, encoded, rt: Runtime, work_dir: Path) -> np.ndarray:
        from train.trainer import predict_in_order  # noqa: PLC0415

        return predict_in_order(model, tokenizer, self.collator(tokenizer, rt), self.cfg, rt, encoded, work_dir)

    def score(self, rows: pa.Table, predictions: np.ndarray) -> dict:
        values = rows["label"].to_pylist()
        predicted = self.codec.predict(predictions)
        if self.codec.multi:
            return multi_label_metrics(np.asarray(self.codec.encode(values)), predicted, self.labels)
        # from the label strings: a label the model does not know stays in the confusion matrix as its own row
        return single_label_metrics(values, [self.labels[i] for i in predicted.tolist()], self.labels)

    def predictions_table(self, rows: pa.Table, predictions: np.ndarray) -> pa.Table:
        """id, label, predicted, and the probability of each label (`p_<label>`)."""
        c = self.codec
        probs = c.probabilities(predictions)
        if c.multi:
            predicted = [c.separator.join(lab for lab, on in zip(c.labels, row) if on) for row in c.predict(predictions).tolist()]
        else:
            predicted = [c.labels[i] for i in c.predict(predictions).tolist()]
        cols = {"id": rows["id"], "label": rows["label"], "predicted": pa.array(predicted, pa.string())}
        for i, label in enumerate(c.labels):
            cols[f"p_{label}"] = pa.array(probs[:, i], pa.float32())
        return pa.table(cols)

    def write_figures(self, metrics: dict, folder: Path, title: str) -> None:
        plot_confusion_matrix(metrics, folder / "confusion_matrix.png", title)

    # -- presenting ---------------------------------------------------------------------------------------------
    def facts(self) -> dict:
        return {"labels": self.labels, "problem_type": self.cfg.problem_type}

    def model_card(self, record: dict, metrics: dict) -> CardSection:
        test, val = metrics["test"], metrics["validation"]
        lines = [
            "All figures are fractions (0–1), as in `metrics.json` and `sftpipe` output.",
            "",
            "| split | rows | accuracy | macro-F1 | weighted-F1 |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| test | {test['n']} | {_frac(test['accuracy'])} | {_frac(test['macro_f1'])} | {_frac(test['weighted_f1'])} |",
            f"| validation | {val['n']} | {_frac(val['accuracy'])} | {_frac(val['macro_f1'])} | {_frac(val['weighted_f1'])} |",
            "",
            "Per class on the test split:",
            "",
            "| label | precision | recall | F1 | support |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for label, m in test["per_class"].items():
            lines.append(f"| {label} | {_frac(m['precision'])} | {_frac(m['recall'])} | {_frac(m['f1'])} | {m['support']} |")
        lines += [
            "",
            "![confusion matrix on the test split](confusion_matrix.png)",
            "",
            "Computed with scikit-learn; full figures in `metrics.json`, per-row test predictions (with each label's "
            "probability) in `test_predictions.parquet`, the per-step training log in `trainer_log.json`.",
        ]
        return CardSection(
            pipeline_tag="text-classification",
            summary=f"A {record['problem_type'].replace('_', '-')} text classifier fine-tuned by `sftpipe train` "
            "with the Hugging Face `Trainer`.",
            facts=[("labels", ", ".join(record["labels"]))],
            metrics=lines,
            usage=[
                "```python",
                "from transformers import pipeline",
                'classify = pipeline("text-classification", model="<this folder>")',
                'classify("your text here")',
                "```",
            ],
        )

    @classmethod
    def detail_table(cls, metrics: dict) -> tuple[list[str], list[list[str]]] | None:
        rows = [[label, f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", str(c["support"])]
                for label, c in metrics["per_class"].items()]
        return ["label", "precision", "recall", "F1", "support"], rows


def _frac(x) -> str:
    return "–" if x is None else f"{x:.4f}"
