"""Language per field on instruction data: Chinese read as Japanese or Korean, and lang_mismatch's confidence.

    python benchmarks/langid/fields.py

Data: the shipped alpaca_en (999 English records) and alpaca_zh (1,000 Chinese records) samples, as the
`alpaca` record format maps them (instruction + input → prompt, output → completion), through the real
clean stage (`prompt.lang`, `completion.lang`: prose only, null under 40 letters or 14 CJK characters).

1. Chinese instructions called Japanese / Korean by each identifier, with and without the script rule of
   stages/clean/language.py (Japanese needs kana, Korean Hangul).
2. `lang_mismatch` at several confidences: records flagged among alpaca_en (all English: every flag is
   wrong, bar a translation task), alpaca_zh (Chinese; its few English answers to Chinese instructions
   are real mismatches), and 600 real records with their answer swapped for one in the other language
   (300 zh → en, 300 en → zh; seeded): flagged / judged (both sides identified at that confidence).
   stages/clean/instruction.py's MISMATCH_CONFIDENCE is chosen from this table.
"""
from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import stages.clean.language as language  # noqa: E402
from pipeline.stage import StageContext  # noqa: E402
from schemas.kinds import KINDS  # noqa: E402
from stages.clean import CleanStage, Config  # noqa: E402

CONFIDENCES = (0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5)


class Rows:
    """The stage-input protocol over one in-memory table."""

    def __init__(self, table: pa.Table):
        self.table, self.num_rows = table, table.num_rows

    def batches(self, columns=None):
        yield from self.table.to_batches(max_chunksize=1000)


def alpaca(language_: str) -> list[dict]:
    path = REPO / "data" / "samples" / f"alpaca_{language_}" / f"alpaca_{language_}_demo.json"
    return [{"prompt": "\n\n".join(p for p in (r["instruction"], r["input"]) if p.strip()), "completion": r["output"]}
            for r in json.loads(path.read_text(encoding="utf-8"))]


def languages(payloads: list[dict], identifier: str) -> pd.DataFrame:
    """prompt_lang, completion_lang and their scores for each record (no rule drops any)."""
    kind = KINDS["generation"]
    table = pa.Table.from_pylist([{"id": f"r{i}", "source": "s", "source_file": "f", "source_line": i + 1, "meta": None,
                                   "system": None, **p} for i, p in enumerate(payloads)], schema=kind.schema())
    off = ["prompt.n_chars", "completion.n_chars", "completion.unclosed_code_fence", "completion.refusal",
           "completion.placeholders", "repeated_turns"]
    config = Config(filters={k: None for k in off}, signals=["prompt.lang", "completion.lang"],
                    language={"identifier": identifier})
    stage = CleanStage(config, StageContext(dataset="b", config_dir=REPO, work_dir=REPO, kind=kind))
    kept = [out.kept for out in stage.run(Rows(table)) if out.kept is not None]
    return pa.Table.from_batches(kept).to_pandas()


def main() -> None:
    en, zh = alpaca("en"), alpaca("zh")
    rng = random.Random(0)
    swapped = [{"prompt": z["prompt"], "completion": e["completion"]} for z, e in zip(rng.sample(zh, 300), rng.sample(en, 300))]
    swapped += [{"prompt": e["prompt"], "completion": z["completion"]} for z, e in zip(rng.sample(zh, 300), rng.sample(en, 300))]

    print("1. alpaca_zh's 1,000 instructions (prompt prose): languages given")
    print("| identifier | script rule | zh | ja | ko | other | none |\n|---|---|---|---|---|---|---|")
    scripts = language._OWN_SCRIPT
    for identifier in ("fasttext", "langdetect"):
        for rule in (False, True):
            language._OWN_SCRIPT = scripts if rule else {}
            counts = Counter(languages(zh, identifier)["prompt_lang"].fillna("none"))
            other = sum(v for k, v in counts.items() if k not in ("zh", "ja", "ko", "none"))
            print(f"| {identifier} | {'yes' if rule else 'no'} | {counts['zh']} | {counts['ja']} | {counts['ko']} | "
                  f"{other} | {counts['none']} |")
    language._OWN_SCRIPT = scripts

    print("\n2. lang_mismatch: flagged / judged, by the confidence both sides need")
    print("| identifier | set | " + " | ".join(f"≥ {c}" for c in CONFIDENCES) + " |")
    print("|---|---|" + "---|" * len(CONFIDENCES))
    for identifier in ("fasttext", "langdetect"):
        for name, payloads in (("alpaca_en", en), ("alpaca_zh", zh), ("swapped", swapped)):
            t = languages(payloads, identifier)
            both = t.prompt_lang.notna() & t.completion_lang.notna()
            differ = both & (t.prompt_lang != t.completion_lang)
            cells = []
            for c in CONFIDENCES:
                sure = both & (t.prompt_lang_score >= c) & (t.completion_lang_score >= c)
                cells.append(f"{int((differ & sure).sum())} / {int(sure.sum())}")
            print(f"| {identifier} | {name} ({len(payloads)}; {int(both.sum())} with both) | " + " | ".join(cells) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
