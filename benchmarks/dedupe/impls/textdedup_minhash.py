"""text-dedup's MinHash (`python -m text_dedup.minhash`), called in-process on the Parquet corpus through
HF datasets, --num_proc workers. Deviations: its tokenization (lowercase, split on non-word characters,
so punctuation is dropped), xxh3 32-bit hashes, bands/rows from its own optimizer for 0.8, `--min_length 1`
so that short texts get one shingle instead of being dropped. Clusters are union-find over band matches;
the smallest index of a cluster is kept."""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from text_dedup import minhash as td  # noqa: E402

import common  # noqa: E402



def main() -> None:
    a = common.args()
    started = time.perf_counter()
    work = tempfile.mkdtemp(prefix="textdedup-bench-")
    td.main.main(args=["--path", "parquet", "--data_files", a.corpus, "--split", "train", "--cache_dir", f"{work}/cache",
                       "--output", f"{work}/out", "--column", "text", "--num_perm", str(common.NUM_PERM),
                       "--threshold", str(common.THRESHOLD), "--ngram", str(common.NGRAM), "--min_length", "1",
                       "--hash_func", "xxh3", "--num_proc", str(a.workers)], standalone_mode=False)
    n = pq.ParquetFile(a.corpus).metadata.num_rows
    cluster = np.array([td.uf.find(i) for i in range(n)], dtype=np.int64)
    kept = cluster == np.arange(n)
    rep = np.where(kept, -1, cluster)
    common.write(a.out, kept, rep, cluster, started)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # worker processes of spawn-based executors re-import this file
    main()
