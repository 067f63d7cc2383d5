"""Evaluation-set overlap primitives ("decontamination"): which of our rows share an n-gram with an item of
an evaluation set (this module) or are near copies of one (pipeline/decontamination_near.py). Pure numpy /
Arrow functions of their inputs, like pipeline/minhash.py, whose vectorized hashing they reuse; what to do
with a matched row is the caller's business. (Over 500 lines: normalization, the three match rules, the
index they share and the verification of every hit are one algorithm, kept in one place.)

**Normalization** (both sides alike, as GPT-3 and NeMo Curator's task decontamination): casefold,
punctuation and symbols (Unicode P* and S*) deleted, whitespace collapsed; tokens are the words left.
Beyond theirs: Unicode NFKC first (fullwidth "１２＋ＡＢ", frequent in CJK text, and ligatures read as
their plain characters).
A character of a script written without spaces — Han, Hiragana, Katakana, Bopomofo (`cjk`), Thai, Lao,
Khmer, Myanmar (`southeast_asian`) — is a token of its own (as BERT's basic tokenizer does for CJK), so a
Chinese eval item is found inside an English prompt and the reverse, whatever spaces surround it.

**Match rules.** Each eval item is read in one *regime*: the script class holding most of its letters and
marks (`word` when none of the unspaced classes does), with that regime's n-gram length `n` and minimum
`min_n` from `NgramParams`. An item of
- `n` tokens or more matches a row that contains any of its n-grams (token windows);
- `min_n` to `n − 1` tokens matches a row that contains the whole item as a contiguous token sequence;
- fewer than `min_n` tokens (but one or more) matches only a row whose whole normalized text is the item
  (a bare "yes" or a three-word sentiment phrase would otherwise flag every row that uses it).
Our rows are not assigned a regime: a row is searched for every regime's windows its characters allow
(word windows always, CJK windows when it holds a CJK character, ...).

**Hashing.** Token windows are hashed with minhash's prefix-sum polynomial hashes of byte ranges (mod 2⁶⁴,
splitmix-finalized); the index is sorted uint64 arrays with a bitmap in front (most windows of a row
leave after one bit lookup). Every candidate is then **verified on the bytes**: the row's normalized
window is compared with the item's, so a hash collision can cost time but never reports a row. For each
row the reported match is the lowest eval item index among the verified ones (then the earliest
position in the row): a function of the row's text alone, whatever the batch it comes in.

**Streaming and workers.** `scan` maps a stream of text batches to matches with rows numbered across the
stream; `NgramIndex.save` / `load` put the index in .npy files that worker processes memory-map
(`find_ngram_overlaps_saved` is the worker job).

Private helpers of pipeline/minhash.py used here: `_SubstringHasher`, `_token_starts`, `_ranges`,
`_pieces` (imported, not copied).
"""
from __future__ import annotations

import functools
import json
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import minhash
from pipeline.minhash import _SubstringHasher, _pieces, _ranges, _token_starts

# Script classes written without spaces between words; each of their characters is a token.
UNSPACED_SCRIPTS = {
    "cjk": r"\p{Han}\p{Hiragana}\p{Katakana}\p{Bopomofo}",
    "southeast_asian": r"\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}",
}
REGIMES = ("word", *UNSPACED_SCRIPTS)  # regime codes are positions in this tuple
_PUNCTUATION = r"[\p{P}\p{S}]+"
_ANY_UNSPACED = "([" + "".join(UNSPACED_SCRIPTS.values()) + "])"
_SPACE = 0x20


