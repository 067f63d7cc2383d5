"""dedupe: remove exact and near duplicates, keeping one verified representative per neighbourhood.

How a run goes (the stage needs the whole stream; it reads its input twice and never holds the corpus in
Python objects, only per-row numpy arrays):

1. *Signatures* (first read, spread over `ctx.workers` processes). Each batch's texts are normalized
   exactly as `" ".join(text.casefold().split())`, as UTF-8 bytes in numpy. A shingle is the text of
   `ngram` consecutive tokens (words, or characters with `shingle: char`); a text with fewer tokens is one
   shingle of all of them, so a three-word SMS is still compared (at Jaccard 1 or 0 to its look-alikes).
   Every shingle of the batch is hashed at once (polynomial hashes of byte ranges from prefix sums), then
   MinHashed: `num_perm` permutations `a·x + b mod 2³²` as numpy arrays, min-reduced per text. Only the
   LSH band keys are kept, plus the hash of the whole normalized text (exact step) and the text's
   shingle set (sorted 44-bit fingerprints), which goes to a temporary file.
2. *Exact duplicates* share the normalized-text hash; one representative per group stays in play.
3. *Candidates.* Representatives that share a band key in any band are candidate pairs (grouped with
   numpy sorts, not dicts). Bands × rows minimize datasketch's error areas (pipeline/minhash.py) at `lsh_threshold`,
   lower than `threshold`: every candidate is verified, so a low LSH threshold only costs verification
   time, and it is what keeps pairs just above `threshold` from being missed (25 × 5 at 0.5: a pair at
   Jaccard 0.8 is missed with probability 5·10⁻⁵).
4. *Verification.* The candidates' shingle sets are read back and each pair's Jaccard is computed
   exactly (on fingerprints: two different shingles of a pair collide with probability ~|A|·|B|/2⁴⁴);
   pairs at ≥ `threshold` are edges.
5. *Decision.* Greedy over rows by priority — a labelled row first, then the longest text, then the first
   seen: a row is kept unless an already kept row is an edge neighbour, in which case it is removed and
   names that neighbour (the most similar kept one) in `duplicate_of`. So every removed row names a kept
   row it is verified similar to, and no two kept rows are verified similar. (Dropping whole union-find
   clusters would not: in a chain A≈B≈C with A≉C, C would be dropped for A.)
6. *Routing* (second read): kept rows get `cluster_id` — the connected component over exact groups and
   verified edges, numbered by first appearance — and removed rows go to `rejected` with
   `{"duplicate_of", "jaccard", "cluster_id"}`.

What is compared is the record kind's dedupe `key` (`schemas.record.RecordKind.dedupe_keys`): the
classification `text`; for instruction and chat data the `prompt` (default for `generation`), the
`completion`, the `pair`, or the whole `conversation` (default for `chat`), rendered by the kind's field
views wherever the search runs (here or on Ray). `shingle: auto` (the generative kinds' default) gives a
text written in a script without spaces (10+ Chinese, Japanese, Thai, ... characters, or 30 % of it) `char_ngram`-character shingles and every
other text word shingles: a whitespace "word" of Chinese is a whole clause, and word shingles find no
near duplicate there. 3 characters by default: on alpaca_zh's prompts (median 17 characters) one changed
character plus punctuation changes leave a median Jaccard of 0.63 (word 5-grams: 0.00), unrelated prompts'
99.9th percentile is 0.10; 2 characters raise that to 0.16, 5 drop the first to 0.47.

Everything is a function of the rows and their stream order, not of how the stream is cut into batches.
Clusters whose members carry different labels are counted and exemplified in `stats`: label noise users
need to see. Progress is reported during the first read, which is most of the time. What the quality gate
needs — what "similar" meant, cluster sizes, the label conflicts — is handed on in a `DedupeSummary`.
"""
from __future__ import annotations

import tempfile
from typing import Any, Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

