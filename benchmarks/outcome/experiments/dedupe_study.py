"""Dedupe on short labelled texts: which shingling finds the planted copies, and which row to keep.

    python benchmarks/outcome/experiments/dedupe_study.py [--datasets trec sms]

Input: the rows that reached the dedupe stage in the pipeline arm (published rows plus the rows dedupe
removed, with the clean stage's normalized text), joined with the planted truth; and the uncorrupted
training set, to measure what a scheme removes from real data that has no planted copy.

Similarity is computed **exactly over all pairs** (sparse shingle-incidence products, no LSH), so the
figures are properties of the similarity definition, not of the search. Texts are normalized as the
dedupe stage does (casefold, whitespace collapsed). Schemes:

- `w5` — today: word 5-grams, a text of fewer than 5 words is one shingle; Jaccard.
- `w1`, `w2`, `w3` — word n-grams, same rule; Jaccard.
- `w5p`, `w1p` — the same over word tokens with punctuation dropped (`\\w+`), so "Who is he ?" and
  "who is he" are one text.
- `c5` — character 5-grams of the normalized text; Jaccard.
- `adaptive` — word n-grams with n = clamp(⌊(W+1)/10⌋, 1, 5), W = words of the text: the largest n at
  which one substituted word still leaves Jaccard ≥ 0.8 (a substitution breaks n of W−n+1 shingles).
  Texts of ≥ 49 words get n = 5: their pairs are exactly today's. A pair of texts with different n is
  compared with the smaller n.
- `wes` — word edit similarity for short texts: 1 − (word-level Levenshtein distance) / (words of the
  longer text), for pairs whose shorter text has < 20 words (candidates: word-unigram Jaccard ≥ 0.5, which
  every pair at similarity ≥ 0.8 satisfies); `w5` Jaccard otherwise (long texts: today's results).

For each scheme and threshold: planted copies found (a copy with an edge to its clean row or another copy
of it), per duplicate kind; edges between rows of *different* groups (not planted: natural near
duplicates, templated questions, or mistakes), and after today's greedy keep the rows removed for a row
of another group; on the clean set, the share of real rows removed.

Keep policies (on the `w5` and the recommended scheme's graph): `today` (longest, then first), `majority`
(per connected cluster the majority label wins and rows with another label go as `label_conflict`; a tie
rejects the whole cluster), `majority+model` (a tie is broken by the label-noise model's mean out-of-sample
probability of each tied label over the cluster), `keep_differing` (#16's option: a near duplicate with a
different label is kept as a different example), `hybrid` (texts identical under the scheme — similarity
1 — are one example whose label is decided by majority+model; a near duplicate with a different label is
kept, as in `keep_differing`, for the label-noise check to judge). Reported: rows kept, wrong-label and junk rows kept,
clean rows lost (common.kept_summary).
"""
from __future__ import annotations

import argparse
import re
import time
from collections import Counter

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from common import accounting, arm_version, clean_rows, corrupted, kept_summary, normalized, save

from stages.dedupe import greedy_keep  # noqa: E402  (today's keep rule, imported, not copied)

MIN_J = 0.5
_WORD = re.compile(r"\w+")


# ---------------------------------------------------------------------------------------------------------
# shingles and exact all-pairs similarity


def word_ngrams(words: list[str], n: int) -> list[str]:
    if len(words) < n:
        return [" ".join(words)]
    return [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]


