"""datasketch with MinHash.bulk (one call per batch of documents), MinHashLSH at the threshold, union-find."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from datasketch import MinHash, MinHashLSH  # noqa: E402

import common  # noqa: E402



def main() -> None:
    a = common.args()
    started = time.perf_counter()
    texts = common.read_texts(a.corpus)
    lsh = MinHashLSH(threshold=common.THRESHOLD, num_perm=common.NUM_PERM)
    left, right = [], []
    batch = 10_000
    for start in range(0, len(texts), batch):
        chunk = [[s.encode("utf-8") for s in common.shingles(t)] for t in texts[start:start + batch]]
        for i, m in enumerate(MinHash.bulk(chunk, num_perm=common.NUM_PERM, seed=1), start):
            for j in lsh.query(m):
                left.append(j)
                right.append(i)
            lsh.insert(i, m)
    cluster = common.clusters_from_pairs(len(texts), left, right)
    kept, rep = common.keep_first_of_cluster(cluster)
    common.write(a.out, kept, rep, cluster, started)


if __name__ == "__main__":  # worker processes of spawn-based executors re-import this file
    main()