@dataclass(frozen=True)
class NgramParams:
    """N-gram lengths per regime (tokens: words, or characters of an unspaced script).

    Defaults: 13 words as GPT-3 / NeMo Curator (NeMo skips items under 8 words; here they are compared
    whole, see the module docstring). CJK: 23 characters = 13 words × 1.76 characters per word (People's
    Daily 1998-01, word-segmented, punctuation excluded), min 14 (= 8 words); Southeast Asian scripts:
    54 code points = 13 × 4.12 code points per Thai word (Thai National Corpus frequency list), min 33.
    benchmarks/decontaminate/README.md has the measurements behind these and what they trade.

    `hash_bits` < 64 keeps only the top bits of every window hash: a test's way to force collisions.
    """

    ngram: int = 13
    min_ngram: int = 8
    cjk_ngram: int = 23
    cjk_min_ngram: int = 14
    southeast_asian_ngram: int = 54
    southeast_asian_min_ngram: int = 33
    hash_bits: int = 64

    def __post_init__(self):
        for regime in REGIMES:
            n, low = self.lengths(regime)
            if not 1 <= low <= n:
                raise ValueError(f"{regime}: need 1 <= min_ngram ({low}) <= ngram ({n})")
        if not 8 <= self.hash_bits <= 64:
            raise ValueError("hash_bits must be within 8..64")

    def lengths(self, regime: str) -> tuple[int, int]:
        """(n, min_n) of a regime."""
        prefix = "" if regime == "word" else regime + "_"
        return getattr(self, prefix + "ngram"), getattr(self, prefix + "min_ngram")


# ---------------------------------------------------------------------------------------------------------
# Normalization and token windows.


@dataclass
class Normalized:
    """Normalized texts as UTF-8 bytes (single spaces between tokens), per-text offsets, token starts
    (`tokens` offsets per text), the regime each text would be read in, and which script classes each
    text holds (`holds[:, 0]` — words — always true)."""

    data: np.ndarray
    offsets: np.ndarray
    starts: np.ndarray
    tokens: np.ndarray
    regime: np.ndarray
    holds: np.ndarray

    @property
    def n_tokens(self) -> np.ndarray:
        return np.where(np.diff(self.offsets) > 0, np.diff(self.tokens), 0)

    def text(self, start: int, end: int) -> str:
        return self.data[start:end].tobytes().decode("utf-8")


def _join(parts: list[Normalized]) -> Normalized:
    """One Normalized of consecutive pieces (offsets and token starts rebased)."""
    if not parts:
        return normalize(pa.array([], pa.string()))
    byte_base = np.cumsum([0] + [len(p.data) for p in parts])
    token_base = np.cumsum([0] + [len(p.starts) for p in parts])
    return Normalized(
        np.concatenate([p.data for p in parts]),
        np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + byte_base[k] for k, p in enumerate(parts)]),
        np.concatenate([p.starts + byte_base[k] for k, p in enumerate(parts)]),
        np.concatenate([parts[0].tokens[:1]] + [p.tokens[1:] + token_base[k] for k, p in enumerate(parts)]),
        np.concatenate([p.regime for p in parts]),
        np.concatenate([p.holds for p in parts]),
    )