import schemas
from pipeline.errors import UserError
from pipeline.minhash import bands_rows
from pipeline.near_duplicates import LocalNearDuplicates, SketchParams
from pipeline.stage import Stage, StageInput, StageOutput, rejected_rows
from schemas.record import RecordKind
from schemas.summaries import ConflictRow, DedupeSummary, LabelConflict, Similarity
from stages.dedupe.graph import connected_components
from stages.dedupe.labels import resolve_labels, route_lost


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = Field(True, description="remove rows whose normalized text (casefold, whitespace collapsed) repeats")
    near: bool = Field(True, description="remove rows whose shingle-set Jaccard to a kept row is >= threshold")
    key: Literal["text", "prompt", "completion", "pair", "conversation"] | None = Field(
        None, description="what is compared: text (classification) | prompt | completion | pair | conversation; "
                          "default: text, prompt (generation), conversation (chat)")
    shingle: Literal["word", "char", "auto"] | None = Field(
        None, description="n-grams of whitespace-separated words, of characters, or auto: characters for texts "
                          "written without spaces (CJK, Thai), words otherwise; default: word for classification, "
                          "auto for generation and chat")
    ngram: int = Field(5, ge=1, le=64, description="shingle length in tokens; shorter texts get one shingle of all their tokens")
    punctuation: Literal["keep", "drop", "drop_short"] | None = Field(
        None, description="punctuation and symbols in the compared text: keep; drop before hashing, exact step "
                          "included (\"France?\" = \"France ?\"); drop_short — dropped in texts under 50 words "
                          "only, so long texts pair exactly as with keep; default: drop_short for classification, "
                          "keep for generation and chat (code)")
    label_conflicts: Literal["hybrid", "ignore"] = Field(
        "hybrid", description="rows of one text with different labels: hybrid — the text keeps one label "
                              "(the majority; a tie goes to the label the label_noise evidence finds more probable, "
                              "without evidence the tied rows are rejected as label_conflict), and a near copy with "
                              "another label is another example and stays; ignore — labels play no part (the "
                              "longest row is kept)")
    char_ngram: int = Field(3, ge=1, le=64, description="shingle: auto — characters per shingle for texts written without spaces")
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
        return bands_rows(self.lsh_threshold, self.num_perm)

    def for_kind(self, kind: RecordKind) -> tuple[str, str]:
        """(key, shingle) for `kind`: the configured ones, or the kind's defaults. UserError for a key the
        kind does not have."""
        key = self.key or kind.default_key
        if key not in kind.dedupe_keys:
            raise UserError(f"dedupe.key: {kind.name} records have no key {key!r} (keys: {', '.join(kind.dedupe_keys)})")
        return key, self.shingle or ("word" if kind.default_view is not None else "auto")

    def punctuation_for(self, kind: RecordKind) -> str:
        return self.punctuation or ("drop_short" if kind.default_view is not None else "keep")


