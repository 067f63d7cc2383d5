"""dedupe's label rule (`dedupe.label_conflicts: hybrid`): which label a text with several labels keeps.

A *text* here is a same-text group: an exact group (equal normalized text) joined with every verified pair
whose shingle sets are equal. Its label is the majority of its rows'; a tie goes to the label the label_noise
stage's evidence (`label_prob`) finds more probable; a tie without evidence is a conflict. Rows of another
label leave as duplicates of the text's kept row, their details saying which label was kept and why.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.dedupe.graph import connected_components

LOST_MAJORITY, LOST_EVIDENCE, LOST_TIE = 1, 2, 3


@dataclass
class LabelVerdict:
    """Which label each text keeps (`dedupe.label_conflicts: hybrid`)."""

    group: np.ndarray  # per row: its same-text group (exact group, or shingle sets equal)
    lost: np.ndarray  # per row: 0, or why its label lost (LOST_*)
    winner: dict[int, int]  # group → label code kept
    why: dict[int, str]  # group → how the label was chosen, in words
    counts: dict[int, dict[int, int]]  # group → label code → rows

    def decided(self) -> dict[str, int]:
        """Texts with more than one label, by how their label was chosen."""
        out: dict[str, int] = {}
        for w in self.why.values():
            k = w.split(":")[0]
            out[k] = out.get(k, 0) + 1
        return out


def resolve_labels(rep: np.ndarray, left: np.ndarray, right: np.ndarray, weight: np.ndarray,
                   label_code: np.ndarray, label_prob: np.ndarray) -> LabelVerdict:
    """The label each text with several labels keeps: the majority of its rows; a tie goes to the label
    whose rows have the higher mean out-of-sample probability of their label (`label_prob`, the label_noise
    stage's evidence: the rows share one text, so this compares p(A | text) with p(B | text)); a tie with no
    evidence is a conflict (every labelled row of the text leaves as `label_conflict`)."""
    n = len(rep)
    same = weight >= 1 - 1e-9
    group = connected_components(n, np.concatenate([rep, left[same]]), np.concatenate([np.arange(n), right[same]]))
    lost = np.zeros(n, dtype=np.int8)
    winner, why, counts = {}, {}, {}
    labelled = np.flatnonzero(label_code >= 0)
    width = int(label_code.max()) + 2
    key = group[labelled].astype(np.int64) * width + label_code[labelled]
    uniq, cnt = np.unique(key, return_counts=True)
    gs, first, distinct = np.unique(uniq // width, return_index=True, return_counts=True)
    multi = distinct > 1
    if not multi.any():
        return LabelVerdict(group, lost, winner, why, counts)
    in_multi = np.isin(group[labelled], gs[multi])
    rows_of = _rows_by_group(labelled[in_multi], group[labelled[in_multi]])
    for g, f, d in zip(gs[multi].tolist(), first[multi].tolist(), distinct[multi].tolist()):
        labs = (uniq[f:f + d] % width).tolist()
        c = dict(zip(labs, cnt[f:f + d].tolist()))
        counts[g] = c
        top = max(c.values())
        tied = [lab for lab in labs if c[lab] == top]
        members = rows_of[g]
        if len(tied) == 1:
            winner[g], how, code = tied[0], f"majority: {top} of {sum(c.values())} rows", LOST_MAJORITY
        else:
            mean_p = {lab: float(np.nanmean(label_prob[members[label_code[members] == lab]]))
                      if np.isfinite(label_prob[members[label_code[members] == lab]]).any() else np.nan
                      for lab in tied}
            ranked = sorted((p, lab) for lab, p in mean_p.items() if np.isfinite(p))
            if len(ranked) < len(tied) or (len(ranked) > 1 and ranked[-1][0] == ranked[-2][0]):
                lost[members] = LOST_TIE
                why[g] = f"tie without label evidence: {top} rows each"
                continue
            winner[g], code = ranked[-1][1], LOST_EVIDENCE
            how = (f"label evidence: a tie ({top} rows each) goes to the label with the higher out-of-sample "
                   f"probability ({ranked[-1][0]:.3f} > {ranked[-2][0]:.3f})")
        why[g] = how
        lost[members[label_code[members] != winner[g]]] = code
    return LabelVerdict(group, lost, winner, why, counts)



def route_lost(verdict: LabelVerdict, rep: np.ndarray, rank: np.ndarray, dup_of: np.ndarray,
                dup_jaccard: np.ndarray, reason: np.ndarray, label_names: list[str]) -> dict[int, dict]:
    """Rows whose label lost name the kept row of their text (its best-ranked row with the winning label,
    or the row that one was removed for); a tie without evidence is a `label_conflict`. Returns the
    details each such row adds to its rejected row: the label kept and why."""
    out: dict[int, dict] = {}
    lost_rows = np.flatnonzero(verdict.lost > 0)
    # The anchor of each group: its best-ranked row that did not lose.
    stay = np.flatnonzero(np.isin(verdict.group, list(verdict.winner)) & (verdict.lost == 0))
    stay = stay[np.lexsort((rank[stay], verdict.group[stay]))]
    firsts = np.ones(len(stay), dtype=bool)
    firsts[1:] = verdict.group[stay][1:] != verdict.group[stay][:-1]
    anchor = dict(zip(verdict.group[stay][firsts].tolist(), stay[firsts].tolist()))
    for i in lost_rows.tolist():
        g = int(verdict.group[i])
        labels = {label_names[k]: v for k, v in verdict.counts[g].items()}
        if verdict.lost[i] == LOST_TIE:
            reason[i], dup_of[i], dup_jaccard[i] = 3, -1, 0.0
            out[i] = {"labels": labels, "label_decided_by": verdict.why[g]}
            continue
        a = anchor[g]
        target = a if reason[a] == 0 else int(dup_of[a])
        dup_of[i], dup_jaccard[i] = target, 1.0 if reason[a] == 0 else dup_jaccard[a]
        reason[i] = 1 if rep[i] == rep[target] else 2
        out[i] = {"label_kept": label_names[verdict.winner[g]], "labels": labels,
                  "label_decided_by": verdict.why[g]}
    return out


def _rows_by_group(rows: np.ndarray, groups: np.ndarray) -> dict[int, np.ndarray]:
    """{group: its rows, in the order given} (a numpy group-by: pandas would cost dedupe's start-up)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups, sorted_rows = groups[order], rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]) if len(rows) else np.array([], np.int64)
    return {int(g): part for g, part in zip(sorted_groups[starts], np.split(sorted_rows, starts[1:]))}