def normalize(texts: pa.Array) -> Normalized:
    """Casefold, delete punctuation and symbols, make every unspaced-script character a token, collapse
    whitespace; then token starts, regimes and script classes per text.

    NFKC runs on the non-ASCII texts (ASCII is NFKC already); ASCII punctuation is then deleted from the
    UTF-8 bytes in numpy (a byte below 0x80 is never part of a longer character); regular expressions run
    on the non-ASCII texts only (other punctuation, scripts); minhash.normalize casefolds and collapses
    whitespace.
    """
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    texts = pc.fill_null(texts.cast(pa.string()), "")
    n = len(texts)
    regime = np.zeros(n, dtype=np.int8)
    holds = np.zeros((n, len(REGIMES)), dtype=bool)
    holds[:, 0] = True
    non_ascii = ~pc.string_is_ascii(texts).to_numpy(zero_copy_only=False)
    if non_ascii.any():
        # NFKC first (before any deletion: "=" + U+0338 composes to "≠"): fullwidth "１２＋ＡＢ" (common in
        # CJK text), ligatures and compatibility forms read as their plain characters. Only texts holding
        # a character NFKC may change go through it (a regex test costs a tenth of NFKC).
        candidates = np.flatnonzero(non_ascii)
        candidates = candidates[pc.match_substring_regex(texts.take(pa.array(candidates)), _nfkc_may_change())
                                .to_numpy(zero_copy_only=False)]
        if len(candidates):
            mask = np.zeros(n, dtype=bool)
            mask[candidates] = True
            texts = pc.replace_with_mask(texts, pa.array(mask),
                                         pc.utf8_normalize(texts.take(pa.array(candidates)), form="NFKC"))
    texts = _delete_ascii_punctuation(texts)
    non_ascii = np.flatnonzero(non_ascii)
    if len(non_ascii):
        subset = pc.replace_substring_regex(texts.take(pa.array(non_ascii)), _PUNCTUATION, "")
        unspaced = np.flatnonzero(pc.match_substring_regex(subset, _ANY_UNSPACED).to_numpy(zero_copy_only=False))
        if len(unspaced):
            some = subset.take(pa.array(unspaced))
            letters = pc.count_substring_regex(some, r"[\p{L}\p{M}]").to_numpy(zero_copy_only=False)
            counts = np.stack([pc.count_substring_regex(some, f"[{chars}]").to_numpy(zero_copy_only=False)
                               for chars in UNSPACED_SCRIPTS.values()], axis=1)
            holds[non_ascii[unspaced], 1:] = counts > 0
            top = counts.argmax(axis=1)
            majority = counts[np.arange(len(top)), top] * 2 > letters
            regime[non_ascii[unspaced]] = np.where(majority, top + 1, 0)
            mask = np.zeros(len(subset), dtype=bool)
            mask[unspaced] = True
            subset = pc.replace_with_mask(subset, pa.array(mask), pc.replace_substring_regex(some, _ANY_UNSPACED, r" \1 "))
        mask = np.zeros(n, dtype=bool)
        mask[non_ascii] = True
        texts = pc.replace_with_mask(texts, pa.array(mask), subset)
    # Trimmed first: minhash.normalize sends texts with whitespace at an edge through Python.
    data, offsets = minhash.normalize(pc.utf8_trim_whitespace(texts))
    starts, tokens = _token_starts(data, offsets, "word")
    return Normalized(data, offsets, starts, tokens, regime, holds)


@functools.lru_cache(maxsize=1)
def _nfkc_may_change() -> str:
    """An RE2 class of the characters that can make NFKC change a text: those Arrow's own NFKC rewrites
    on their own (5,033: fullwidth forms, ligatures, compatibility ideographs, ...), combining marks
    (reordered, or composed with the character before) and Hangul vowel and final jamo (composed into
    syllables). A text without any is its own NFKC. Built once per process (~0.5 s)."""
    points = np.array([i for i in range(0x80, 0x110000) if not 0xD800 <= i < 0xE000])
    chars = pa.array([chr(i) for i in points.tolist()], pa.string())
    alone = points[~pc.equal(pc.utf8_normalize(chars, form="NFKC"), chars).to_numpy(zero_copy_only=False)]
    first = np.flatnonzero(np.diff(np.concatenate([[-2], alone])) != 1)
    last = np.concatenate([first[1:] - 1, [len(alone) - 1]])
    ranges = "".join(f"\\x{{{alone[a]:x}}}-\\x{{{alone[b]:x}}}" for a, b in zip(first.tolist(), last.tolist()))
    return f"[{ranges}\\p{{M}}\\x{{1160}}-\\x{{11ff}}]"


_ASCII_PUNCTUATION = np.zeros(256, dtype=bool)
_ASCII_PUNCTUATION[np.frombuffer(string.punctuation.encode(), np.uint8)] = True  # = ASCII P and S


def _delete_ascii_punctuation(texts: pa.Array) -> pa.Array:
    """The texts (string, no nulls) without their ASCII punctuation and symbol bytes."""
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset: texts.offset + len(texts) + 1]
    buffer = texts.buffers()[2]
    if buffer is None:
        return texts
    data = np.frombuffer(buffer, dtype=np.uint8)[offsets[0]: offsets[-1]]
    keep = ~_ASCII_PUNCTUATION[data]
    if keep.all():
        return texts
    kept_before = np.concatenate([np.zeros(1, np.int32), np.cumsum(keep, dtype=np.int32)])
    return pa.StringArray.from_buffers(len(texts), pa.py_buffer(kept_before[offsets - offsets[0]].astype(np.int32)),
                                       pa.py_buffer(data[keep]))