def adaptive_n(n_words: int) -> int:
    return int(min(5, max(1, (n_words + 1) // 10)))


def incidence(shingle_lists: list[list[str]]) -> csr_matrix:
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for sh in shingle_lists:
        ids = sorted({vocab.setdefault(s, len(vocab)) for s in sh})
        indices += ids
        indptr.append(len(indices))
    return csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(shingle_lists), len(vocab)))


def jaccard_pairs(X: csr_matrix, min_j: float = MIN_J, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with Jaccard ≥ min_j, exactly."""
    sizes = np.asarray(X.sum(axis=1)).ravel()
    XT = X.T.tocsc()
    L, R, W = [], [], []
    for start in range(0, X.shape[0], chunk):
        inter = (X[start:start + chunk] @ XT).tocoo()
        i = inter.row + start
        j = inter.col
        keep = i < j
        i, j, v = i[keep], j[keep], inter.data[keep]
        jac = v / (sizes[i] + sizes[j] - v)
        ok = jac >= min_j - 1e-9
        L.append(i[ok]), R.append(j[ok]), W.append(jac[ok])
    return np.concatenate(L), np.concatenate(R), np.concatenate(W)


def word_levenshtein(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def scheme_edges(texts: list[str], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, similarity) of every pair with similarity ≥ MIN_J under `scheme`."""
    words = [t.split() for t in texts]
    if scheme.startswith("w") and scheme[1:].isdigit():
        return jaccard_pairs(incidence([word_ngrams(w, int(scheme[1:])) for w in words]))
    if scheme.startswith("w") and scheme.endswith("p") and scheme[1:-1].isdigit():
        tokens = [_WORD.findall(t) or [t] for t in texts]  # punctuation is not a word
        return jaccard_pairs(incidence([word_ngrams(w, int(scheme[1:-1])) for w in tokens]))
    if scheme.startswith("c") and scheme[1:].isdigit():
        n = int(scheme[1:])
        return jaccard_pairs(incidence([[t[i:i + n] for i in range(max(len(t) - n + 1, 1))] for t in texts]))
    if scheme == "adaptive":
        ns = np.array([adaptive_n(len(w)) for w in words])
        out = []
        for n in sorted(set(ns.tolist())):
            # pairs compared at n: both texts have n_i >= n and the smaller is n
            rows = np.flatnonzero(ns >= n)
            le, ri, wt = jaccard_pairs(incidence([word_ngrams(words[i], n) for i in rows]))
            le, ri = rows[le], rows[ri]
            mine = np.minimum(ns[le], ns[ri]) == n
            out.append((le[mine], ri[mine], wt[mine]))
        return tuple(np.concatenate(x) for x in zip(*out))
    if scheme == "wes":
        lengths = np.array([len(w) for w in words])
        le, ri, wt = jaccard_pairs(incidence([word_ngrams(w, 5) for w in words]))
        long_pair = np.minimum(lengths[le], lengths[ri]) >= 20
        out = [(le[long_pair], ri[long_pair], wt[long_pair])]
        cl, cr, _ = jaccard_pairs(incidence([w for w in words]))  # unigram candidates
        short = np.minimum(lengths[cl], lengths[cr]) < 20
        cl, cr = cl[short], cr[short]
        sims = np.array([1 - word_levenshtein(words[a], words[b]) / max(len(words[a]), len(words[b]), 1)
                         for a, b in zip(cl.tolist(), cr.tolist())])
        ok = sims >= MIN_J
        out.append((cl[ok], cr[ok], sims[ok]))
        return tuple(np.concatenate(x) for x in zip(*out))
    raise ValueError(scheme)


# ---------------------------------------------------------------------------------------------------------
# evaluation against the planted truth


def priority(texts: list[str]) -> np.ndarray:
    """Today's order: labelled first (all are), longest text, first seen. Position of each row."""
    n = len(texts)
    order = np.lexsort((np.arange(n), -np.array([len(t) for t in texts])))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank


def scheme_report(rows: pd.DataFrame, edges, threshold: float) -> dict:
    le, ri, wt = edges
    keep = wt >= threshold - 1e-9
    le, ri, wt = le[keep], ri[keep], wt[keep]
    group = rows["group"].to_numpy()
    kind = rows["kind"].to_numpy()
    junk = np.char.startswith(kind.astype(str), "junk_")
    same = (group[le] == group[ri]) & (group[le] >= 0)
    both_junk = junk[le] & junk[ri]
    other = ~same & ~both_junk
    n = len(rows)
    linked = np.zeros(n, bool)
    linked[le[same]] = True
    linked[ri[same]] = True
    found = {}
    for k in ("dup_verbatim", "dup_case_punct", "dup_edit1", "dup_edit2"):
        m = kind == k
        if m.any():
            found[k] = round(float(linked[m].mean()), 4)
    dup_of, _ = greedy_keep(priority(rows["ntext"].tolist()), le, ri, wt, n)
    removed = dup_of >= 0
    removed_for_other = removed & ~((group == group[np.maximum(dup_of, 0)]) & (group >= 0)) & ~(junk & junk[np.maximum(dup_of, 0)])
    real = ~junk
    return {
        "threshold": threshold, "edges": int(len(le)), "edges_planted": int(same.sum()),
        "edges_junk_junk": int(both_junk.sum()), "edges_other": int(other.sum()),
        "pair_precision": round(float((same | both_junk).mean()), 4) if len(le) else None,
        "copies_found": found, "removed": int(removed.sum()),
        "removed_for_another_group": int(removed_for_other.sum()),
        "removed_for_another_group_share_of_real_rows": round(float(removed_for_other[real].sum() / real.sum()), 4),
        "examples_other": [(rows["ntext"].iat[a], rows["ntext"].iat[b], round(float(w), 3))
                           for a, b, w in list(zip(le[other], ri[other], wt[other]))[:6]],
    }


def clean_cost(texts: list[str], edges, threshold: float) -> dict:
    le, ri, wt = edges
    keep = wt >= threshold - 1e-9
    dup_of, _ = greedy_keep(priority(texts), le[keep], ri[keep], wt[keep], len(texts))
    removed = int((dup_of >= 0).sum())
    return {"threshold": threshold, "removed": removed, "removed_share": round(removed / len(texts), 4)}


# ---------------------------------------------------------------------------------------------------------
# keep policies


def model_probs(rows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Out-of-sample class probabilities of today's label-noise model (TF-IDF + LR, 5 folds)."""
    from label_noise import out_of_sample, tfidf_features  # noqa: PLC0415

    classes = sorted(rows["label"].unique())
    y = rows["label"].map({c: k for k, c in enumerate(classes)}).to_numpy()
    return out_of_sample(tfidf_features(rows["ntext"].tolist()), y, C=100.0), classes


def apply_policy(rows: pd.DataFrame, edges, threshold: float, policy: str, probs=None, classes=None) -> np.ndarray:
    """Boolean mask of rows kept."""
    le, ri, wt = edges
    m = wt >= threshold - 1e-9
    le, ri, wt = le[m], ri[m], wt[m]
    n = len(rows)
    rank = priority(rows["ntext"].tolist())
    labels = rows["label"].to_numpy()
    if policy == "today":
        return greedy_keep(rank, le, ri, wt, n)[0] < 0
    if policy == "keep_differing":
        differ = labels[le] != labels[ri]
        return greedy_keep(rank, le[~differ], ri[~differ], wt[~differ], n)[0] < 0
    if policy == "hybrid":
        # Same text (similarity 1 under the scheme): one example, its label by majority+model. Near (< 1)
        # with a different label: a different example, both kept (the label-noise check judges them).
        exact = wt >= 1 - 1e-9
        kept_exact = apply_policy(rows, (le[exact], ri[exact], wt[exact]), 1.0, "majority+model", probs, classes)
        near = ~exact & (labels[le] == labels[ri]) & kept_exact[le] & kept_exact[ri]
        return kept_exact & (greedy_keep(rank, le[near], ri[near], wt[near], n)[0] < 0)
    graph = csr_matrix((np.ones(len(le)), (le, ri)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    allowed = np.ones(n, bool)
    for c, members in pd.Series(np.arange(n)).groupby(comp):
        members = members.to_numpy()
        if len(members) < 2:
            continue
        counts = Counter(labels[members].tolist())
        top = max(counts.values())
        winners = sorted(k for k, v in counts.items() if v == top)
        if len(winners) > 1:
            if policy == "majority+model":
                mean_p = {w: probs[members, classes.index(w)].mean() for w in winners}
                winners = [max(mean_p, key=mean_p.get)]
            else:
                allowed[members] = False  # a tie is a conflict: no label wins
                continue
        allowed[members] = labels[members] == winners[0]
    e_ok = allowed[le] & allowed[ri]
    dup_of = greedy_keep(rank, le[e_ok], ri[e_ok], wt[e_ok], n)[0]
    return allowed & (dup_of < 0)


def policy_report(rows: pd.DataFrame, kept: np.ndarray) -> dict:
    return kept_summary(rows.assign(text=rows["raw_text"]), kept)


# ---------------------------------------------------------------------------------------------------------


def dedupe_input(dataset: str, flip_rate: float) -> pd.DataFrame:
    """Rows that reached the dedupe stage of the pipeline arm, with their cleaned text and the truth."""
    vdir = arm_version(dataset, "pipeline", flip_rate)
    pub = accounting.read_published(vdir)[["id", "text", "label"]]
    rej = accounting.read_rejected(vdir)
    rej = rej[rej["stage"] == "dedupe"][["id", "text", "label"]]
    rows = pd.concat([pub, rej], ignore_index=True)
    truth = corrupted(dataset, flip_rate).rename(columns={"text": "raw_text"}).drop(columns=["label"])
    rows = rows.merge(truth, on="id", validate="1:1")
    rows = rows.sort_values("id", kind="stable").reset_index(drop=True)  # input order (ids are file positions)
    rows["ntext"] = [normalized(t) for t in rows["text"]]
    return rows


SCHEMES = ("w5", "w5p", "w3", "w2", "w1", "w1p", "c5", "adaptive", "wes")
THRESHOLDS = (0.7, 0.8, 0.9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["trec", "sms"])
    p.add_argument("--flip-rate", type=float, default=0.1)
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    p.add_argument("--policy-schemes", nargs="+", default=["w5", "w5p", "adaptive"])
    a = p.parse_args()
    payload: dict = {}
    for ds in a.datasets:
        rows = dedupe_input(ds, a.flip_rate)
        clean = [normalized(t) for t in clean_rows(ds)["text"]]
        print(f"\n## {ds}: {len(rows)} rows reached dedupe; clean set {len(clean)} rows")
        print(f"{'scheme':>9} {'t':>4} {'edges':>6} {'planted':>7} {'junk':>5} {'other':>6} {'removed':>7} "
              f"{'for other':>9} {'verb':>5} {'case':>5} {'ed1':>5} {'ed2':>5} {'clean rm':>8} {'cpu s':>6}")
        edges_by = {}
        for scheme in a.schemes:
            t0 = time.process_time()
            edges = scheme_edges(rows["ntext"].tolist(), scheme)
            clean_edges = scheme_edges(clean, scheme)
            cpu = time.process_time() - t0
            edges_by[scheme] = edges
            for t in THRESHOLDS:
                r = scheme_report(rows, edges, t)
                c = clean_cost(clean, clean_edges, t)
                payload[f"{ds}/scheme/{scheme}/{t}"] = {**r, "clean": c, "cpu_s": round(cpu, 1)}
                f = r["copies_found"]
                print(f"{scheme:>9} {t:>4} {r['edges']:>6} {r['edges_planted']:>7} {r['edges_junk_junk']:>5} "
                      f"{r['edges_other']:>6} {r['removed']:>7} {r['removed_for_another_group']:>9} "
                      f"{f.get('dup_verbatim', 0):>5.2f} {f.get('dup_case_punct', 0):>5.2f} {f.get('dup_edit1', 0):>5.2f} "
                      f"{f.get('dup_edit2', 0):>5.2f} {c['removed_share']:>8.4f} {cpu:>6.1f}")
        probs, classes = model_probs(rows)
        print(f"\n{'scheme':>9} {'t':>4} {'policy':>15} {'kept':>6} {'wrong':>6} {'share':>6} {'junk':>5} "
              f"{'lost':>10} {'extra':>6}")
        for scheme in a.policy_schemes:
            for policy in ("today", "majority", "majority+model", "keep_differing", "hybrid"):
                kept = apply_policy(rows, edges_by[scheme], 0.8, policy, probs, classes)
                r = policy_report(rows, kept)
                payload[f"{ds}/policy/{scheme}/0.8/{policy}"] = r
                print(f"{scheme:>9} {0.8:>4} {policy:>15} {r['kept']:>6} {r['wrong_label_kept']:>6} "
                      f"{r['wrong_label_share']:>6.3f} {r['junk_kept']:>5} {r['clean_rows_lost']:>10} "
                      f"{r['extra_copies_kept']:>6}")
        base = policy_report(rows, np.ones(len(rows), bool))
        payload[f"{ds}/policy/none"] = base
        print(f"{'(none)':>9} {'':>4} {'keep all':>15} {base['kept']:>6} {base['wrong_label_kept']:>6} "
              f"{base['wrong_label_share']:>6.3f} {base['junk_kept']:>5} {base['clean_rows_lost']:>10} "
              f"{base['extra_copies_kept']:>6}")
    path = save(f"dedupe_study-f{a.flip_rate:g}", payload)
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
