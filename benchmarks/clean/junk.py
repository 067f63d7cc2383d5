"""Short-junk rules of the clean stage: planted junk removed against real rows dropped, through the stage.

    python benchmarks/clean/junk.py [--corrupted DIR ...]

Runs the real clean stage (`stages.clean.CleanStage`, its default config) over:

- **planted junk**: every `junk_*` row of issue #21's corrupted sets — the `corrupted.jsonl` +
  `truth.parquet` folders that `benchmarks/outcome/corrupt.py` writes (TREC and SMS, 10 % flips, seed 0;
  by default `benchmarks/outcome/work/inputs/{trec,sms}-f10-d15-j5-s0-r1`, or name folders with
  `--corrupted`). The rows as given: the `markup_share` rule reads them before normalization.
- **real rows**, none of them junk, so every drop is a cost (issue #21's target: ≤ 0.5 % of each set):
  the whole SMS Spam Collection (5,574) and all 5,952 TREC questions (train and test) from shared/data.
- **alpaca_en_demo** (999 instructions, generation kind): what each junk rule would drop if a config named
  it on `prompt` or on `completion` — the measurement behind leaving them off for generative kinds.

Each set runs three times: with today's defaults, with the short-junk rules switched off (`null`: the
defaults before them), so the rows the new rules cost are counted apart from what clean dropped before,
and with the language rule a user writes (`lang: {allowed: [en]}`, plausible 0.04) for comparison.
CPU seconds of each run are printed (the language rule is the slow one). Results: printed, and written to
benchmarks/clean/results/junk.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

import schemas  # noqa: E402
from pipeline.stage import StageContext  # noqa: E402
from schemas.kinds import KINDS  # noqa: E402
from stages.clean import CleanStage, Config  # noqa: E402

JUNK_RULES = ["placeholder_only", "url_only", "markup_share", "top_token_share", "lang"]
OFF = {rule: None for rule in JUNK_RULES}
LANG_004 = {"lang": {"allowed": ["en"]}}  # the variant: the rule a user writes (clean.language.plausible, 0.04)
DEFAULT_CORRUPTED = [REPO / "benchmarks/outcome/work/inputs" / f"{ds}-f10-d15-j5-s0-r1" for ds in ("trec", "sms")]


def shared_data() -> Path:
    env = os.environ.get("SFTPIPE_SHARED_DATA")
    if env:
        return Path(env)
    for parent in HERE.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    raise SystemExit("shared/data not found above this file: set SFTPIPE_SHARED_DATA")


class _Input:
    def __init__(self, table: pa.Table, batch_size: int = 10_000):
        self.table, self.batch_size, self.num_rows = table, batch_size, table.num_rows

    def batches(self, columns=None):
        yield from (self.table.select(columns) if columns else self.table).to_batches(max_chunksize=self.batch_size)


class _NoProgress(StageContext):
    def progress(self, n: int) -> None:  # noqa: D102
        pass


def run_clean(table: pa.Table, kind: str = "classification", **config) -> tuple[dict[str, str], float]:
    """(reason by rejected id, CPU seconds) of the clean stage over `table`."""
    ctx = _NoProgress(dataset="bench", config_dir=".", work_dir=".", kind=KINDS[kind])
    stage = CleanStage(Config(**config), ctx)
    t0 = time.process_time()
    reasons: dict[str, str] = {}
    for out in stage.run(_Input(table)):
        if out.rejected is not None:
            reasons.update(zip(out.rejected.column("id").to_pylist(), out.rejected.column("reason").to_pylist()))
    return reasons, time.process_time() - t0


def classification_rows(texts: list[str], ids: list[str] | None = None) -> pa.Table:
    n = len(texts)
    return pa.Table.from_pydict({
        "id": ids or [f"r{i}" for i in range(n)], "source": ["bench"] * n, "source_file": ["bench"] * n,
        "source_line": list(range(1, n + 1)), "text": texts, "label": [None] * n, "meta": [None] * n,
    }, schema=schemas.COLLECTED)


def planted_junk(folders: list[Path]) -> tuple[pa.Table, dict[str, str]]:
    ids, texts, kinds = [], [], {}
    for folder in folders:
        if not (folder / "truth.parquet").is_file():
            raise SystemExit(f"{folder}: no corrupted set there (benchmarks/outcome/corrupt.py writes one: "
                             f"python benchmarks/outcome/corrupt.py --dataset trec --out {folder})")
        truth = pq.read_table(folder / "truth.parquet").to_pylist()
        kind_of = {r["id"]: r["kind"] for r in truth}
        with (folder / "corrupted.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if kind_of[row["id"]].startswith("junk_"):
                    rid = f"{folder.name}/{row['id']}"
                    ids.append(rid)
                    texts.append(row["text"])
                    kinds[rid] = kind_of[row["id"]]
    return classification_rows(texts, ids), kinds


def measure_planted(folders: list[Path]) -> dict:
    table, kinds = planted_junk(folders)
    text_of = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    now, cpu = run_clean(table)
    before, cpu_before = run_clean(table, filters=OFF)
    at_004, _ = run_clean(table, filters=LANG_004)
    per_kind = {}
    for kind in sorted(set(kinds.values())):
        rows = [i for i, k in kinds.items() if k == kind]
        per_kind[kind] = {"planted": len(rows), "removed": sum(i in now for i in rows),
                          "removed_before": sum(i in before for i in rows),
                          "removed_lang_0.04": sum(i in at_004 for i in rows),
                          "by_reason": dict(Counter(now[i] for i in rows if i in now).most_common())}
    left = [text_of[i] for i in kinds if i not in now]
    out = {"planted": len(kinds), "removed": len(now), "removed_before": len(before),
           "removed_lang_0.04": len(at_004), "per_kind": per_kind,
           "by_reason": dict(Counter(now.values()).most_common()), "left": left, "cpu_s": round(cpu, 2)}
    print(f"planted junk ({', '.join(f.name for f in folders)}): {len(now)} / {len(kinds)} removed "
          f"({len(now) / len(kinds):.1%}); {len(before)} with the short-junk rules off; {len(at_004)} with the "
          f"language rule at plausible 0.04")
    for kind, v in per_kind.items():
        print(f"  {kind:>13}: {v['removed']:>3} / {v['planted']:<3} (before {v['removed_before']:>3})  {v['by_reason']}")
    print(f"  left: {left}")
    return out


def measure_real(name: str, texts: list[str]) -> dict:
    table = classification_rows(texts)
    now, cpu = run_clean(table)
    before, cpu_before = run_clean(table, filters=OFF)
    at_004, _ = run_clean(table, filters=LANG_004)
    text_of = dict(zip(table.column("id").to_pylist(), texts))
    new = {i: r for i, r in now.items() if i not in before}
    new_004 = [i for i in at_004 if i not in before]
    out = {"rows": len(texts), "dropped": len(now), "dropped_before": len(before), "dropped_by_new_rules": len(new),
           "share_by_new_rules": round(len(new) / len(texts), 5), "by_reason": dict(Counter(now.values()).most_common()),
           "new_examples": {r: [text_of[i] for i, x in new.items() if x == r][:10] for r in sorted(set(new.values()))},
           "cpu_s": round(cpu, 2), "cpu_s_rules_off": round(cpu_before, 2),
           "dropped_by_new_rules_lang_0.04": len(new_004)}
    print(f"{name} ({len(texts):,} real rows): dropped {len(now)} (before the short-junk rules: {len(before)}); "
          f"by the new rules {len(new)} = {len(new) / len(texts):.2%} (language rule at 0.04: {len(new_004)} = "
          f"{len(new_004) / len(texts):.2%})   CPU {cpu:.1f} s (rules off {cpu_before:.1f} s)")
    for reason, examples in out["new_examples"].items():
        print(f"  {reason}: {sum(1 for r in new.values() if r == reason)}  e.g. {examples[:5]}")
    return out


def measure_alpaca(path: Path) -> dict:
    records = json.loads(path.read_text(encoding="utf-8"))
    rows = [{"id": f"a{i}", "source": "alpaca", "source_file": path.name, "source_line": i + 1, "meta": None,
             "prompt": r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else ""), "completion": r["output"],
             "system": None} for i, r in enumerate(records)]
    table = pa.Table.from_pylist(rows, schema=KINDS["generation"].schema())
    text_of = {r["id"]: (r["prompt"], r["completion"]) for r in rows}
    out = {"rows": len(rows)}
    print(f"alpaca_en_demo ({len(rows)} records, generation): what each rule would drop if named on a field")
    for field in ("prompt", "completion"):
        for rule, bound in (("placeholder_only", {"max": 0}), ("url_only", {"max": 0}), ("markup_share", {"max": 0.5}),
                            ("top_token_share", {"max": 0.5}), ("lang", {"allowed": ["en"]})):
            key = f"{field}.{rule}"
            # Only this rule: the generative defaults' drops are not what is measured here.
            base = {k: None for k in Config().rules(KINDS["generation"])}
            now, _ = run_clean(table, "generation", filters={**base, key: bound})
            hits = [text_of[i][0 if field == "prompt" else 1][:120] for i in now]
            out[key] = {"dropped": len(now), "examples": hits[:8]}
            print(f"  {key:>28}: {len(now):>3}  {hits[:3]}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corrupted", type=Path, nargs="+", default=DEFAULT_CORRUPTED,
                   help="folders with corrupted.jsonl + truth.parquet (benchmarks/outcome/corrupt.py)")
    a = p.parse_args()
    load = os.getloadavg()
    data = shared_data()
    result = {"load_before": [round(x, 2) for x in load]}
    result["planted"] = measure_planted(a.corrupted)
    sms = pq.read_table(data / "sms_spam" / "data.parquet").column("text").to_pylist()
    trec = pq.read_table(data / "trec" / "data.parquet").column("text").to_pylist()
    result["sms"] = measure_real("SMS Spam Collection", sms)
    result["trec"] = measure_real("TREC", trec)
    result["alpaca"] = measure_alpaca(data / "alpaca_en_demo" / "original" / "alpaca_en_demo.json")
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    out = HERE / "results" / "junk.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"written to {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
