"""A reference implementation of the n-gram match rules, written independently of
pipeline/decontamination.py: Python strings, the `regex` module, dicts of token tuples. Slow (~100k rows
a minute) but obviously right; the benchmark scores the engine against it and tests/test_decontamination.py
compares the two on real text.

The rules (pipeline/decontamination.py's docstring says why):
- normalize: NFKC, casefold, delete Unicode punctuation and symbols (P*, S*), put spaces around every
  character of a script written without spaces, split on whitespace;
- an item's regime is the unspaced script class holding more than half of its letters and marks (after
  punctuation removal), else `word`; its regime gives n and min_n;
- item of ≥ n tokens: a row matches if it has one of the item's n-grams, looked for in the rows holding
  a character of the regime's class (every row for `word`);
- item of min_n..n−1 tokens: the row contains the whole item as a contiguous token run (same rows);
- item of 1..min_n−1 tokens: the row's whole token list equals the item's;
- the reported match of a row: the lowest item index, then the earliest token position; its text is the
  matched tokens joined by spaces, without the spaces between two unspaced-script characters.
"""
from __future__ import annotations

import unicodedata

import regex

SCRIPT_CLASSES = {
    "cjk": r"\p{Han}\p{Hiragana}\p{Katakana}\p{Bopomofo}",
    "southeast_asian": r"\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}",
}
PUNCTUATION = regex.compile(r"[\p{P}\p{S}]")
UNSPACED = regex.compile("([" + "".join(SCRIPT_CLASSES.values()) + "])")
CLASS_CHAR = {name: regex.compile(f"[{chars}]") for name, chars in SCRIPT_CLASSES.items()}
LETTER_OR_MARK = regex.compile(r"[\p{L}\p{M}]")
JOINED = regex.compile("(?<=[" + "".join(SCRIPT_CLASSES.values()) + "]) (?=[" + "".join(SCRIPT_CLASSES.values()) + "])")
DEFAULT_LENGTHS = {"word": (13, 8), "cjk": (23, 14), "southeast_asian": (54, 33)}


def analyse(text: str | None) -> tuple[list[str], str, set[str]]:
    """(tokens, regime, script classes present) of a text."""
    text = PUNCTUATION.sub("", unicodedata.normalize("NFKC", text or "").casefold())
    counts = {name: len(pattern.findall(text)) for name, pattern in CLASS_CHAR.items()}
    letters = len(LETTER_OR_MARK.findall(text))
    top = max(counts, key=lambda k: counts[k])
    regime = top if counts[top] * 2 > letters else "word"
    return UNSPACED.sub(r" \1 ", text).split(), regime, {"word"} | {k for k, c in counts.items() if c}


def display(tokens: list[str] | tuple[str, ...]) -> str:
    return JOINED.sub("", " ".join(tokens))


class Reference:
    def __init__(self, items: list[str | None], lengths: dict[str, tuple[int, int]] = DEFAULT_LENGTHS):
        self.lengths = lengths
        self.ngrams: dict[tuple[str, ...], int] = {}  # n-gram → lowest item
        self.prefixes: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]] = {}  # first min_n tokens → items
        self.wholes: dict[tuple[str, ...], int] = {}
        self.sizes: dict[str, set[int]] = {"ngrams": set(), "prefixes": set()}
        self.regime_of_size: dict[tuple[str, int], set[str]] = {}
        for index, text in enumerate(items):
            tokens, regime, _ = analyse(text)
            n, low = lengths[regime]
            if len(tokens) >= n:
                for k in range(len(tokens) - n + 1):
                    self.ngrams.setdefault(tuple(tokens[k:k + n]), index)
                self._size("ngrams", regime, n)
            elif len(tokens) >= low:
                self.prefixes.setdefault(tuple(tokens[:low]), []).append((index, tuple(tokens)))
                self._size("prefixes", regime, low)
            elif tokens:
                self.wholes.setdefault(tuple(tokens), index)

    def _size(self, table: str, regime: str, size: int) -> None:
        self.sizes[table].add(size)
        self.regime_of_size.setdefault((table, size), set()).add(regime)

    def match(self, text: str | None) -> tuple[int, str, str] | None:
        """(item, how, matched text) of a row, or None."""
        tokens, _, classes = analyse(text)
        found: list[tuple[int, int, str, tuple[str, ...]]] = []  # (item, position, how, tokens)
        for size in self.sizes["ngrams"]:
            if not classes & self.regime_of_size[("ngrams", size)]:
                continue
            for k in range(len(tokens) - size + 1):
                window = tuple(tokens[k:k + size])
                if window in self.ngrams:
                    found.append((self.ngrams[window], k, "ngrams", window))
        for size in self.sizes["prefixes"]:
            if not classes & self.regime_of_size[("prefixes", size)]:
                continue
            for k in range(len(tokens) - size + 1):
                for item, whole in self.prefixes.get(tuple(tokens[k:k + size]), ()):
                    if tuple(tokens[k:k + len(whole)]) == whole:
                        found.append((item, k, "whole_item_inside", whole))
        if tuple(tokens) in self.wholes:
            found.append((self.wholes[tuple(tokens)], 0, "whole_row_equal", tuple(tokens)))
        if not found:
            return None
        item, _, how, window = min(found, key=lambda f: (f[0], f[1]))
        return item, how, display(window)