@dataclass
class Windows:
    """Token windows of some texts: text index, byte start and end (exclusive), and the hash."""

    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    hash: np.ndarray


def _mask_hash(h: np.ndarray, bits: int) -> np.ndarray:
    return h if bits == 64 else h & np.uint64(((1 << bits) - 1) << (64 - bits))


def windows(norm: Normalized, hasher: _SubstringHasher, size: int, docs: np.ndarray, bits: int,
            first_only: bool = False) -> Windows:
    """Every window of `size` consecutive tokens in each of `docs` (indices) that has that many tokens;
    with `first_only`, only the first window of each (an item's prefix)."""
    n_tokens = norm.n_tokens[docs]
    docs = docs[n_tokens >= size]
    counts = np.ones(len(docs), np.int64) if first_only else norm.n_tokens[docs] - size + 1
    first = _ranges(norm.tokens[docs], counts)
    doc = np.repeat(docs, counts)
    past = first + size  # token index just past the window
    at_end = past >= norm.tokens[doc + 1]
    start = norm.starts[first]
    end = np.where(at_end, norm.offsets[doc + 1], norm.starts[np.minimum(past, len(norm.starts) - 1)] - 1)
    return Windows(doc, start, end, _mask_hash(hasher(start, end), bits))


# ---------------------------------------------------------------------------------------------------------
# The index: three hash tables over the eval items.


