"""The corruption recipe of the outcome benchmark: a clean labelled training set made dirty the way collected
data is, with every planted row recorded (ground truth).

    python benchmarks/outcome/corrupt.py --dataset trec --flip-rate 0.1 --seed 0 --out /tmp/trec-f10

From a clean training set of n rows (text, label), with a seeded `numpy` generator (the same seed gives the
same file, byte for byte):

1. **Label flips** — `flip_rate · n` rows (default 10 %; 5 % and 20 % are the other measured rates), drawn
   without replacement, get a label drawn uniformly from the *other* labels (kind `flip`; the rest keep
   theirs, kind `original`).
2. **Extra duplicates** — `dup_rate · n` new rows (default 15 %), each a copy of a different clean row
   (drawn without replacement, flipped ones included), in four equal shares:
   - `dup_verbatim`: the text byte for byte;
   - `dup_case_punct`: a case and/or punctuation variant (lower / upper / title case, the final
     punctuation removed, changed or doubled, all punctuation removed; always a different string);
   - `dup_edit1` / `dup_edit2`: one or two word edits (a word deleted, a word inserted, or a word replaced;
     inserted and replacing words are drawn from the clean set's own vocabulary).
   Half of the duplicates (`dup_wrong_share`, drawn per row) carry a wrong label — uniformly one of the labels
   other than the source row's *true* label — and the rest the true label (so a correct copy of a flipped
   row disagrees with it).
3. **Junk** — `junk_rate · n` new rows (default 5 %), in six equal shares: `junk_na` ("n/a", "N/A", "#N/A",
   ...), `junk_null` ("null", "None", "NaN", ...), `junk_html` (markup snippets: a footer link, an empty
   table, an image tag, an unsubscribe line, ...), `junk_url` (a URL and nothing else), `junk_spam` (one
   token repeated 4–30 times), `junk_foreign` (a non-English sentence from the shared Tatoeba set, as
   stored there: lowercased and tokenized). A junk row's label is drawn from the clean set's label
   distribution (junk is labelled by whatever process labelled the rest).

Then all rows are shuffled (so a copy may come before its source) and given opaque ids `r000000`, ... in
file order: nothing in a row says how it was made. The ground truth (`truth.parquet`) has one row per
corrupted row: `id`, `kind`, `group` (the clean row's index — shared by a row and its planted copies; -1
for junk), `true_label` (null for junk), `label` (as given), `wrong_label` (given ≠ true; false for junk),
`detail` (the variant or edits made). With it a script counts the planted corruptions left in any published
version by id (`sftpipe` keeps ids when the config names `id_field: id`).
"""
from __future__ import annotations

import argparse
import json
import re
import string
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RECIPE_VERSION = 1  # part of every cached file name: a changed recipe never reuses an old file

DUP_KINDS = ("dup_verbatim", "dup_case_punct", "dup_edit1", "dup_edit2")
JUNK_KINDS = ("junk_na", "junk_null", "junk_html", "junk_url", "junk_spam", "junk_foreign")
KINDS = ("original", "flip", *DUP_KINDS, *JUNK_KINDS)

NA = ["n/a", "N/A", "NA", "n.a.", "#N/A", "N/A.", "-", "--", "?"]
NULL = ["null", "NULL", "None", "none", "nil", "NaN", "nan", "undefined", "(null)", "[deleted]"]
HTML = [
    '<div class="footer"><a href="{url}">Click here</a></div>',
    '<p><br/></p>',
    '<table><tr><td>&nbsp;</td><td>&nbsp;</td></tr></table>',
    '<img src="{url}" alt="" width="1" height="1"/>',
    '<span style="font-size:10px">Unsubscribe</span> | <a href="{url}">View in browser</a>',
    '<a href="{url}">Read more &raquo;</a>',
    '<div id="{word}"></div>',
    '<b>{word}</b>',
    '<!-- {word} --><br><br>',
    '<ul><li><a href="{url}">Home</a></li><li><a href="{url}">Contact</a></li></ul>',
]
DOMAINS = ["example.com", "bit.ly", "tinyurl.com", "news-site.org", "shop.example.net", "t.co", "mail.example.org"]
SPAM_TOKENS = ["lol", "buy", "click", "free", "!!!", "$$$", "ok", "haha", "xxx", "win", "test", ".", "aaaa"]


@dataclass(frozen=True)
class Recipe:
    flip_rate: float = 0.10
    dup_rate: float = 0.15
    dup_wrong_share: float = 0.5
    junk_rate: float = 0.05
    seed: int = 0

    def tag(self) -> str:
        """Short name used in file and dataset names, e.g. f10-d15-j5-s0."""
        pct = lambda x: f"{x * 100:g}".replace(".", "p")  # noqa: E731
        extra = "" if self.dup_wrong_share == 0.5 else f"-w{pct(self.dup_wrong_share)}"
        return f"f{pct(self.flip_rate)}-d{pct(self.dup_rate)}-j{pct(self.junk_rate)}{extra}-s{self.seed}-r{RECIPE_VERSION}"


