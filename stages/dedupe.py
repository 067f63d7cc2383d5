"""dedupe: remove exact and near duplicates, keeping one verified representative per neighbourhood.

How a run goes (the stage needs the whole stream; it reads its input three times and never holds the
corpus in Python objects, only per-row numpy arrays):

1. *Signatures.* Each batch's texts are normalized (casefold, whitespace collapsed), split into tokens
   (words, or characters with `shingle: char`) and shingled into token n-grams, all as numpy arrays over
   the whole batch. A document shorter than `ngram` tokens gets one shingle made of all its tokens, so a
   three-word SMS is still compared (with Jaccard 1 or 0 against its look-alikes). From the shingle hashes
   we compute a MinHash signature (`num_perm` random permutations `a·x + b mod 2⁶⁴`, min-reduced per
   document) and keep only its LSH band keys, plus a hash of the normalized text for the exact step.
   Batches are spread over `ctx.workers` processes.
2. *Exact duplicates* share the normalized-text hash; one representative per group stays in play.
3. *Candidates.* Representatives that share a band key in any band are candidate pairs. The bands/rows
   split comes from datasketch's parameter optimizer at `lsh_threshold`, which is lower than `threshold`:
   every candidate is verified, so a low LSH threshold only costs verification time and it is what keeps
   pairs just above `threshold` from being missed.
4. *Verification.* The shingle sets of candidate rows are rebuilt (second read, candidate rows only) and
   each pair's exact Jaccard is computed; pairs at ≥ `threshold` are edges.
5. *Decision.* Greedy over rows by priority — a labelled row first, then the longest text, then the first
   seen: a row is kept unless an already kept row is an edge neighbour, in which case it is removed and
   names that neighbour (the most similar kept one) in `duplicate_of`. So every removed row names a kept
   row it is verified similar to, and no two kept rows are verified similar. (Dropping whole union-find
   clusters would not: in a chain A≈B≈C with A≉C, C would be dropped for A.)
6. *Routing* (third read): kept rows get `cluster_id` — the connected component over exact groups and
   verified edges, numbered by first appearance — and removed rows go to `rejected` with
   `{"duplicate_of", "jaccard", "cluster_id"}`.

Everything is a function of the rows and their stream order, not of how the stream is cut into batches.
Clusters whose members carry different labels are counted and exemplified in `stats`: label noise users
need to see.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterator, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasketch.lsh import _optimal_param
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import schemas
from pipeline.stage import Stage, StageInput, StageOutput, rejected_rows


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = Field(True, description="remove rows whose normalized text (casefold, whitespace collapsed) repeats")
    near: bool = Field(True, description="remove rows whose shingle-set Jaccard to a kept row is >= threshold")
    shingle: Literal["word", "char"] = Field("word", description="n-grams of whitespace-separated words or of characters")
    ngram: int = Field(5, ge=1, le=64, description="shingle length in tokens; shorter texts get one shingle of all their tokens")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard at or above which two rows are duplicates")
    lsh_threshold: float = Field(
        0.5, gt=0.0, le=1.0,
        description="threshold the LSH bands are tuned for; lower finds more candidates (all are verified)",
    )
    seed: int = Field(1, description="seed of the MinHash permutations")

    @model_validator(mode="after")
    def _lsh_not_above_threshold(self) -> "Config":
        if self.lsh_threshold > self.threshold:
            raise ValueError(f"lsh_threshold ({self.lsh_threshold}) must not exceed threshold ({self.threshold})")
        return self

    def bands_rows(self) -> tuple[int, int]:
        """(bands, rows per band) minimizing datasketch's false positive + false negative areas."""
        return _optimal_param(self.lsh_threshold, self.num_perm, 0.5, 0.5)