class HashTable:
    """Sorted 64-bit hashes with, per entry, an eval item and its byte range in `data`; a bitmap of the
    hashes' top bits in front so that most queries leave after one lookup. `unique`: an entry whose hash
    and bytes equal the entry before it is dropped (the lowest item of a text stays; texts that merely
    share a hash all stay); else one entry per (hash, item)."""

    def __init__(self, hashes: np.ndarray, item: np.ndarray, start: np.ndarray, end: np.ndarray,
                 data: np.ndarray, unique: bool):
        order = np.lexsort((start, item, hashes))
        hashes, item, start, end = hashes[order], item[order], start[order], end[order]
        keep = np.ones(len(hashes), dtype=bool)
        keep[1:] = hashes[1:] != hashes[:-1]
        same = np.flatnonzero(~keep[1:]) + 1  # entries whose hash equals the previous entry's
        if unique:
            length = end[same] - start[same]
            equal = length == end[same - 1] - start[same - 1]
            equal[equal] = _equal_bytes(data, start[same][equal], data, start[same - 1][equal], length[equal])
            keep[same] = ~equal
        else:
            keep[same] = item[same] != item[same - 1]
        self.hash, self.item, self.start, self.end = hashes[keep], item[keep], start[keep], end[keep]
        # ~64 bits of bitmap per entry: a query missing every entry passes with probability ≤ 1/64.
        self.bits = int(min(30, max(16, np.ceil(np.log2(max(len(self.hash), 1))) + 6)))
        slot = (self.hash >> np.uint64(64 - self.bits)).astype(np.int64)
        self.bitmap = np.zeros(1 << (self.bits - 3), dtype=np.uint8)
        np.bitwise_or.at(self.bitmap, slot >> 3, (1 << (slot & 7)).astype(np.uint8))

    def __len__(self) -> int:
        return len(self.hash)

    ARRAYS = ("hash", "item", "start", "end", "bitmap")

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray]) -> "HashTable":
        """A table from the arrays `save` wrote (memory-mapped or not)."""
        table = cls.__new__(cls)
        for name in cls.ARRAYS:
            setattr(table, name, arrays[name])
        table.bits = int(np.log2(len(table.bitmap))) + 3
        return table

    def lookup(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query index, entry index) for every entry whose hash equals a query's."""
        if not len(self.hash) or not len(queries):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        slot = (queries >> np.uint64(64 - self.bits)).astype(np.int64)
        maybe = np.flatnonzero((self.bitmap[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1)
        lo = np.searchsorted(self.hash, queries[maybe], side="left")
        hi = np.searchsorted(self.hash, queries[maybe], side="right")
        counts = hi - lo
        return np.repeat(maybe, counts), _ranges(lo, counts)


# How an item is compared, by its token count (see the module docstring).
COMPARED_AS = ("ngrams", "whole_item_inside", "whole_row_equal", "empty")


@dataclass
class NgramIndex:
    """The eval items, normalized, and their hash tables. Build with `NgramIndex.build`."""

    params: NgramParams
    items: Normalized
    compared_as: np.ndarray  # per item, an index into COMPARED_AS
    ngrams: HashTable  # n-grams of long items (one entry per distinct n-gram: its lowest item)
    prefixes: HashTable  # first min_n tokens of medium items → the item's whole byte range
    wholes: HashTable  # whole text of short items
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)  # window sizes per regime present

    @classmethod
    def build(cls, texts: pa.Array | Iterable[pa.Array], params: NgramParams = NgramParams()) -> "NgramIndex":
        """Index eval texts (one array, or an iterable of arrays read in order: item indices run on).

        Items are normalized and hashed in pieces of ~1 MB (minhash's powers table and per-byte temporaries
        stay small); the normalized pieces are then joined for verification."""
        parts = [texts] if isinstance(texts, (pa.Array, pa.ChunkedArray)) else texts
        pieces: list[Normalized] = []
        compared: list[np.ndarray] = []
        entries: list[list[tuple[np.ndarray, ...]]] = [[], [], []]  # per table: (hash, item, start, end)
        sizes: dict[str, dict[str, int]] = {"ngrams": {}, "prefixes": {}}
        item_base = byte_base = 0
        lengths = np.array([params.lengths(r) for r in REGIMES])
        for part in parts:
            for piece in _pieces(part):
                norm = normalize(piece)
                hasher = _SubstringHasher(norm.data)
                n_tokens = norm.n_tokens
                n, low = lengths[norm.regime, 0], lengths[norm.regime, 1]
                compared_as = np.select([n_tokens >= n, n_tokens >= low, n_tokens >= 1], [0, 1, 2], 3).astype(np.int8)
                for kind, table_of in ((0, "ngrams"), (1, "prefixes")):
                    for code, regime in enumerate(REGIMES):
                        docs = np.flatnonzero((compared_as == kind) & (norm.regime == code))
                        if not len(docs):
                            continue
                        size = params.lengths(regime)[kind]
                        sizes[table_of][regime] = size
                        w = windows(norm, hasher, size, docs, params.hash_bits, first_only=kind == 1)
                        # The n-gram itself; for a medium item, the whole item.
                        start, end = (w.start, w.end) if kind == 0 else (norm.offsets[w.doc], norm.offsets[w.doc + 1])
                        entries[kind].append((w.hash, w.doc + item_base, start + byte_base, end + byte_base))
                short = np.flatnonzero(compared_as == 2)
                start, end = norm.offsets[short], norm.offsets[short + 1]
                entries[2].append((_mask_hash(hasher(start, end), params.hash_bits), short + item_base,
                                   start + byte_base, end + byte_base))
                pieces.append(norm)
                compared.append(compared_as)
                item_base += len(compared_as)
                byte_base += len(norm.data)
        items = _join(pieces)
        tables = []
        for kind, found in enumerate(entries):
            columns = [np.concatenate([np.zeros(0, dtype)] + [e[k] for e in found])
                       for k, dtype in enumerate((np.uint64, np.int64, np.int64, np.int64))]
            tables.append(HashTable(*columns, data=items.data, unique=kind != 1))
        return cls(params, items, np.concatenate([np.zeros(0, np.int8)] + compared), *tables, sizes=sizes)

    def __len__(self) -> int:
        return len(self.compared_as)

    _ITEM_ARRAYS = ("data", "offsets", "starts", "tokens", "regime", "holds")
    _TABLES = ("ngrams", "prefixes", "wholes")

    def save(self, folder: str | Path) -> Path:
        """Write the index as .npy files and index.json in `folder`: worker processes `load` it memory-
        mapped, so that one copy in the page cache serves them all."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in self._ITEM_ARRAYS:
            np.save(folder / f"items.{name}.npy", getattr(self.items, name))
        np.save(folder / "compared_as.npy", self.compared_as)
        for table in self._TABLES:
            for name in HashTable.ARRAYS:
                np.save(folder / f"{table}.{name}.npy", getattr(getattr(self, table), name))
        (folder / "index.json").write_text(json.dumps({"params": asdict(self.params), "sizes": self.sizes}))
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "NgramIndex":
        folder = Path(folder)
        mode = "r" if mmap else None
        meta = json.loads((folder / "index.json").read_text())
        items = Normalized(*(np.load(folder / f"items.{name}.npy", mmap_mode=mode) for name in cls._ITEM_ARRAYS))
        tables = [HashTable.restore({name: np.load(folder / f"{table}.{name}.npy", mmap_mode=mode)
                                     for name in HashTable.ARRAYS}) for table in cls._TABLES]
        return cls(NgramParams(**meta["params"]), items, np.load(folder / "compared_as.npy", mmap_mode=mode),
                   *tables, sizes=meta["sizes"])

    def summary(self) -> dict[str, dict[str, int]]:
        """Items per regime and per way of comparing them (for reports)."""
        out: dict[str, dict[str, int]] = {}
        for code, regime in enumerate(REGIMES):
            mine = self.items.regime == code
            if mine.any():
                out[regime] = {how: int((mine & (self.compared_as == k)).sum()) for k, how in enumerate(COMPARED_AS)}
        return out


# ---------------------------------------------------------------------------------------------------------
# Scanning our rows.


@dataclass
class NgramMatches:
    """One verified match per matched row: row index (into the scanned texts, plus `first_row`), eval item
    index, how it matched (COMPARED_AS name), and the overlapping normalized text (the n-gram, or the
    whole item)."""

    row: np.ndarray
    item: np.ndarray
    how: list[str]
    ngram: list[str]

    def __len__(self) -> int:
        return len(self.row)

    @classmethod
    def concat(cls, parts: list["NgramMatches"]) -> "NgramMatches":
        return cls(np.concatenate([np.zeros(0, np.int64)] + [p.row for p in parts]),
                   np.concatenate([np.zeros(0, np.int64)] + [p.item for p in parts]),
                   [h for p in parts for h in p.how], [g for p in parts for g in p.ngram])


def _equal_bytes(a: np.ndarray, a_start: np.ndarray, b: np.ndarray, b_start: np.ndarray,
                 lengths: np.ndarray) -> np.ndarray:
    """Whether a[a_start : a_start+len] == b[b_start : b_start+len] for every range, vectorized."""
    lengths = lengths.astype(np.int64)
    differs = a[_ranges(a_start, lengths)] != b[_ranges(b_start, lengths)]
    bad = np.bincount(np.repeat(np.arange(len(lengths)), lengths)[differs], minlength=len(lengths))
    return bad == 0


def _scan_piece(index: NgramIndex, texts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Verified best match per matched text of one piece: (text, item, how code, overlapping text)."""
    rows = normalize(texts)
    hasher = _SubstringHasher(rows.data)
    params, items = index.params, index.items
    everyone = np.arange(len(rows.offsets) - 1)
    # Candidates: (doc, item, row byte start, row byte end, item byte start, item byte end, how)
    cand: list[tuple[np.ndarray, ...]] = []

    def docs_for(regime: str) -> np.ndarray:
        return everyone if regime == "word" else np.flatnonzero(rows.holds[:, REGIMES.index(regime)])

    for kind, table in ((0, index.ngrams), (1, index.prefixes)):
        by_size: dict[int, list[str]] = {}
        for regime, size in index.sizes["ngrams" if kind == 0 else "prefixes"].items():
            by_size.setdefault(size, []).append(regime)
        for size, regimes in by_size.items():
            docs = everyone if "word" in regimes else np.unique(np.concatenate([docs_for(r) for r in regimes]))
            w = windows(rows, hasher, size, docs, params.hash_bits)
            q, e = table.lookup(w.hash)
            length = table.end[e] - table.start[e]
            end = w.start[q] + length if kind == 1 else w.end[q]
            if kind == 1:  # the whole item must fit in the row and end at a token boundary
                doc_end = rows.offsets[w.doc[q] + 1]
                fits = end <= doc_end
                fits[fits] &= (end[fits] == doc_end[fits]) | (rows.data[np.minimum(end[fits], len(rows.data) - 1)] == _SPACE)
                q, e, end, length = q[fits], e[fits], end[fits], length[fits]
            cand.append((w.doc[q], table.item[e], w.start[q], end, table.start[e], table.end[e], np.full(len(q), kind)))
    nonempty = np.flatnonzero(rows.n_tokens > 0)
    if len(index.wholes):
        whole = _mask_hash(hasher(rows.offsets[nonempty], rows.offsets[nonempty + 1]), params.hash_bits)
        q, e = index.wholes.lookup(whole)
        doc = nonempty[q]
        cand.append((doc, index.wholes.item[e], rows.offsets[doc], rows.offsets[doc + 1], index.wholes.start[e],
                     index.wholes.end[e], np.full(len(q), 2)))
    if not cand:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8), []
    doc, item, start, end, item_start, item_end, how = (np.concatenate(c) for c in zip(*cand))
    # Verification: the row's range and the item's have the same length and the same bytes.
    length = end - start
    same_length = length == item_end - item_start
    ok = np.zeros(len(doc), dtype=bool)
    ok[same_length] = _equal_bytes(rows.data, start[same_length], items.data, item_start[same_length],
                                   length[same_length])
    doc, item, start, end, how = doc[ok], item[ok], start[ok], end[ok], how[ok]
    order = np.lexsort((start, item, doc))
    first = np.ones(len(order), dtype=bool)
    first[1:] = doc[order][1:] != doc[order][:-1]
    pick = order[first]
    texts_out = [rows.text(s, e) for s, e in zip(start[pick].tolist(), end[pick].tolist())]
    return doc[pick], item[pick], how[pick].astype(np.int8), _display(texts_out)