# ---------------------------------------------------------------------------------------------------------
# Variants


def _other_label(rng: np.random.Generator, labels: list[str], label: str) -> str:
    others = [x for x in labels if x != label]
    return others[int(rng.integers(len(others)))]


_FINAL_PUNCT = re.compile(r"[\s.!?,;:]*$")


def case_punct_variant(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """A different string whose words are the same up to case and punctuation."""
    ops = ["lower", "upper", "title", "strip_final", "change_final", "double_final", "no_punct"]
    for _ in range(20):
        picked = sorted(rng.choice(len(ops), size=int(rng.integers(1, 3)), replace=False).tolist())
        out = text
        for k in picked:
            op = ops[k]
            if op == "lower":
                out = out.lower()
            elif op == "upper":
                out = out.upper()
            elif op == "title":
                out = out.title()
            elif op == "strip_final":
                out = _FINAL_PUNCT.sub("", out)
            elif op == "change_final":
                out = _FINAL_PUNCT.sub("", out) + ["!", "?", ".", "!!", "?!", "..."][int(rng.integers(6))]
            elif op == "double_final":
                out = out.rstrip() + out.rstrip()[-1:] * 2 if out.rstrip() else out
            elif op == "no_punct":
                out = " ".join(out.translate(str.maketrans("", "", string.punctuation)).split())
        if out != text and out.strip():
            return out, "+".join(ops[k] for k in picked)
    return text.upper() if text.upper() != text else text + "!", "fallback"


def word_edits(text: str, n_edits: int, rng: np.random.Generator, vocabulary: list[str]) -> tuple[str, str]:
    """`n_edits` single-word edits at distinct positions: delete, insert or replace (a vocabulary word)."""
    words = text.split()
    done = []
    for _ in range(n_edits):
        ops = ["insert", "replace"] + (["delete"] if len(words) > 2 else [])
        op = ops[int(rng.integers(len(ops)))]
        i = int(rng.integers(len(words)))
        if op == "delete":
            done.append(f"delete {words[i]!r}")
            del words[i]
        elif op == "insert":
            w = vocabulary[int(rng.integers(len(vocabulary)))]
            words.insert(i, w)
            done.append(f"insert {w!r}")
        else:
            w = vocabulary[int(rng.integers(len(vocabulary)))]
            while w == words[i]:
                w = vocabulary[int(rng.integers(len(vocabulary)))]
            done.append(f"replace {words[i]!r} -> {w!r}")
            words[i] = w
    return " ".join(words), "; ".join(done)


def junk_text(kind: str, rng: np.random.Generator, vocabulary: list[str], foreign: list[str]) -> tuple[str, str]:
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    url = f"http{'s' if rng.random() < 0.7 else ''}://{'www.' if rng.random() < 0.5 else ''}{pick(DOMAINS)}/" + \
        "/".join(pick(vocabulary).lower().strip(string.punctuation) or "x" for _ in range(int(rng.integers(0, 3)))) + \
        (f"?id={int(rng.integers(1, 10**6))}" if rng.random() < 0.5 else "")
    if kind == "junk_na":
        return pick(NA), "na"
    if kind == "junk_null":
        return pick(NULL), "null"
    if kind == "junk_html":
        template = pick(HTML)
        return template.format(url=url, word=pick(vocabulary)), "html"
    if kind == "junk_url":
        return url, "url"
    if kind == "junk_spam":
        token = pick(SPAM_TOKENS) if rng.random() < 0.5 else pick(vocabulary)
        n = int(rng.integers(4, 31))
        return " ".join([token] * n), f"{token!r} x{n}"
    if kind == "junk_foreign":
        return foreign.pop(), "foreign"
    raise ValueError(kind)


def _vocabulary(texts: list[str]) -> list[str]:
    words = sorted({w for t in texts for w in t.split() if any(c.isalpha() for c in w) and len(w) > 1})
    return words


def _shares(total: int, kinds: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """`total` kind names, as equal as whole rows allow (remainders to random kinds), in random order."""
    base, extra = divmod(total, len(kinds))
    counts = [base] * len(kinds)
    for k in rng.choice(len(kinds), size=extra, replace=False).tolist():
        counts[k] += 1
    out = [k for k, c in zip(kinds, counts) for _ in range(c)]
    return [out[i] for i in rng.permutation(len(out))]


# ---------------------------------------------------------------------------------------------------------


def corrupt(clean: pa.Table, labels: list[str], foreign: list[str], recipe: Recipe) -> tuple[pa.Table, pa.Table]:
    """(corrupted rows: id, text, label; truth: id, kind, group, true_label, label, wrong_label, detail)."""
    rng = np.random.default_rng(recipe.seed)
    texts = clean.column("text").to_pylist()
    true = clean.column("label").to_pylist()
    n = len(texts)
    vocabulary = _vocabulary(texts)
    rows: list[dict] = []

    # 1. flips
    flipped = set(rng.choice(n, size=round(recipe.flip_rate * n), replace=False).tolist())
    given = list(true)
    for i in range(n):
        if i in flipped:
            given[i] = _other_label(rng, labels, true[i])
        rows.append({"text": texts[i], "kind": "flip" if i in flipped else "original", "group": i,
                     "true_label": true[i], "label": given[i], "detail": ""})

    # 2. duplicates
    n_dup = round(recipe.dup_rate * n)
    sources = rng.choice(n, size=n_dup, replace=False).tolist()
    for src, kind in zip(sources, _shares(n_dup, DUP_KINDS, rng)):
        text = texts[src]
        if kind == "dup_verbatim":
            new, detail = text, "verbatim"
        elif kind == "dup_case_punct":
            new, detail = case_punct_variant(text, rng)
        else:
            new, detail = word_edits(text, 1 if kind == "dup_edit1" else 2, rng, vocabulary)
        wrong = rng.random() < recipe.dup_wrong_share
        label = _other_label(rng, labels, true[src]) if wrong else true[src]
        rows.append({"text": new, "kind": kind, "group": src, "true_label": true[src], "label": label,
                     "detail": detail})

    # 3. junk
    n_junk = round(recipe.junk_rate * n)
    foreign = list(foreign)
    rng.shuffle(foreign)
    values, counts = np.unique(np.array(true, dtype=object), return_counts=True)
    prior = counts / counts.sum()
    for kind in _shares(n_junk, JUNK_KINDS, rng):
        text, detail = junk_text(kind, rng, vocabulary, foreign)
        label = str(values[int(rng.choice(len(values), p=prior))])
        rows.append({"text": text, "kind": kind, "group": -1, "true_label": None, "label": label,
                     "detail": detail})

    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    ids = [f"r{i:06d}" for i in range(len(rows))]
    data = pa.table({"id": ids, "text": [r["text"] for r in rows], "label": [r["label"] for r in rows]})
    truth = pa.table({
        "id": ids,
        "kind": [r["kind"] for r in rows],
        "group": pa.array([r["group"] for r in rows], pa.int64()),
        "true_label": pa.array([r["true_label"] for r in rows], pa.string()),
        "label": [r["label"] for r in rows],
        "wrong_label": [r["true_label"] is not None and r["label"] != r["true_label"] for r in rows],
        "detail": [r["detail"] for r in rows],
    })
    return data, truth


def write_jsonl(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def summary(truth: pa.Table) -> dict:
    kinds = truth.column("kind").to_pylist()
    wrong = truth.column("wrong_label").to_pylist()
    out = {"rows": truth.num_rows, "kinds": {k: kinds.count(k) for k in KINDS}}
    out["wrong_label_rows"] = int(sum(wrong))
    out["wrong_label_share"] = round(sum(wrong) / truth.num_rows, 4)
    out["wrong_label_dups"] = int(sum(w for k, w in zip(kinds, wrong) if k.startswith("dup_")))
    return out


def write_corrupted(clean: pa.Table, labels: list[str], foreign: list[str], recipe: Recipe, out_dir: Path) -> dict:
    """corrupted.jsonl, truth.parquet and recipe.json into `out_dir` (skipped when already there)."""
    out_dir = Path(out_dir)
    done = out_dir / "recipe.json"
    if done.is_file():
        return json.loads(done.read_text())
    data, truth = corrupt(clean, labels, foreign, recipe)
    write_jsonl(data, out_dir / "corrupted.jsonl")
    pq.write_table(truth, out_dir / "truth.parquet")
    info = {"recipe": asdict(recipe), "recipe_version": RECIPE_VERSION, "clean_rows": clean.num_rows,
            **summary(truth)}
    done.write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> None:
    import data_sets as dsets  # noqa: PLC0415 - sibling module, see below

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(dsets.DATASETS), required=True)
    p.add_argument("--flip-rate", type=float, default=Recipe.flip_rate)
    p.add_argument("--dup-rate", type=float, default=Recipe.dup_rate)
    p.add_argument("--dup-wrong-share", type=float, default=Recipe.dup_wrong_share)
    p.add_argument("--junk-rate", type=float, default=Recipe.junk_rate)
    p.add_argument("--seed", type=int, default=Recipe.seed)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    spec = dsets.DATASETS[a.dataset]
    train, _ = spec.load()
    recipe = Recipe(a.flip_rate, a.dup_rate, a.dup_wrong_share, a.junk_rate, a.seed)
    info = write_corrupted(train, spec.labels, dsets.foreign_sentences(), recipe, a.out)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
