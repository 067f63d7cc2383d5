"""Scores of generated answers against reference answers, by the libraries that define them.

    ROUGE-1 / ROUGE-2 / ROUGE-L   rouge-score (Google's re-implementation of the ROUGE-1.5.5 Perl script), F-measure,
                                  Porter stemming on; the mean over rows
    BLEU, chrF                    sacrebleu's corpus scores (13a tokenization; chrF with character 6-grams, beta 2),
                                  divided by 100 so every figure is a fraction, as elsewhere in sftpipe
    exact match, token F1         the SQuAD v1.1 evaluation script's definitions (normalization: lower case,
                                  punctuation and the articles a / an / the removed, white space collapsed); the
                                  mean over rows. Written out here because the script is not a package; it is 30
                                  lines and its behaviour is pinned by the tests against hand-worked cases.

A row may have several references (a list): ROUGE, exact match and F1 take the best over them (as the SQuAD
script and rouge-score's `score_multi` do), BLEU and chrF use them all (sacrebleu's multi-reference scores).

rouge-score's tokenizer keeps only ASCII letters and digits: on text in other scripts ROUGE is 0 and chrF is the
figure to read.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


# -- SQuAD v1.1 (https://rajpurkar.github.io/SQuAD-explorer/, evaluate-v1.1.py) ------------------------------------
def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (evaluate-v1.1.py's normalize_answer)."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def token_f1(prediction: str, ground_truth: str) -> float:
    """evaluate-v1.1.py's f1_score."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match(prediction: str, ground_truth: str) -> bool:
    """evaluate-v1.1.py's exact_match_score."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


# -- per row and per corpus -------------------------------------------------------------------------------------
def _as_lists(references: Sequence[str | Sequence[str]]) -> list[list[str]]:
    return [[r] if isinstance(r, str) else list(r) for r in references]


def per_row(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, list]:
    """Each row's scores: rouge1 / rouge2 / rougeL (F), bleu and chrf (sacrebleu's sentence scores / 100),
    exact_match (bool) and token_f1."""
    from rouge_score import rouge_scorer  # noqa: PLC0415
    from sacrebleu.metrics import BLEU, CHRF  # noqa: PLC0415

    refs = _as_lists(references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    bleu = BLEU(effective_order=True)  # a sentence is short: no zero from a missing 4-gram
    chrf = CHRF()
    rows: dict[str, list] = {key: [] for key in (*ROUGE_TYPES, "bleu", "chrf", "exact_match", "token_f1")}
    for prediction, options in zip(predictions, refs):
        rouge = scorer.score_multi(options, prediction)
        for key in ROUGE_TYPES:
            rows[key].append(rouge[key].fmeasure)
        rows["bleu"].append(bleu.sentence_score(prediction, options).score / 100)
        rows["chrf"].append(chrf.sentence_score(prediction, options).score / 100)
        rows["exact_match"].append(max(exact_match(prediction, r) for r in options))
        rows["token_f1"].append(max(token_f1(prediction, r) for r in options))
    return rows


def corpus(predictions: Sequence[str], references: Sequence[str | Sequence[str]],
           rows: dict[str, list] | None = None) -> dict:
    """The split's figures (fractions in 0-1): ROUGE, exact match and token F1 as means of the per-row scores
    (`rows`, computed when not given); BLEU and chrF as sacrebleu's corpus scores; and `n`."""
    from sacrebleu.metrics import BLEU, CHRF  # noqa: PLC0415

    refs = _as_lists(references)
    rows = rows if rows is not None else per_row(predictions, refs)
    n = len(predictions)
    # sacrebleu takes references as streams: the k-th reference of every row; a row with fewer has None there
    depth = max((len(r) for r in refs), default=1)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(depth)]
    out = {key: (sum(rows[key]) / n if n else None) for key in ROUGE_TYPES}
    out["bleu"] = BLEU().corpus_score(list(predictions), streams).score / 100 if n else None
    out["chrf"] = CHRF().corpus_score(list(predictions), streams).score / 100 if n else None
    out["exact_match"] = sum(rows["exact_match"]) / n if n else None
    out["token_f1"] = sum(rows["token_f1"]) / n if n else None
    out["n"] = n
    out["empty_predictions"] = sum(1 for p in predictions if not p.strip())
    return out