def greedy_keep(rank: np.ndarray, left: np.ndarray, right: np.ndarray, weight: np.ndarray,
                n: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximal independent set by priority (`rank`, lower first) over edges (left, right, weight).

    Returns, per row, the row it is removed for (-1 if kept) and that edge's weight. A row is removed for
    its most similar kept neighbour (ties: the better ranked one).

    Computed in rounds over numpy arrays: an undecided row whose undecided neighbours all rank below it
    is kept, and its undecided neighbours are removed. This gives exactly what visiting rows one by one
    in priority order gives (a row waits only for better-ranked neighbours), in as many rounds as the
    longest chain of such waits.
    """
    dup_of = np.full(n, -1, dtype=np.int64)
    dup_weight = np.zeros(n, dtype=np.float64)
    if not len(left):
        return dup_of, dup_weight
    src = np.concatenate([left, right])
    dst = np.concatenate([right, left])
    KEPT, REMOVED = 1, 2
    state = np.zeros(n, dtype=np.int8)
    undecided = np.zeros(n, dtype=bool)
    undecided[src] = True
    a, b = src, dst  # edges whose two ends are undecided
    while len(a):
        blocked = np.zeros(n, dtype=bool)
        blocked[a[rank[b] < rank[a]]] = True
        new_kept = undecided & ~blocked
        state[new_kept] = KEPT
        undecided[new_kept] = False
        removed = b[new_kept[a]]
        state[removed] = REMOVED
        undecided[removed] = False
        alive = undecided[a] & undecided[b]
        a, b = a[alive], b[alive]
    state[undecided] = KEPT  # rows left without undecided neighbours
    # Each removed row names its most similar kept neighbour (ties: best ranked).
    w = np.concatenate([weight, weight])
    named = (state[src] == REMOVED) & (state[dst] == KEPT)
    src, dst, w = src[named], dst[named], w[named]
    order = np.lexsort((rank[dst], -w, src))
    src, dst, w = src[order], dst[order], w[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = src[1:] != src[:-1]
    dup_of[src[first]] = dst[first]
    dup_weight[src[first]] = w[first]
    return dup_of, dup_weight


def priority(length: np.ndarray, has_label: np.ndarray, lost: np.ndarray | None = None) -> np.ndarray:
    """Each row's position in keep priority: a row whose label did not lose first, then a labelled row,
    then the longest text, then the first seen."""
    n = len(length)
    keys = (np.arange(n), -length, ~has_label) + ((lost,) if lost is not None else ())
    return np.argsort(np.lexsort(keys)).astype(np.int64)


def exact_reps(exact: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Per row, the best-ranked row of its exact group (same normalized-text hash)."""
    n = len(exact)
    rep = np.arange(n, dtype=np.int64)
    order = np.lexsort((rank, exact))
    h = exact[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = h[1:] != h[:-1]
    group_first = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    rep[order] = order[group_first]
    return rep


REASONS = {1: "exact_duplicate", 2: "near_duplicate", 3: "label_conflict"}
EVIDENCE = "label_prob"  # the label_noise stage's column: out-of-sample probability of the row's label


# ---------------------------------------------------------------------------------------------------------


class DedupeStage(Stage):
    name = "dedupe"
    Config = Config
    whole_stream = True
    adds = (schemas.CLUSTER_ID,)
    summary_type = DedupeSummary

    MAX_CONFLICT_EXAMPLES = 10
    MAX_EXAMPLE_ROWS = 10

    @classmethod
    def check_section(cls, section: Config, config_dir, config) -> None:
        section.for_kind(config.record_kind)

    def run(self, inputs: StageInput | None) -> Iterator[StageOutput]:
        cfg: Config = self.config
        key, shingle = cfg.for_kind(self.ctx.kind)
        if inputs is None or inputs.num_rows == 0:
            self.stats.update(exact_removed=0, near_removed=0, candidate_pairs=0, verified_pairs=0,
                              clusters=0, label_conflict_clusters=0, label_conflict_examples=[])
            self._summary = self._summarize(np.zeros(0, np.int64), np.zeros(0, np.int8), 0, [])
            return
        bands, rows = cfg.bands_rows() if cfg.near else (0, 0)
        params = SketchParams(shingle, cfg.ngram, cfg.num_perm, cfg.seed, bands, rows, self.ctx.kind.name, key,
                              cfg.char_ngram, cfg.punctuation_for(self.ctx.kind))
        # Where the search runs is the executor's choice (a process pool here, a Ray cluster there); the
        # results are the same. Pass 1 spills each row's shingle set; verification reads back the candidates'.
        index = self.ctx.near_duplicates or LocalNearDuplicates
        with tempfile.TemporaryDirectory(prefix="dedupe-") as tmp, \
                index(params, workers=self.ctx.workers, spill_dir=tmp) as search:
            sketched = search.sketch(inputs, self.ctx.progress)
            state = {**sketched, **self._labels_and_ids(inputs)}
            n = len(state["exact"])
            rank = priority(state["length"], state["has_label"])
            rep = exact_reps(state["exact"], rank) if cfg.exact else np.arange(n, dtype=np.int64)
            is_rep = rep == np.arange(n)

            left = right = np.zeros(0, np.int64)
            weight = np.zeros(0, np.float64)
            n_candidates, largest_bucket = 0, 0
            if cfg.near:
                left, right, weight, n_candidates, largest_bucket = search.edges(np.flatnonzero(is_rep), cfg.threshold)

        # Labels first (dedupe.label_conflicts): rows of one text whose label loses (`lost`: 1 by majority,
        # 2 by the label evidence) or ties without evidence (3) leave; the rest are deduplicated as before.
        verdict = None
        if cfg.label_conflicts == "hybrid" and (state["label_code"] >= 0).any():
            verdict = resolve_labels(rep, left, right, weight, state["label_code"], state["label_prob"])
            lost = verdict.lost > 0
            if lost.any():
                rank = priority(state["length"], state["has_label"], lost)
                new_rep = exact_reps(state["exact"], rank) if cfg.exact else np.arange(n, dtype=np.int64)
                left, right = new_rep[left], new_rep[right]  # an exact group's members share its shingle set
                rep = new_rep
                is_rep = rep == np.arange(n)
        all_left, all_right = left, right  # clusters are drawn over every verified pair
        if verdict is not None:
            labels = state["label_code"]
            # A near copy with another label is another example; a row that lost its label is no one's kept row.
            differ = (labels[left] >= 0) & (labels[right] >= 0) & (labels[left] != labels[right])
            ok = ~differ & ~lost[left] & ~lost[right]
            left, right, weight = left[ok], right[ok], weight[ok]

        dup_of, dup_jaccard = greedy_keep(rank, left, right, weight, n)
        reason = np.zeros(n, dtype=np.int8)  # 0 kept, 1 exact duplicate, 2 near duplicate, 3 label conflict
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
        label_details: dict[int, dict] = {}
        if verdict is not None and lost.any():
            label_details = route_lost(verdict, rep, rank, dup_of, dup_jaccard, reason, state["label_names"])

        # Clusters: components over exact groups and verified edges, numbered by first appearance (a
        # component is labelled with its first row, so the sorted labels are in order of appearance).
        component = connected_components(n, np.concatenate([all_left, rep]), np.concatenate([all_right, np.arange(n)]))
        cluster_id = np.unique(component, return_inverse=True)[1].astype(np.int64)

        conflicts, examples = self._label_conflicts(cluster_id, state["label_code"])
        example_rows = {int(r): None for ex in examples for r in ex}
        example_order = np.array(sorted(example_rows), dtype=np.int64)
        ids = state["ids"]
        referenced = np.unique(dup_of[(dup_of >= 0) & (reason != 3)])
        referenced_id = dict(zip(referenced.tolist(), ids.take(pa.array(referenced)).to_pylist()))
        del state

        output = self.ctx.kind.schema(schemas.CLUSTER_ID)
        start = 0
        for batch in inputs.batches():
            m = batch.num_rows
            sl = slice(start, start + m)
            keep = reason[sl] == 0
            kept = batch.filter(pa.array(keep))
            if "cluster_id" in kept.schema.names:
                kept = kept.drop_columns(["cluster_id"])
            kept = kept.append_column("cluster_id", pa.array(cluster_id[sl][keep], pa.int64()))
            kept = schemas.conform(kept, output)  # cluster_id beside the row's own fields, signals after
            rejected = None
            removed = np.flatnonzero(~keep)
            if len(removed):
                rows = batch.take(pa.array(removed))
                g = removed + start
                details = [
                    {"cluster_id": int(cluster_id[i]), **label_details[int(i)]} if reason[i] == 3 else
                    {"duplicate_of": referenced_id[int(dup_of[i])], "jaccard": round(float(dup_jaccard[i]), 4),
                     "cluster_id": int(cluster_id[i]), **label_details.get(int(i), {})}
                    for i in g
                ]
                reasons = [REASONS[r] for r in reason[g].tolist()]
                rejected = rejected_rows(rows, self.name, reasons, details, kind=self.ctx.kind)
            wanted = example_order[(example_order >= start) & (example_order < start + m)].tolist()
            if wanted:  # label conflicts: only a kind with labels has them
                local = pa.array([i - start for i in wanted])
                for i, id_, text, label in zip(wanted, batch.column("id").take(local).to_pylist(),
                                               batch.column("text").take(local).to_pylist(),
                                               batch.column("label").take(local).to_pylist()):
                    example_rows[i] = {"id": id_, "text": text, "label": label,
                                       "kept": bool(reason[i] == 0)}
            start += m
            yield StageOutput(kept=kept if kept.num_rows else None, rejected=rejected)

        sizes = np.bincount(cluster_id)
        conflict_examples = [
            {"cluster_id": int(cluster_id[ex[0]]), "rows": [example_rows[int(r)] for r in ex]} for ex in examples
        ]
        self._summary = self._summarize(cluster_id, reason, conflicts, conflict_examples)
        self.stats.update(
            label_conflicts=cfg.label_conflicts,
            labels_decided=verdict.decided() if verdict is not None else {},
            label_conflict_removed=int((reason == 3).sum()),
            exact_removed=int((reason == 1).sum()),
            near_removed=int((reason == 2).sum()),
            candidate_pairs=int(n_candidates),
            verified_pairs=int(len(left)),
            largest_lsh_bucket=largest_bucket,
            clusters=int((sizes > 1).sum()),
            rows_in_clusters=int(sizes[sizes > 1].sum()),
            lsh_bands_rows=list(cfg.bands_rows()) if cfg.near else None,
            label_conflict_clusters=conflicts,
            label_conflict_examples=conflict_examples,
        )

    def summarize(self) -> DedupeSummary | None:
        return getattr(self, "_summary", None)

    def _summarize(self, cluster_id: np.ndarray, reason: np.ndarray, conflicts: int,
                   examples: list[dict]) -> DedupeSummary:
        cfg: Config = self.config
        key, shingle = cfg.for_kind(self.ctx.kind)
        sizes = np.bincount(cluster_id) if len(cluster_id) else np.zeros(0, np.int64)
        size, count = np.unique(sizes[sizes > 0], return_counts=True)
        return DedupeSummary(
            similarity=Similarity(shingle=shingle, ngram=cfg.ngram, threshold=cfg.threshold, key=key,
                                  char_ngram=cfg.char_ngram if shingle == "auto" else None,
                                  punctuation=cfg.punctuation_for(self.ctx.kind),
                                  labels_distinguish=cfg.label_conflicts == "hybrid" and self.ctx.kind.label_field is not None),
            exact_removed=int((reason == 1).sum()),
            near_removed=int((reason == 2).sum()),
            cluster_sizes=dict(zip(size.tolist(), count.tolist())),
            label_conflict_clusters=int(conflicts),
            label_conflict_examples=[LabelConflict(cluster_id=ex["cluster_id"], rows=[ConflictRow(**r) for r in ex["rows"]])
                                     for ex in examples],
        )

    # -- passes ------------------------------------------------------------------------------------------

    def _labels_and_ids(self, inputs: StageInput) -> dict[str, Any]:
        """Per row: label presence, a run-wide label code (-1: none) and the id (a light read, no text)."""
        has_label, label_code, ids, label_prob = [], [], [], []
        labels: dict[str, int] = {}
        label_field = self.ctx.kind.label_field
        # label_prob: the label_noise stage's evidence (absent when that stage did not run or had no model).
        first = next(iter(inputs.batches()), None)  # the stream's columns (StageInput has no schema)
        evidence = [EVIDENCE] if label_field and first is not None and EVIDENCE in first.schema.names else []
        for batch in inputs.batches(columns=["id", label_field, *evidence] if label_field else ["id"]):
            label_prob.append(batch.column(EVIDENCE).to_numpy(zero_copy_only=False).astype(np.float64)
                              if EVIDENCE in batch.schema.names else np.full(batch.num_rows, np.nan))
            label = batch.column(label_field).cast(pa.string()) if label_field else pa.nulls(batch.num_rows, pa.string())
            has_label.append(~label.is_null().to_numpy(zero_copy_only=False))
            encoded = pc.dictionary_encode(label)
            # Batch-local codes → run-wide codes; the appended -1 is what a null (index -1) maps to.
            mapping = np.array([labels.setdefault(v, len(labels)) for v in encoded.dictionary.to_pylist()] + [-1],
                               dtype=np.int32)
            label_code.append(mapping[encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)])
            ids.append(batch.column("id"))
        return {
            "has_label": np.concatenate(has_label).astype(bool),
            "label_code": np.concatenate(label_code),
            "ids": pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in ids]),
            "label_prob": np.concatenate(label_prob) if label_prob else np.zeros(0),
            "label_names": list(labels),
        }

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
