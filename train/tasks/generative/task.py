"""What the generative tasks (causal_lm, seq2seq) share: rows with an answer, validation by loss, scoring by
generating answers for the split and comparing them with the references, the per-row predictions, the
headline figures, the metrics part of the model card and its sample generations.

A subclass supplies the model (build, load, tokenizer), the encoding (`encode_examples`: input_ids with the
labels -100 outside the answer; `encode_inputs`: what the model is shown to answer), whether the model is
decoder-only (left padding when generating), the ids that end an answer, and its card.
"""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from train.runtime import Runtime
from train.tasks.base import Task
from train.tasks.generative import metrics, records
from train.tasks.generative.generate import generate_texts

IGNORE = -100  # the label of a token the loss does not cover (PyTorch's cross-entropy ignore_index)

# metric key -> how it is named on screen, in `runs list` and in the card: the generative headline
HEADLINE = {"rougeL": "ROUGE-L", "bleu": "BLEU", "chrf": "chrF", "exact_match": "EM", "token_f1": "token-F1"}
_ALL = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", **HEADLINE}
CARD_SAMPLES = 5  # test rows the model card shows with their generated answers
CARD_SAMPLE_CHARS = 800  # each text of a sample cut there (the parquet file has them whole)


class GenerativeTask(Task):
    usable_rows_are = "rows with an answer"
    best_metric = "loss"
    greater_is_better = False
    headline = HEADLINE
    compute_metrics = None  # validation by loss: generating every epoch is too slow
    decoder_only: bool  # left padding when generating, the answer is what follows the prompt

    @classmethod
    def usable_rows(cls, table: pa.Table, file: Path) -> tuple[pa.Table, int]:
        return records.usable_rows(table, file)

    def training_overrides(self) -> dict:
        # the loss only: Trainer.evaluate would otherwise keep every validation logit (rows x tokens x vocabulary)
        return {"prediction_loss_only": True, "include_num_input_tokens_seen": "non_padding"}

    def encoding_notes(self, rows: int, examples) -> dict:
        cut = sum(examples["answer_cut"]) if "answer_cut" in examples.column_names else 0
        return {"answers_cut_by_max_length": int(cut), "left_out_no_answer_token_within_max_length": rows - len(examples)}

    # -- scoring ------------------------------------------------------------------------------------------------
    def eos_token_ids(self, tokenizer) -> list[int] | None:
        """The tokens that end an answer when generating (None: the model's generation config decides)."""
        return None

    def predict(self, model, tokenizer, encoded, rt: Runtime, work_dir: Path) -> list[str]:
        return generate_texts(model, tokenizer, encoded, self.cfg, rt, decoder_only=self.decoder_only,
                              eos_token_ids=self.eos_token_ids(tokenizer))

    def score(self, rows: pa.Table, predictions: list[str]) -> dict:
        return metrics.corpus(predictions, records.references(rows))

    def predictions_table(self, rows: pa.Table, predictions: list[str]) -> pa.Table:
        """id, prompt, reference, prediction and the row's scores."""
        refs = records.references(rows)
        per_row = metrics.per_row(predictions, refs)
        cols = {"id": rows["id"], "prompt": pa.array(records.prompt_texts(rows), pa.string()),
                "reference": pa.array(refs, pa.string()), "prediction": pa.array(predictions, pa.string())}
        for key, values in per_row.items():
            cols[key] = pa.array(values, pa.bool_() if key == "exact_match" else pa.float32())
        return pa.table(cols)

    # -- presenting ---------------------------------------------------------------------------------------------
    def metrics_lines(self, metrics_json: dict) -> list[str]:
        """The model card's metrics table (test and validation) and how the figures were computed."""
        test, val = metrics_json["test"], metrics_json["validation"]
        head = " | ".join(_ALL.values())
        lines = [
            "Answers generated greedily" if self.cfg.num_beams == 1 else f"Answers generated with {self.cfg.num_beams} beams",
            f"(at most {self.cfg.max_new_tokens} new tokens) for every row of the split, compared with the reference "
            "answer. All figures are fractions (0–1), as in `metrics.json` and `sftpipe` output.",
            "",
            f"| split | rows | {head} |",
            "| --- | ---: |" + " ---: |" * len(_ALL),
        ]
        for name, m in (("test", test), ("validation", val)):
            lines.append(f"| {name} | {m['n']} | " + " | ".join(_frac(m.get(k)) for k in _ALL) + " |")
        lines += [
            "",
            "ROUGE: `rouge-score` (F-measure, Porter stemmer; English letters and digits only). BLEU and chrF: "
            "`sacrebleu` corpus scores / 100. EM and token-F1: the SQuAD v1.1 definitions (lower case, no "
            "punctuation or articles). Per-row answers and scores: `test_predictions.parquet`; the training and "
            "validation loss per step: `trainer_log.json`.",
        ]
        return lines

    def card_samples(self, predictions: pa.Table) -> list[str]:
        """The first CARD_SAMPLES test rows (the split's own order: a hash of the id, so a fair draw) with
        prompt, reference and generated answer in full up to CARD_SAMPLE_CHARS characters each, and their
        scores: what the figures above mean in words."""
        rows = predictions.slice(0, CARD_SAMPLES).to_pylist()
        if not rows:
            return []
        lines = ["## Sample generations", "",
                 f"The first {len(rows)} rows of the test split (of {predictions.num_rows}; all of them, with "
                 "their scores, are in `test_predictions.parquet`), as the model answered them when it was "
                 "scored.", ""]
        for i, row in enumerate(rows, start=1):
            scores = ", ".join(f"{label} {row[key]:.2f}" for key, label in (("rougeL", "ROUGE-L"),
                                                                           ("token_f1", "token-F1"))
                               if row.get(key) is not None)
            lines += [f"### {i}. `{row['id']}`" + (f" — {scores}" if scores else ""), ""]
            for name, key in (("Prompt", "prompt"), ("Reference", "reference"), ("Generated", "prediction")):
                lines += [f"**{name}**", "", *_text_block(row[key]), ""]
        return lines[:-1]

    @classmethod
    def detail_table(cls, metrics_json: dict) -> tuple[list[str], list[list[str]]] | None:
        return ["metric", "value"], [[label, _frac(metrics_json.get(key))] for key, label in _ALL.items()]


def _text_block(text: str | None) -> list[str]:
    """`text` as a fenced block, shown as written (Markdown in an answer is not rendered): the fence is longer
    than any run of backticks inside (CommonMark), so an answer's own code fences cannot close it."""
    if text is None:
        return ["*(none)*"]
    if not text.strip():
        return ["*(empty)*"]
    if len(text) > CARD_SAMPLE_CHARS:
        text = text[:CARD_SAMPLE_CHARS] + f" … ({len(text) - CARD_SAMPLE_CHARS:,} more characters)"
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return [fence + "text", text, fence]


def _frac(x) -> str:
    return "–" if x is None else f"{x:.4f}"
