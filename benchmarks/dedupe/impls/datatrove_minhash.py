"""datatrove's MinHash pipeline (signatures → buckets → clusters) on a local executor, 2 tasks / workers.

Deviations, to stay close to the shared shingling: text normalization limited to lowercase + whitespace
(no punctuation/number/diacritic folding), a whitespace word tokenizer, word 5-grams, 16 buckets × 8
hashes (128). Its n-grams give no shingle to texts of fewer than 5 words, and its clusters are
union-find over bucket matches; the kept row of a cluster is the one it does not list for removal.
"""
import struct
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,  # noqa: E402
                                              MinhashDedupSignature)
from datatrove.pipeline.readers import ParquetReader  # noqa: E402
from datatrove.utils.text import TextNormConfig  # noqa: E402
from datatrove.utils.word_tokenizers import WordTokenizer  # noqa: E402

import common  # noqa: E402


class Whitespace(WordTokenizer):
    def word_tokenize(self, text):
        return text.split()

    def sent_tokenize(self, text):
        return [text]

    def span_tokenize(self, text):
        raise NotImplementedError




def main() -> None:
    a = common.args()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="datatrove-bench-"))
    table = pq.read_table(a.corpus, columns=["id", "text"])
    n = table.num_rows
    shard_rows = [0]
    for rank in range(a.workers):  # one input file per task
        lo, hi = rank * n // a.workers, (rank + 1) * n // a.workers
        (work / "input").mkdir(exist_ok=True)
        pq.write_table(table.slice(lo, hi - lo), work / "input" / f"{rank:05d}.parquet")
        shard_rows.append(hi)
    config = MinhashConfig(n_grams=common.NGRAM, num_buckets=16, hashes_per_bucket=8,
                           norm_config=TextNormConfig(lowercase=True, norm_whitespace=True, remove_punctuation=False,
                                                      norm_unicode_diacritics=False, norm_numbers=False))
    reader = ParquetReader(str(work / "input"), text_key="text", id_key="id")
    LocalPipelineExecutor(pipeline=[reader, MinhashDedupSignature(str(work / "sigs"), config=config, language=Whitespace())],
                          tasks=a.workers, workers=a.workers, logging_dir=str(work / "logs1")).run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
                          tasks=config.num_buckets, workers=a.workers, logging_dir=str(work / "logs2")).run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config,
                                                        save_cluster_id=True)],
                          tasks=1, workers=1, logging_dir=str(work / "logs3")).run()

    kept = np.ones(n, bool)
    cluster = np.arange(n, dtype=np.int64) + 10**9  # singletons: their own cluster
    for rank in range(a.workers):
        base = shard_rows[rank]
        f = work / "remove" / f"{rank:06d}.remove"
        if f.exists():
            removed = np.frombuffer(f.read_bytes(), dtype="<u4").astype(np.int64) + base
            kept[removed] = False
        f = work / "remove" / f"{rank:06d}.clusters"
        if f.exists():
            pairs = np.frombuffer(f.read_bytes(), dtype="<u4").reshape(-1, 2).astype(np.int64)
            cluster[pairs[:, 0] + base] = pairs[:, 1]
    rep = np.full(n, -1, np.int64)
    keeper = {}
    for row in np.flatnonzero(kept & (cluster < 10**9)):
        keeper[int(cluster[row])] = int(row)
    for row in np.flatnonzero(~kept):
        rep[row] = keeper[int(cluster[row])]
    common.write(a.out, kept, rep, cluster, started)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # worker processes of spawn-based executors re-import this file
    main()
