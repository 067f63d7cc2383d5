"""Language identification: our identifiers (and any peer that is installed) side by side, in one run.

    python benchmarks/langid/run.py                                  # fasttext and langdetect (the project's)
    bash benchmarks/langid/setup_peers.sh                            # once: pycld2, py3langid, lingua
    benchmarks/langid/.peers/bin/python benchmarks/langid/run.py     # the same, plus the peers

Data (../shared/data, or $SFTPIPE_SHARED_DATA), each text first normalized as the clean stage does:
- Tatoeba, 2,712 sentences in 17 languages with gold labels, 678 per length bucket (Kevers' buckets:
  ≤ 50 characters, 51–300, 301–3,000, > 3,000): accuracy of the top label, per bucket.
- SMS Spam Collection (5,574, all English): share called another language.
- Under an English-only rule `lang: {allowed: [en]}` (our identifiers: the rule of stages/clean/language.py):
  share of the SMS dropped, of Tatoeba's non-English sentences dropped, and of held-out English that no
  setting was chosen on — TREC questions (5,952), Alpaca instructions (999), tests/fixtures/short_english.txt.
- docs/s: one process, one core, the identifier alone (normalization not timed), best of --repeat runs.

The machine's load average is printed before and after: the figures are only comparable within a run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from stages.clean import NORMALIZERS  # noqa: E402
from stages.clean.language import LanguageConfig, identify  # noqa: E402

DATA = Path(os.environ.get("SFTPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
ISO = dict(bul="bg", ces="cs", dan="da", deu="de", ell="el", eng="en", fin="fi", fra="fr", hun="hu", ita="it",
           lit="lt", nld="nl", pol="pl", por="pt", ron="ro", spa="es", swe="sv")
BUCKETS = ["50", "300", "3000", "greater"]


def normalized(texts: list[str]) -> list[str]:
    arr = pa.array(texts, pa.string())
    for step in NORMALIZERS.values():  # the clean stage's defaults: all on, in this order
        arr = step(arr)
    return arr.to_pylist()


def load() -> dict[str, pd.DataFrame]:
    tatoeba = pd.read_parquet(DATA / "tatoeba_langid" / "test.parquet")
    tatoeba["gold"] = tatoeba["label"].map(ISO)
    alpaca = json.loads((DATA / "alpaca_en_demo" / "original" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    lines = (REPO / "tests" / "fixtures" / "short_english.txt").read_text(encoding="utf-8").splitlines()
    sets = {
        "tatoeba": tatoeba,
        "sms": pd.read_parquet(DATA / "sms_spam" / "data.parquet"),
        "trec": pd.read_parquet(DATA / "trec" / "data.parquet"),
        "alpaca": pd.DataFrame({"text": [" ".join(filter(None, [r["instruction"], r["input"]])) for r in alpaca]}),
        "short_english": pd.DataFrame({"text": [x for x in lines if x.strip() and not x.startswith("#")]}),
    }
    for frame in sets.values():
        frame["text"] = normalized(frame["text"].tolist())
    return sets


# ---------------------------------------------------------------------------------------------------------
# Identifiers: texts → top label per text (None: no answer). Ours also apply the English-only rule.


def ours(config: LanguageConfig):
    def top(texts):
        return identify(pa.array(texts, pa.string()), config)["lang"].to_pylist()

    def english_only(texts):
        return identify(pa.array(texts, pa.string()), config, allowed=["en"])["lang"].to_pylist()

    return top, english_only


def peers() -> dict:
    found = {}
    try:
        import pycld2

        def cld2(texts):
            out = []
            for t in texts:
                try:
                    ok, _, details = pycld2.detect(t)[:3]
                    out.append(details[0][1] if ok and details[0][1] != "un" else None)
                except pycld2.error:
                    out.append(None)
            return out

        found["pycld2 (CLD2)"] = cld2
    except ImportError:
        pass
    try:
        import py3langid

        found["py3langid"] = lambda texts: [py3langid.classify(t)[0] for t in texts]
    except ImportError:
        pass
    try:
        from lingua import LanguageDetectorBuilder

        for mode, builder in [("high", LanguageDetectorBuilder.from_all_languages()),
                              ("low", LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode())]:
            detector = builder.build()

            def lingua(texts, detector=detector):
                out = []
                for t in texts:
                    lang = detector.detect_language_of(t)
                    out.append(lang.iso_code_639_1.name.lower() if lang is not None else None)
                return out

            found[f"lingua ({mode} accuracy)"] = lingua
    except ImportError:
        pass
    return found


def timed(fn, texts, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(texts)
        best = min(best, time.perf_counter() - start)
    return result, len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per identifier and set (best kept); slow ones run once")
    parser.add_argument("--only", nargs="*", help="identifier names to run (substring match)")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"data sets not found at {DATA} (set SFTPIPE_SHARED_DATA)")
    sets = load()
    tatoeba = sets["tatoeba"]
    gold, bucket = tatoeba["gold"].to_numpy(), tatoeba["bucket"].astype(str).to_numpy()
    foreign = gold != "en"

    identifiers = {}
    for name, config in [("fasttext lid.176 (default)", LanguageConfig()),
                         ("fasttext lid.176, whole text", LanguageConfig(max_chars=10**9)),
                         ("langdetect (seeded)", LanguageConfig(identifier="langdetect")),
                         ("langdetect, whole text (as before)", LanguageConfig(identifier="langdetect", max_chars=10**9))]:
        identifiers[name] = ours(config)
    identifiers.update({name: (fn, None) for name, fn in peers().items()})
    if args.only:
        identifiers = {n: v for n, v in identifiers.items() if any(o in n for o in args.only)}

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    rows, rule_rows = [], []
    for name, (top, english_only) in identifiers.items():
        repeat = args.repeat if "langdetect" not in name and "lingua" not in name else 1
        pred, tat_rate = timed(top, tatoeba["text"].tolist(), repeat)
        correct = np.array(pred, dtype=object) == gold
        sms, sms_rate = timed(top, sets["sms"]["text"].tolist(), repeat)
        sms = np.array(sms, dtype=object)
        rows.append([name, f"{correct.mean():.3f}", *[f"{correct[bucket == b].mean():.3f}" for b in BUCKETS],
                     f"{np.mean([x is not None and x != 'en' for x in sms]):.1%}", f"{np.mean([x is None for x in sms]):.1%}",
                     f"{tat_rate:,.0f}", f"{sms_rate:,.0f}"])
        print(" | ".join(rows[-1]), flush=True)
        if english_only is not None:
            def dropped(texts):
                return np.array([x is not None and x != "en" for x in english_only(texts)])

            tat_drop = dropped(tatoeba["text"].tolist())
            rule_rows.append([name, f"{dropped(sets['sms']['text'].tolist()).mean():.2%}",
                              f"{tat_drop[foreign].mean():.1%}",
                              *[f"{tat_drop[foreign & (bucket == b)].mean():.1%}" for b in BUCKETS[:2]],
                              f"{tat_drop[~foreign].mean():.1%}", f"{dropped(sets['trec']['text'].tolist()).mean():.2%}",
                              f"{dropped(sets['alpaca']['text'].tolist()).mean():.2%}",
                              f"{int(dropped(sets['short_english']['text'].tolist()).sum())} / {len(sets['short_english'])}"])
            print(" | ".join(rule_rows[-1]), flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")

    print("| identifier | Tatoeba accuracy | ≤ 50 chars | 51–300 | 301–3,000 | > 3,000 | SMS called another language "
          "| SMS no answer | Tatoeba docs/s | SMS docs/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("\nEnglish-only rule `lang: {allowed: [en]}` — share dropped:\n")
    print("| identifier | SMS | Tatoeba non-English | of them ≤ 50 chars | 51–300 | Tatoeba English | TREC | Alpaca "
          "| short English (fixture) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rule_rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
