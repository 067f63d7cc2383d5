"""`lang: {allowed: auto}`: which languages the clean stage finds for a data set, and what the rule then drops.

    python benchmarks/clean/lang_auto.py [--corrupted DIR ...] [--sample N ...]

Runs the real clean stage (`stages.clean.CleanStage`, its default config, so `lang: {allowed: auto,
plausible: 0.01}`) over real data sets of one language and of several, and prints for each:

- the share of each language among the sampled rows that reach the rule (the most probable language per
  row, after normalization and the cheap rules: what `auto` counts), the five largest;
- the languages `auto` allows at `clean.language.auto_min_share` (and the largest share of a language it
  does not allow: the margin below the cut-off on a monolingual set);
- the rows the language rule drops, with `auto` and with the former default `allowed: [en]`;
- the seconds the sample pass (`CleanStage.prepare`) takes.

Sets: the SMS Spam Collection and TREC (all rows, English), issue #21's corrupted TREC / SMS sets whole
(real rows plus 5 % planted junk, a sixth of it foreign sentences; `benchmarks/outcome/corrupt.py`
writes them, default `benchmarks/outcome/work/inputs/{trec,sms}-f10-d15-j5-s0-r1`), and from the shared
Tatoeba sample: German only, 90 % German + 10 % other languages, English + German half and half, and all
17 languages together. `--sample N` repeats the SMS / corrupted runs with another sample size.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from junk import DEFAULT_CORRUPTED, _Input, _NoProgress, classification_rows, shared_data  # noqa: E402
from schemas.kinds import KINDS  # noqa: E402
from stages.clean import CleanStage, Config  # noqa: E402
from stages.clean.language import identify  # noqa: E402

ISO = dict(bul="bg", ces="cs", dan="da", deu="de", ell="el", eng="en", fin="fi", fra="fr", hun="hu", ita="it",
           lit="lt", nld="nl", pol="pl", por="pt", ron="ro", spa="es", swe="sv")


def stage_for(**config) -> CleanStage:
    return CleanStage(Config(**config), _NoProgress(dataset="bench", config_dir=".", work_dir=".",
                                                    kind=KINDS["classification"]))


def shares(table: pa.Table, sample: int) -> Counter:
    """Most probable language per sampled row that reaches the rule (what `auto` counts), as a Counter."""
    stage = stage_for(language={"auto_sample": sample})
    stage.prepare(_Input(table))
    found = stage.summarize().auto_languages["lang"]
    return found


def lang_drops(table: pa.Table, **config) -> list[str]:
    stage = stage_for(**config)
    dropped = []
    for out in stage.run(_Input(table)):
        if out.rejected is not None:
            r = out.rejected
            dropped += [t for t, why in zip(r.column("text").to_pylist(), r.column("reason").to_pylist())
                        if why == "lang_not_allowed"]
    return dropped


def top_languages(table: pa.Table) -> list[tuple[str, float]]:
    """Every row's most probable language (no rule), the five largest shares: the margin below the cut-off."""
    codes = [c for c in identify(table.column("text").combine_chunks())["lang"].to_pylist() if c]
    counts = Counter(codes)
    return [(c, round(n / len(codes), 4)) for c, n in counts.most_common(5)]


def measure(name: str, table: pa.Table, sample: int = 10_000, truth: dict[str, str] | None = None) -> dict:
    t0 = time.perf_counter()
    stage = stage_for(language={"auto_sample": sample})
    stage.prepare(_Input(table))
    seconds = time.perf_counter() - t0
    found = stage.summarize().auto_languages["lang"]
    auto = lang_drops(table, language={"auto_sample": sample})
    english = lang_drops(table, filters={"lang": {"allowed": ["en"], "plausible": 0.01}})
    row = {"set": name, "rows": table.num_rows, "sample": sample, "found": found.languages,
           "identified_rows": found.identified_rows, "note": found.line("lang"), "top5_all_rows": top_languages(table),
           "dropped_auto": len(auto), "dropped_en": len(english), "prepare_seconds": round(seconds, 3),
           "dropped_auto_examples": auto[:5]}
    if truth is not None:
        ids = set()
        stage = stage_for(language={"auto_sample": sample})
        for out in stage.run(_Input(table)):
            if out.rejected is not None:
                ids |= {i for i, why in zip(out.rejected.column("id").to_pylist(), out.rejected.column("reason").to_pylist())
                        if why == "lang_not_allowed"}
        row["foreign_junk_dropped"] = sum(1 for i, k in truth.items() if k == "junk_foreign" and i in ids)
        row["foreign_junk"] = sum(1 for k in truth.values() if k == "junk_foreign")
        row["real_rows_dropped"] = sum(1 for i in ids if not truth.get(i, "").startswith("junk_"))
    print(f"{name:<34} rows {table.num_rows:>6,}  {found.line('lang')}")
    print(f"{'':<34} top-1 shares (all rows): {row['top5_all_rows']}")
    print(f"{'':<34} lang drops: auto {len(auto):,}, allowed [en] {len(english):,}; sample pass {seconds:.2f} s"
          + (f"; foreign junk dropped {row['foreign_junk_dropped']}/{row['foreign_junk']}, real rows "
             f"{row['real_rows_dropped']}" if truth is not None else ""))
    return row


def corrupted(folder: Path) -> tuple[pa.Table, dict[str, str]]:
    kinds = {r["id"]: r["kind"] for r in pq.read_table(folder / "truth.parquet").to_pylist()}
    rows = [json.loads(line) for line in (folder / "corrupted.jsonl").open(encoding="utf-8")]
    return classification_rows([r["text"] for r in rows], [r["id"] for r in rows]), kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corrupted", nargs="*", type=Path, default=DEFAULT_CORRUPTED)
    parser.add_argument("--sample", nargs="*", type=int, default=[], help="other sample sizes to compare")
    args = parser.parse_args()
    data = shared_data()
    sms = pq.read_table(data / "sms_spam" / "data.parquet").column("text").to_pylist()
    trec = pq.read_table(data / "trec" / "data.parquet").column("text").to_pylist()
    tatoeba = pd.read_csv(data / "tatoeba_langid" / "test.csv")
    tatoeba["code"] = tatoeba["label"].map(ISO)
    german = tatoeba[tatoeba.code == "de"].text.tolist()
    others = tatoeba[~tatoeba.code.isin(["de"])].groupby("code").head(2)  # 2 per language: 16 languages, ~1 % each
    mixed = german + others.text.tolist()[: len(german) // 9]
    english = tatoeba[tatoeba.code == "en"].text.tolist()
    results = []
    for name, texts in [("SMS Spam Collection", sms), ("TREC", trec), ("Tatoeba German", german),
                        (f"Tatoeba 90 % German + {len(mixed) - len(german)} others", mixed),
                        ("Tatoeba English + German", english + german),
                        ("Tatoeba, all 17 languages", tatoeba.text.tolist())]:
        results.append(measure(name, classification_rows(texts)))
    for folder in args.corrupted:
        if (folder / "corrupted.jsonl").is_file():
            table, truth = corrupted(folder)
            results.append(measure(f"corrupted {folder.name}", table, truth=truth))
            for n in args.sample:
                results.append(measure(f"corrupted {folder.name} (sample {n})", table, sample=n, truth=truth))
        else:
            print(f"{folder}: no corrupted set there (benchmarks/outcome/corrupt.py writes one); skipped")
    for n in args.sample:
        results.append(measure(f"SMS Spam Collection (sample {n})", classification_rows(sms), sample=n))
    out = HERE / "results" / "lang_auto.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"written: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
