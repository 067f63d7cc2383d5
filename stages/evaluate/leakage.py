"""leakage: near duplicates of train rows in validation, test, and the previous version's test split.

What is compared is what dedupe compared: the record kind's dedupe key (classification's text, a
generation record's prompt, a conversation), with the same shingling.

MinHash candidates (LSH bands tuned at `leakage.lsh_threshold`), each verified by the exact Jaccard of
shingle sets — the dedupe stage's own primitives (`pipeline.minhash`). Shingling and threshold default to
what dedupe called similar (its `Similarity`, handed on in `DedupeSummary`), so a version the dedupe stage
made clean is clean here too. The pairs go to `quality/leakage.parquet`.

Exact and bounded: every validation / test / previous-test row is compared with every train row, but the
train split is read and sketched once, a chunk of rows at a time, against the sketches of the (smaller)
other splits held in memory; candidate pairs are only ever pairs across the two sides. Memory is the other
splits' sketches plus one chunk's; time is one sketch of each row.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import minhash
from schemas.summaries import DedupeSummary
from stages.evaluate.candidate import Candidate
from stages.evaluate.config import Config, Leakage
from stages.evaluate.evidence import QUALITY_DIR, write_table
from stages.evaluate.result import Bound, CheckResult

LEAKAGE_SCHEMA = pa.schema(
    [
        pa.field("against", pa.string()),  # validation / test / previous_test
        pa.field("id", pa.string()),  # the row in `against`
        pa.field("text", pa.string()),
        pa.field("train_id", pa.string()),  # the most similar train row
        pa.field("train_text", pa.string()),
        pa.field("jaccard", pa.float64()),
    ]
)


TRAIN_CHUNK = 65_536  # train rows sketched at a time


def check(candidate: Candidate, config: Config) -> CheckResult:
    dedupe = candidate.summaries.get(DedupeSummary)
    cfg = config.leakage.resolved(dedupe.similarity if dedupe is not None else None)
    out = leakage(candidate, cfg)
    write_table(out.pop("pairs"), candidate.folder / QUALITY_DIR / "leakage.parquet", LEAKAGE_SCHEMA)
    metrics = {f"leaked_{against}_rows": n for against, n in out["leaked"].items()}
    bounds = [Bound("leakage", column, max_value=config.leakage.max_leaked) for column in metrics]
    return CheckResult("leakage", out, metrics=metrics, bounds=bounds)


def near_duplicate_pairs(left: list[str], right: list[str], cfg: Leakage) -> list[tuple[int, int, float]]:
    """Every verified pair (right index, left index, Jaccard >= cfg.threshold) between two lists of texts.

    The dedupe stage's own primitives (pipeline.minhash): MinHash LSH with bands tuned at
    `cfg.lsh_threshold` gives candidate pairs, each verified by the exact Jaccard of the shingle sets.
    Passing the same list twice finds the pairs within it (each pair once, right index > left index).
    """
    if not left or not right:
        return []
    same = right is left
    texts = pa.array([t or "" for t in (left if same else [*left, *right])], pa.string())
    bands, rows = minhash.bands_rows(cfg.lsh_threshold, cfg.num_perm)
    _, keys, sets, counts = minhash.sketch(texts, cfg.shingle, cfg.ngram, cfg.num_perm, 1, bands, rows,
                                           cfg.char_ngram, cfg.punctuation)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    lo, hi, _ = minhash.candidate_pairs(keys, np.arange(len(texts)))
    shift = 0 if same else len(left)
    if not same:  # only pairs across the two lists
        across = (lo < shift) & (hi >= shift)
        lo, hi = lo[across], hi[across]
    jac = minhash.jaccard(sets, offsets, lo, hi, cfg.threshold)
    ok = np.nan_to_num(jac, nan=-1.0) >= cfg.threshold
    return sorted((int(j) - shift, int(i), float(x)) for i, j, x in zip(lo[ok], hi[ok], jac[ok]))


def near_duplicates(left: list[str], right: list[str], cfg: Leakage) -> list[tuple[int, int, float]]:
    """For each text of `right` with a near duplicate in `left`: (right index, most similar left index, Jaccard)."""
    best: dict[int, tuple[int, float]] = {}
    for j, i, jac in near_duplicate_pairs(left, right, cfg):
        if j not in best or jac > best[j][1]:
            best[j] = (i, jac)
    return [(j, i, jac) for j, (i, jac) in sorted(best.items())]


def _sketch(texts: pa.Array, cfg: Leakage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(band keys: rows × bands, shingle sets flattened, their offsets) of some texts."""
    bands, rows = minhash.bands_rows(cfg.lsh_threshold, cfg.num_perm)
    texts = pc.fill_null(texts.cast(pa.string()), "")
    _, keys, sets, counts = minhash.sketch(texts, cfg.shingle, cfg.ngram, cfg.num_perm, 1, bands, rows, cfg.char_ngram,
                                           cfg.punctuation)
    return keys, sets, np.concatenate([[0], np.cumsum(counts)])


