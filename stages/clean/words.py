"""What clean counts as a word: a whitespace-separated token with a letter, a digit, a combining mark or
a pictographic symbol (an emoji) in it. A token of punctuation alone — the " , " and " . " of
pre-tokenized text (Penn Treebank, CoNLL, Universal Dependencies exports), "...", "--", "<#>" — is not a
word: counted as words they made Gopher's rules misfire (issue #16, item 5: a tokenized sentence's commas
and full stops are words of one character without a letter, so its mean word length fell under 3 and
its share of words with a letter under 0.8).

One definition for every signal that counts words (`n_words`, the Gopher word rules, `top_token_share`),
kept apart from the stage so the junk signals can use it without importing the stage.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WORD_CHAR = r"[\p{L}\p{N}\p{M}\p{So}]"  # RE2 syntax (Arrow's regex kernels)


def split_words(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Every word of the batch, in order, and the index of the text it belongs to.

    Tokens are str.split()'s (Arrow's whitespace is Python's). Trimmed first: after trailing whitespace
    pc.utf8_split_whitespace yields an empty token, and on non-ASCII text its last token sometimes kept the
    trailing space, depending on what ran before in the process (pyarrow 26; tests/test_clean.py holds it
    to the Python loops)."""
    lists = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(texts))
    flat = pc.list_flatten(lists)
    doc = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    is_word = pc.fill_null(pc.match_substring_regex(flat, WORD_CHAR), False)
    return flat.filter(is_word), doc[np.asarray(is_word.to_numpy(zero_copy_only=False), dtype=bool)]


def word_counts(texts: pa.Array) -> np.ndarray:
    return np.bincount(split_words(texts)[1], minlength=len(texts)).astype(np.float64)
