"""The pipeline's dedupe stage (stages/dedupe.py), fed from the Parquet file batch by batch on every pass
as the executor does, on `--workers` processes. As `sftpipe run` does (pipeline/executor.py), the worker
fork server is started first, so that its start-up overlaps the stage's imports."""
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[2]))  # the repository root
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import common  # noqa: E402


class ParquetInput:
    def __init__(self, path: str, batch_size: int):
        self.path, self.batch_size = path, batch_size
        self.num_rows = pq.ParquetFile(path).metadata.num_rows

    def batches(self, columns=None):
        yield from pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_size, columns=columns)




def main() -> None:
    a = common.args()
    started = time.perf_counter()
    if a.workers > 1:
        from pipeline.workers import start_worker_server

        start_worker_server()
    from pipeline.stage import StageContext
    from stages.dedupe import Config, DedupeStage

    # The shared shingling of every implementation here: word 5-grams with punctuation. The stage's default for
    # classification drops punctuation in texts under 50 words since issue 21: DEDUPE_BENCH_PUNCTUATION=drop_short
    # (or drop) measures that.
    punctuation = os.environ.get("DEDUPE_BENCH_PUNCTUATION", "keep")
    config = Config(threshold=common.THRESHOLD, ngram=common.NGRAM, num_perm=common.NUM_PERM,
                    punctuation=punctuation, label_conflicts="ignore")
    stage = DedupeStage(config, StageContext(dataset="bench", config_dir=Path("."), work_dir=Path("."), workers=a.workers))
    inputs = ParquetInput(a.corpus, 10_000)
    kept_ids, kept_clusters, rejected = [], [], []
    for out in stage.run(inputs):
        if out.kept is not None:
            kept_ids.append(out.kept.column("id"))
            kept_clusters.append(out.kept.column("cluster_id"))
        if out.rejected is not None:
            rejected.append(out.rejected.select(["id", "details"]))
    seconds = time.perf_counter() - started

    n = inputs.num_rows
    kept = np.zeros(n, bool)
    rep = np.full(n, -1, np.int64)
    cluster = np.full(n, -1, np.int64)
    index = lambda ids: np.array([int(i[3:]) for i in ids], np.int64)  # noqa: E731 (ids are "doc%07d" = row)
    for ids, clusters in zip(kept_ids, kept_clusters):
        rows = index(ids.to_pylist())
        kept[rows] = True
        cluster[rows] = clusters.to_numpy()
    for batch in rejected:
        rows = index(batch.column("id").to_pylist())
        details = [json.loads(d) for d in batch.column("details").to_pylist()]
        rep[rows] = index([d["duplicate_of"] for d in details])
        cluster[rows] = [d["cluster_id"] for d in details]
    common.write(a.out, kept, rep, cluster, started, result_seconds=seconds,
                 stats=json.dumps({k: v for k, v in stage.stats.items() if k != "label_conflict_examples"}))


if __name__ == "__main__":  # worker processes of spawn-based executors re-import this file
    main()
