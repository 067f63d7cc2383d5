"""CPU seconds per row of each stage, one process, measured with process_time (robust to a busy machine).

    python benchmarks/ray/costs.py benchmarks/ray/out/100000-4src --rows 20000

Reads the stage outputs a `run.py` run left under OUT/data-local and re-runs each stage in this process
(workers=1) on the first ROWS rows of its input: collect on one source file, clean without and with
language detection, dedupe, split; and the driver's zstd Parquet write. These per-core costs feed the
100M-document projection in README.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import schemas  # noqa: E402
from pipeline.cli.project import PROJECT  # noqa: E402
from pipeline.filters import SIGNALS  # noqa: E402
from pipeline.stage import StageContext  # noqa: E402
from pipeline.stage_io import BoundaryWriter  # noqa: E402
from stages import clean, collect  # noqa: E402


class TableInput:
    def __init__(self, table: pa.Table, batch_size: int):
        self.table, self.batch_size, self.num_rows = table, batch_size, table.num_rows

    def batches(self, columns=None):
        t = self.table.select(columns) if columns else self.table
        yield from t.to_batches(self.batch_size)


def cpu(fn) -> tuple[float, int]:
    t0 = time.process_time()
    rows = fn()
    return time.process_time() - t0, rows


def drain(stage, inputs) -> int:
    n = 0
    for out in stage.run(inputs):
        n += (out.kept.num_rows if out.kept is not None else 0) + (out.rejected.num_rows if out.rejected is not None else 0)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="a run.py output folder (with data-local/)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--lang-rows", type=int, default=4_000)
    args = parser.parse_args()

    config = PROJECT.load_config(args.out / "config.yaml")
    stages_dir = args.out / "data-local" / "runs" / "bench" / "stages"
    folder = {p.name.split("-")[1]: p for p in stages_dir.iterdir() if "." not in p.name}
    ctx = lambda: StageContext(dataset="bench", config_dir=config.config_dir, work_dir=args.out, batch_size=10_000,
                               workers=1, labels=config.labels)
    sections = {s.name: (s.stage, s.section) for s in PROJECT.plan(config, {"annotate": "benchmark"} if config.annotate else None).steps}
    costs = {}

    # collect: one source file, as many rows as it has (cost per row read).
    one = collect.Config(sources=config.sources[:1], inputs_within=None)
    s, n = cpu(lambda: drain(collect.CollectStage(one, ctx()), None))
    costs["collect"] = (s, n)

    def head(name: str, rows: int) -> pa.Table:
        return pq.read_table(folder[name] / "part-00000.parquet").slice(0, rows)

    collected = head("collect", args.rows)
    no_lang = clean.Config(**{**sections["clean"][1].model_dump(), "signals": []})
    costs["clean"] = cpu(lambda: drain(clean.CleanStage(no_lang, ctx()), TableInput(collected, 10_000)))
    texts = collected.column("text").slice(0, args.lang_rows).combine_chunks()
    SIGNALS["lang"](texts.slice(0, 10))  # load the language model outside the timing (once per actor)
    costs["lang signal"] = cpu(lambda: (SIGNALS["lang"](texts), len(texts))[1])

    cleaned = head("clean", args.rows)
    cls, section = sections["dedupe"]
    costs["dedupe"] = cpu(lambda: drain(cls(section, ctx()), TableInput(cleaned, 10_000)))
    deduped = head("dedupe", args.rows)
    cls, section = sections["split"]
    costs["split"] = cpu(lambda: drain(cls(section, ctx()), TableInput(deduped, 10_000)))

    def write() -> int:
        w = BoundaryWriter(args.out / "costs-write-test.parquet", schemas.CLEANED, "costs")
        for b in cleaned.to_batches(10_000):
            w.write(b)
        w.close()
        return cleaned.num_rows
    costs["driver parquet write (clean output)"] = cpu(write)
    (args.out / "costs-write-test.parquet").unlink()

    print(f"CPU seconds per row, one process ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}):")
    result = {}
    for name, (sec, rows) in costs.items():
        result[name] = {"cpu_s": round(sec, 3), "rows": rows, "us_per_row": round(1e6 * sec / rows, 1),
                        "rows_per_core_s": round(rows / sec)}
        print(f"  {name:<38}{rows:>8,} rows {sec:>8.2f} s  {1e6 * sec / rows:>8.1f} µs/row  {rows / sec:>10,.0f} rows/core-s")
    (args.out / "costs.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