_BETWEEN_UNSPACED = _ANY_UNSPACED + " " + _ANY_UNSPACED


def _display(texts: list[str]) -> list[str]:
    """Normalized texts without the spaces normalization put between two unspaced-script characters
    (two passes: a match consumes the character after the space)."""
    if not texts:
        return texts
    out = pa.array(texts, pa.string())
    for _ in range(2):
        out = pc.replace_substring_regex(out, _BETWEEN_UNSPACED, r"\1\2")
    return out.to_pylist()


def find_ngram_overlaps(index: NgramIndex, texts: pa.Array, first_row: int = 0) -> NgramMatches:
    """The verified match of every row of `texts` that overlaps an eval item (rows numbered from
    `first_row`); rows without one are absent. Null texts match nothing."""
    parts, offset = [], 0
    for piece in _pieces(texts):
        doc, item, how, ngram = _scan_piece(index, piece)
        parts.append(NgramMatches(doc + offset + first_row, item, [COMPARED_AS[h] for h in how.tolist()], ngram))
        offset += len(piece)
    return NgramMatches.concat(parts)


@functools.lru_cache(maxsize=4)
def _loaded(folder: str) -> NgramIndex:
    return NgramIndex.load(folder)


def find_ngram_overlaps_saved(folder: str, texts: pa.Array, first_row: int = 0) -> NgramMatches:
    """Worker job: `find_ngram_overlaps` with an index `NgramIndex.save`d in `folder`, memory-mapped once
    per process (pickling a 50k-item index with every batch would cost more than the scan)."""
    return find_ngram_overlaps(_loaded(str(folder)), texts, first_row)


def scan(index: NgramIndex, batches: Iterable[pa.Array]) -> Iterator[NgramMatches]:
    """`find_ngram_overlaps` over a stream of text batches, rows numbered across the stream."""
    first_row = 0
    for texts in batches:
        yield find_ngram_overlaps(index, texts, first_row)
        first_row += len(texts)