# ---------------------------------------------------------------------------------------------------------
# Shingling and signatures: pure functions of one batch of texts (run in worker processes).

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads every input bit over the whole word (in place on a copy)."""
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _constants(n: int, salt: int) -> np.ndarray:
    """n fixed odd 64-bit multipliers (not configurable: they define the shingle hash)."""
    return np.random.default_rng(0x5EED0000 + salt).integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def normalize(texts: pa.Array) -> pa.Array:
    """Casefold and collapse whitespace. Arrow lowercases ASCII rows (where lower == casefold); the rest
    go through Python's str.casefold (ß → ss, final sigma, ligatures)."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    texts = texts.cast(pa.string())  # the schema's type; large_string input (from pandas) too
    lowered = pc.utf8_lower(texts)
    non_ascii = np.flatnonzero(~pc.string_is_ascii(texts).to_numpy(zero_copy_only=False))
    if len(non_ascii):
        folded = pa.array([s.casefold() for s in texts.take(pa.array(non_ascii)).to_pylist()], pa.string())
        mask = np.zeros(len(texts), dtype=bool)
        mask[non_ascii] = True
        lowered = pc.replace_with_mask(lowered, pa.array(mask), folded)
    # Arrow yields empty words for leading and trailing whitespace: trim first.
    return pc.binary_join(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(lowered)), " ")


def _hash_strings(values: pa.Array) -> np.ndarray:
    """64-bit hash per string, hashing each distinct string once (pandas' SipHash, fixed key)."""
    encoded = pc.dictionary_encode(values)
    uniques = encoded.dictionary.to_numpy(zero_copy_only=False)
    return pd.util.hash_array(uniques, categorize=False)[encoded.indices.to_numpy(zero_copy_only=False)]


def _tokens(normalized: pa.Array, shingle: str) -> tuple[np.ndarray, np.ndarray]:
    """Token hashes of every document, flattened, and the offsets of each document's tokens."""
    if shingle == "word":
        words = pc.utf8_split_whitespace(normalized)
        offsets = words.offsets.to_numpy().astype(np.int64)
        offsets -= offsets[0]
        flat = pc.list_flatten(words)
        return (_hash_strings(flat) if len(flat) else np.zeros(0, np.uint64)), offsets
    # Characters: code points (the single space between words included).
    lengths = pc.utf8_length(normalized).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    code_points = np.frombuffer("".join(normalized.to_pylist()).encode("utf-32-le"), dtype=np.uint32)
    return _mix64(code_points.astype(np.uint64)), offsets