def cross_pairs(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct (left row, right row) sharing a band key (keys: rows × bands), sorted: pairs across
    the two sides only, found by binary search of each left key among the sorted right keys."""
    codes = []
    m = len(right)
    for band in range(left.shape[1]):
        order = np.argsort(right[:, band], kind="stable")
        sorted_right = right[order, band]
        lo = np.searchsorted(sorted_right, left[:, band], side="left")
        hits = np.searchsorted(sorted_right, left[:, band], side="right") - lo
        if not hits.any():
            continue
        li = np.repeat(np.arange(len(left), dtype=np.int64), hits)
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(hits)[:-1]]), hits)
        ri = order[starts + np.arange(len(li))]
        codes.append(li * m + ri)
    if not codes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = minhash.distinct(np.concatenate(codes))
    return codes // m, codes % m


def leakage(candidate: Candidate, cfg: Leakage) -> dict[str, Any]:
    """Near duplicates of train rows in validation, test and the previous version's test split: per row of
    those, its most similar train row, on the record kind's dedupe key."""
    leaked: dict[str, int] = {}
    pairs: list[dict[str, Any]] = []
    key = cfg.key or candidate.kind.default_key
    out: dict[str, Any] = {"ran": cfg.enabled, "threshold": cfg.threshold, "key": key,
                           "shingle": f"{cfg.shingle} {cfg.ngram}-grams" if cfg.shingle != "auto" else
                           f"auto: word {cfg.ngram}-grams, character {cfg.char_ngram}-grams for CJK / Thai"}
    if not cfg.enabled:
        out.update(leaked=leaked, pairs=pairs)
        return out

    def whole(split: str, folder: Path | None = None) -> tuple[pa.Array, pa.Array]:
        parts = list(candidate.view_batches(split, key, key=True, folder=folder))
        if not parts:
            return pa.array([], pa.string()), pa.array([], pa.string())
        return (pa.concat_arrays([i.cast(pa.string()) for i, _ in parts]),
                pa.concat_arrays([t.cast(pa.string()) for _, t in parts]))

    others = {"validation": whole("validation"), "test": whole("test")}
    previous_dir = candidate.parent
    if cfg.previous_version and previous_dir is not None and (Path(previous_dir) / "test.parquet").exists():
        others["previous_test"] = whole("test", Path(previous_dir))
        out["previous_version"] = str(previous_dir)
    names = list(others)
    right_ids = pa.concat_arrays([others[n][0] for n in names])
    right_texts = pa.concat_arrays([others[n][1] for n in names])
    right_keys, right_sets, right_offsets = _sketch(right_texts, cfg)
    # A near copy with another label is another example (dedupe.label_conflicts: hybrid kept it): no leak.
    label_field = candidate.kind.label_field
    by_label = bool(cfg.labels_distinguish and label_field)
    out["labelled_pairs_apart"] = by_label
    if by_label:
        def labels_of(split: str, folder: Path | None = None) -> dict[str, Any]:
            path = (folder or candidate.folder) / f"{split}.parquet"
            if not path.exists() or label_field not in pq.read_schema(path).names:
                return {}
            t = pq.read_table(path, columns=["id", label_field])
            return dict(zip(t.column("id").to_pylist(), t.column(label_field).to_pylist()))

        right_label_of: dict[str, Any] = {}
        for n in names:
            right_label_of.update(labels_of("test", Path(previous_dir)) if n == "previous_test" else labels_of(n))
        right_labels = [right_label_of.get(i) for i in right_ids.to_pylist()]
        train_labels = labels_of("train")
    # Per row of the other splits: the best train row so far (Jaccard, train id, train text).
    best: dict[int, tuple[float, str, str]] = {}
    for ids, texts in candidate.view_batches("train", key, key=True, batch_size=TRAIN_CHUNK):
        if not len(texts) or not len(right_texts):
            continue
        keys, sets, offsets = _sketch(texts, cfg)
        li, ri = cross_pairs(keys, right_keys)
        if not len(li):
            continue
        n = len(texts)
        all_sets = np.concatenate([sets, right_sets])
        all_offsets = np.concatenate([offsets, offsets[-1] + right_offsets[1:]])
        jac = minhash.jaccard(all_sets, all_offsets, li, ri + n, cfg.threshold)
        ok = np.nan_to_num(jac, nan=-1.0) >= cfg.threshold
        for i, j, x in sorted(zip(li[ok].tolist(), ri[ok].tolist(), jac[ok].tolist()), key=lambda t: (t[1], t[0])):
            if by_label and train_labels.get(ids[i].as_py()) != right_labels[j]:
                continue
            if j not in best or x > best[j][0]:  # ties keep the earlier train row
                best[j] = (x, str(ids[i].as_py()), texts[i].as_py() or "")
    bounds = np.cumsum([0] + [len(others[n][1]) for n in names])
    for k, against in enumerate(names):
        found = sorted((j, best[j]) for j in best if bounds[k] <= j < bounds[k + 1])
        if against == "previous_test":
            # A row that is in this version's test split and was in the previous one is no leak by itself;
            # what matters is a train row resembling a test row of before: count distinct train rows.
            leaked[against] = len({train_id for _, (_, train_id, _) in found})
        else:
            leaked[against] = len(found)
        for j, (jac, train_id, train_text) in found:
            pairs.append({"against": against, "id": str(right_ids[j].as_py()), "text": right_texts[j].as_py() or "",
                          "train_id": train_id, "train_text": train_text, "jaccard": round(float(jac), 6)})
    out.update(leaked=leaked, pairs=pairs, examples=pairs[:10])
    return out