def shingle_hashes(texts: pa.Array, shingle: str, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every document's shingles (token n-grams), flattened, and per-document offsets.

    A document with fewer than `ngram` tokens gets one shingle of all its tokens (an empty one gets the
    hash of the empty shingle). Duplicates within a document are kept: MinHash does not care and
    `shingle_sets` removes them.
    """
    tokens, tok_offsets = _tokens(normalize(texts), shingle)
    n_tokens = np.diff(tok_offsets)
    counts = np.maximum(n_tokens - ngram + 1, 1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    total = int(offsets[-1])
    doc = np.repeat(np.arange(len(counts)), counts)
    start = tok_offsets[doc] + (np.arange(total) - offsets[doc])
    width = np.minimum(n_tokens, ngram)[doc]
    padded = np.append(tokens, np.uint64(0))  # so that an index past the end (masked out anyway) is valid
    acc = width.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    mult = _constants(ngram, 1)
    for t in range(ngram):
        term = padded[np.minimum(start + t, len(tokens))] * mult[t]
        acc += np.where(t < width, term, np.uint64(0))
    return _mix64(acc), offsets


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The MinHash permutations x ↦ a·x + b mod 2⁶⁴ (a odd). The minimum is decided by the high bits,
    which depend on every bit of x: multiply-shift hashing over already mixed shingle hashes."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    return a, b


def minhash(hashes: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray,
            chunk_shingles: int = 1 << 14) -> np.ndarray:
    """MinHash signatures (documents × permutations, uint64); every document has ≥ 1 shingle."""
    n_docs = len(offsets) - 1
    sig = np.empty((n_docs, len(a)), dtype=np.uint64)
    buf = np.empty((chunk_shingles, len(a)), dtype=np.uint64)
    d0 = 0
    while d0 < n_docs:
        # As many whole documents as fit in the buffer (at least one).
        d1 = max(int(np.searchsorted(offsets, offsets[d0] + chunk_shingles, side="right")) - 1, d0 + 1)
        d1 = min(d1, n_docs)
        s0, s1 = int(offsets[d0]), int(offsets[d1])
        out = buf[: s1 - s0] if s1 - s0 <= chunk_shingles else np.empty((s1 - s0, len(a)), np.uint64)
        np.multiply(hashes[s0:s1, None], a[None, :], out=out)
        out += b
        sig[d0:d1] = np.minimum.reduceat(out, offsets[d0:d1] - s0, axis=0)
        d0 = d1
    return sig


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band) summarizing the band's `rows` signature values."""
    banded = sig[:, : bands * rows].reshape(len(sig), bands, rows)
    mult = _constants(rows, 2)
    acc = np.zeros((len(sig), bands), dtype=np.uint64)
    for k in range(rows):
        acc += banded[:, :, k] * mult[k]
    return _mix64(acc)


def signature_batch(texts: pa.Array, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """Worker job for pass 1: (exact hash per row, band keys per row)."""
    cfg = Config(**config)
    exact = _hash_strings(normalize(texts))
    if not cfg.near:
        return exact, np.zeros((len(texts), 0), np.uint64)
    hashes, offsets = shingle_hashes(texts, cfg.shingle, cfg.ngram)
    bands, rows = cfg.bands_rows()
    sig = minhash(hashes, offsets, *permutations(cfg.num_perm, cfg.seed))
    return exact, band_keys(sig, bands, rows)


def shingle_sets(texts: pa.Array, shingle: str, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Each document's distinct shingle hashes, sorted, flattened; and per-document offsets."""
    hashes, offsets = shingle_hashes(texts, shingle, ngram)
    doc = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    order = np.lexsort((hashes, doc))
    hashes, doc = hashes[order], doc[order]
    first = np.ones(len(hashes), dtype=bool)
    first[1:] = (hashes[1:] != hashes[:-1]) | (doc[1:] != doc[:-1])
    hashes, doc = hashes[first], doc[first]
    counts = np.bincount(doc, minlength=len(offsets) - 1)
    return hashes, np.concatenate([[0], np.cumsum(counts)])


def _shingle_sets_job(texts: pa.Array, config: dict) -> tuple[np.ndarray, np.ndarray]:
    cfg = Config(**config)
    return shingle_sets(texts, cfg.shingle, cfg.ngram)


# ---------------------------------------------------------------------------------------------------------
# Graph helpers (numpy over all rows).


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + l) for every (s, l)."""
    before = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
    return np.repeat(starts - before, lengths) + np.arange(int(lengths.sum()))


def _segments(offsets: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of segments `which` of a flattened array with `offsets`, and their lengths."""
    lengths = offsets[which + 1] - offsets[which]
    return _ranges(offsets[which], lengths), lengths


def _pairs_in_groups(members: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (members[p], members[q]) with p < q inside one group; groups are ranges [start, end)."""
    sizes = ends - starts
    pos = _ranges(starts, sizes)
    later = np.repeat(ends, sizes) - pos - 1  # positions after p in its group
    left = np.repeat(pos, later)
    right = _ranges(pos + 1, later)
    return members[left], members[right]


def candidate_pairs(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs (i < j) of `rows` sharing a key in any band (keys: len(rows) × bands); largest bucket size."""
    codes = []
    n_total = int(rows.max()) + 1 if len(rows) else 1
    largest = 0
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        boundary = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
        starts = np.concatenate([[0], boundary])
        ends = np.concatenate([boundary, [len(sorted_keys)]])
        multi = ends - starts > 1
        if not multi.any():
            continue
        largest = max(largest, int((ends - starts).max()))
        left, right = _pairs_in_groups(rows[order], starts[multi], ends[multi])
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        codes.append(np.unique(lo.astype(np.int64) * n_total + hi))
    if not codes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), largest
    code = np.unique(np.concatenate(codes))
    return code // n_total, code % n_total, largest


def jaccard(ids: np.ndarray, offsets: np.ndarray, left: np.ndarray, right: np.ndarray,
            chunk_elements: int = 1 << 22) -> np.ndarray:
    """Exact Jaccard of pairs of sets. Sets are sorted dense uint32 ids, flattened with `offsets`."""
    out = np.empty(len(left), dtype=np.float64)
    sizes = np.diff(offsets)
    work = np.cumsum(sizes[left] + sizes[right])
    p0 = 0
    while p0 < len(left):
        base = work[p0 - 1] if p0 else 0
        p1 = max(int(np.searchsorted(work, base + chunk_elements, side="right")), p0 + 1)
        tag = np.arange(p1 - p0, dtype=np.uint64)
        # (pair tag, id) packed into one sortable word; both sides come out sorted by construction.
        pos_a, len_a = _segments(offsets, left[p0:p1])
        pos_b, len_b = _segments(offsets, right[p0:p1])
        key_a = (np.repeat(tag, len_a) << np.uint64(32)) | ids[pos_a].astype(np.uint64)
        key_b = (np.repeat(tag, len_b) << np.uint64(32)) | ids[pos_b].astype(np.uint64)
        at = np.minimum(np.searchsorted(key_b, key_a), len(key_b) - 1)
        hit = key_b[at] == key_a
        inter = np.bincount(np.repeat(np.arange(p1 - p0), len_a)[hit], minlength=p1 - p0)
        out[p0:p1] = inter / (len_a + len_b - inter)
        p0 = p1
    return out


def greedy_keep(rank: np.ndarray, left: np.ndarray, right: np.ndarray, weight: np.ndarray,
                n: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximal independent set by priority (`rank`, lower first) over edges (left, right, weight).

    Returns, per row, the row it is removed for (-1 if kept) and that edge's weight. A row is removed for
    its most similar kept neighbour (ties: the better ranked one).
    """
    dup_of = np.full(n, -1, dtype=np.int64)
    dup_weight = np.zeros(n, dtype=np.float64)
    if not len(left):
        return dup_of, dup_weight
    src = np.concatenate([left, right])
    dst = np.concatenate([right, left])
    w = np.concatenate([weight, weight])
    # Neighbours of each row sorted best first: highest weight, then best rank.
    order = np.lexsort((rank[dst], -w, src))
    src, dst, w = src[order], dst[order], w[order]
    nodes, starts = np.unique(src, return_index=True)
    ends = np.append(starts[1:], len(src))
    span = dict(zip(nodes.tolist(), zip(starts.tolist(), ends.tolist())))
    dst_list, w_list = dst.tolist(), w.tolist()
    kept = set()
    for node in nodes[np.argsort(rank[nodes], kind="stable")].tolist():
        s, e = span[node]
        for k in range(s, e):
            if dst_list[k] in kept:
                dup_of[node] = dst_list[k]
                dup_weight[node] = w_list[k]
                break
        else:
            kept.add(node)
    return dup_of, dup_weight


# ---------------------------------------------------------------------------------------------------------


class DedupeStage(Stage):
    name = "dedupe"
    output_schema = schemas.DEDUPED
    whole_stream = True
    Config = Config

    MAX_CONFLICT_EXAMPLES = 10
    MAX_EXAMPLE_ROWS = 10

    def run(self, inputs: StageInput | None) -> Iterator[StageOutput]:
        cfg: Config = self.config
        if inputs is None or inputs.num_rows == 0:
            self.stats.update(exact_removed=0, near_removed=0, candidate_pairs=0, verified_pairs=0,
                              clusters=0, label_conflict_clusters=0, label_conflict_examples=[])
            return
        self._workers = max(1, int(self.ctx.workers))
        pool = ProcessPoolExecutor(self._workers) if self._workers > 1 else None
        try:
            state = self._pass_signatures(inputs, pool)
            n = state["n"]
            rank = np.lexsort((np.arange(n), -state["length"], ~state["has_label"]))
            rank = np.argsort(rank).astype(np.int64)  # position of each row in priority order

            # Exact groups: the best-ranked row of each normalized-text group represents it.
            rep = np.arange(n, dtype=np.int64)
            if cfg.exact:
                order = np.lexsort((rank, state["exact"]))
                h = state["exact"][order]
                new_group = np.ones(n, dtype=bool)
                new_group[1:] = h[1:] != h[:-1]
                group_first = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
                rep[order] = order[group_first]
            is_rep = rep == np.arange(n)

            left = right = np.zeros(0, np.int64)
            weight = np.zeros(0, np.float64)
            n_candidates, largest_bucket = 0, 0
            if cfg.near:
                reps = np.flatnonzero(is_rep)
                left, right, largest_bucket = candidate_pairs(state["bands"][reps], reps)
                n_candidates = len(left)
                if n_candidates:
                    weight = self._verify(inputs, pool, n, left, right)
                    edge = weight >= cfg.threshold
                    left, right, weight = left[edge], right[edge], weight[edge]
            del state["bands"]
        finally:
            if pool is not None:
                pool.shutdown()

        dup_of, dup_jaccard = greedy_keep(rank, left, right, weight, n)
        reason = np.zeros(n, dtype=np.int8)  # 0 kept, 1 exact duplicate, 2 near duplicate
        reason[dup_of >= 0] = 2
        # An exact copy names its group's representative; if that one went as a near duplicate, it names
        # the same kept row (its shingle set is the representative's, so the Jaccard is the same too).
        exact_dup = ~is_rep
        rep_removed = exact_dup & (dup_of[rep] >= 0)
        dup_of[exact_dup] = rep[exact_dup]
        dup_jaccard[exact_dup] = 1.0
        reason[exact_dup] = 1
        dup_of[rep_removed] = dup_of[rep[rep_removed]]
        dup_jaccard[rep_removed] = dup_jaccard[rep[rep_removed]]
        reason[rep_removed] = 2

        # Clusters: components over exact groups and verified edges, numbered by first appearance.
        graph = coo_matrix(
            (np.ones(len(left) + n, np.int8), (np.concatenate([left, rep]), np.concatenate([right, np.arange(n)]))),
            shape=(n, n),
        )
        _, component = connected_components(graph, directed=False)
        _, first_row = np.unique(component, return_index=True)
        cluster_number = np.empty(len(first_row), np.int64)
        cluster_number[np.argsort(first_row, kind="stable")] = np.arange(len(first_row))
        cluster_id = cluster_number[component]

        conflicts, examples = self._label_conflicts(cluster_id, state["label_code"])
        example_rows = {int(r): None for ex in examples for r in ex}
        example_order = np.array(sorted(example_rows), dtype=np.int64)
        ids = state["ids"]
        referenced = np.unique(dup_of[dup_of >= 0])
        referenced_id = dict(zip(referenced.tolist(), ids.take(pa.array(referenced)).to_pylist()))
        del state

        start = 0
        for batch in inputs.batches():
            m = batch.num_rows
            sl = slice(start, start + m)
            keep = reason[sl] == 0
            kept = batch.filter(pa.array(keep))
            if "cluster_id" in kept.schema.names:
                kept = kept.drop_columns(["cluster_id"])
            kept = kept.append_column("cluster_id", pa.array(cluster_id[sl][keep], pa.int64()))
            kept = schemas.conform(kept, schemas.DEDUPED)
            rejected = None
            removed = np.flatnonzero(~keep)
            if len(removed):
                rows = batch.take(pa.array(removed))
                g = removed + start
                details = [
                    {"duplicate_of": referenced_id[int(dup_of[i])], "jaccard": round(float(dup_jaccard[i]), 4),
                     "cluster_id": int(cluster_id[i])}
                    for i in g
                ]
                reasons = np.where(reason[g] == 1, "exact_duplicate", "near_duplicate").tolist()
                rejected = rejected_rows(rows, self.name, reasons, details)
            wanted = example_order[(example_order >= start) & (example_order < start + m)].tolist()
            if wanted:
                local = pa.array([i - start for i in wanted])
                for i, id_, text, label in zip(wanted, batch.column("id").take(local).to_pylist(),
                                               batch.column("text").take(local).to_pylist(),
                                               batch.column("label").take(local).to_pylist()):
                    example_rows[i] = {"id": id_, "text": text, "label": label,
                                       "kept": bool(reason[i] == 0)}
            start += m
            yield StageOutput(kept=kept if kept.num_rows else None, rejected=rejected)

        sizes = np.bincount(cluster_id)
        self.stats.update(
            exact_removed=int((reason == 1).sum()),
            near_removed=int((reason == 2).sum()),
            candidate_pairs=int(n_candidates),
            verified_pairs=int(len(left)),
            largest_lsh_bucket=largest_bucket,
            clusters=int((sizes > 1).sum()),
            rows_in_clusters=int(sizes[sizes > 1].sum()),
            lsh_bands_rows=list(cfg.bands_rows()) if cfg.near else None,
            label_conflict_clusters=conflicts,
            label_conflict_examples=[
                {"cluster_id": int(cluster_id[ex[0]]), "rows": [example_rows[int(r)] for r in ex]} for ex in examples
            ],
        )

    # -- passes ------------------------------------------------------------------------------------------

    def _pass_signatures(self, inputs: StageInput, pool) -> dict[str, Any]:
        """Pass 1: per-row exact hash, LSH band keys, text length, label presence, label code and id."""
        cfg: Config = self.config
        config = cfg.model_dump()
        exact, bands, length, has_label, label_code, ids = [], [], [], [], [], []
        labels: dict[str, int] = {}
        pending: list = []

        def collect(result) -> None:
            e, b = result
            exact.append(e)
            bands.append(b)

        for batch in inputs.batches(columns=["id", "text", "label"]):
            texts = batch.column("text")
            if pool is None:
                collect(signature_batch(texts, config))
            else:
                pending.append(pool.submit(signature_batch, texts, config))
                # Bounded read-ahead; results are consumed in submission order (determinism).
                while len(pending) > 2 * self._workers:
                    collect(pending.pop(0).result())
            length.append(pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64))
            label = batch.column("label").cast(pa.string())
            has_label.append(~label.is_null().to_numpy(zero_copy_only=False))
            encoded = pc.dictionary_encode(label)
            # Batch-local codes → run-wide codes; the appended -1 is what a null (index -1) maps to.
            mapping = np.array([labels.setdefault(v, len(labels)) for v in encoded.dictionary.to_pylist()] + [-1],
                               dtype=np.int32)
            label_code.append(mapping[encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)])
            ids.append(batch.column("id"))
            self.ctx.progress(batch.num_rows)
        for future in pending:
            collect(future.result())
        return {
            "n": int(sum(len(x) for x in exact)),
            "exact": np.concatenate(exact),
            "bands": np.concatenate(bands),
            "length": np.concatenate(length),
            "has_label": np.concatenate(has_label).astype(bool),
            "label_code": np.concatenate(label_code),
            "ids": pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in ids]),
        }

    def _verify(self, inputs: StageInput, pool, n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Pass 2: rebuild the shingle sets of candidate rows only; exact Jaccard of every candidate pair."""
        config = self.config.model_dump()
        wanted = np.zeros(n, dtype=bool)
        wanted[left] = True
        wanted[right] = True
        rows = np.flatnonzero(wanted)
        compact = np.full(n, -1, dtype=np.int64)
        compact[rows] = np.arange(len(rows))
        parts = []
        start = 0
        for batch in inputs.batches(columns=["text"]):
            local = np.flatnonzero(wanted[start:start + batch.num_rows])
            start += batch.num_rows
            if not len(local):
                continue
            texts = batch.column("text").take(pa.array(local))
            parts.append(pool.submit(_shingle_sets_job, texts, config) if pool else _shingle_sets_job(texts, config))
        parts = [p.result() if pool else p for p in parts]
        hashes = np.concatenate([h for h, _ in parts])
        counts = np.concatenate([np.diff(o) for _, o in parts])
        offsets = np.concatenate([[0], np.cumsum(counts)])
        del parts
        # Dense ids keep the order of the hashes, so each set stays sorted.
        _, dense = np.unique(hashes, return_inverse=True)
        del hashes
        return jaccard(dense.astype(np.uint32), offsets, compact[left], compact[right])

    def _label_conflicts(self, cluster_id: np.ndarray, label_code: np.ndarray) -> tuple[int, list[list[int]]]:
        """Clusters whose labelled members disagree: how many, and up to 10 (cluster → member rows)."""
        labelled = np.flatnonzero(label_code >= 0)
        if not len(labelled):
            return 0, []
        pairs = np.unique(np.stack([cluster_id[labelled], label_code[labelled].astype(np.int64)], axis=1), axis=0)
        clusters, distinct = np.unique(pairs[:, 0], return_counts=True)
        conflicting = clusters[distinct > 1]
        examples = []
        for c in conflicting[: self.MAX_CONFLICT_EXAMPLES].tolist():
            examples.append(np.flatnonzero(cluster_id == c)[: self.MAX_EXAMPLE_ROWS].tolist())
        return int(len(conflicting)), examples
