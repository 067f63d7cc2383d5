"""rensa (Rust): RMinHash for all documents in one bulk call, RMinHashLSH at the threshold, candidates per
document, union-find. 16 bands of 8 (rensa wants num_perm divisible by the band count; datasketch's
optimum for 0.8 at 128 permutations is 9 × 13)."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rensa import RMinHash, RMinHashLSH  # noqa: E402

import common  # noqa: E402



def main() -> None:
    a = common.args()
    started = time.perf_counter()
    texts = common.read_texts(a.corpus)
    minhashes = RMinHash.from_token_sets([common.shingles(t) for t in texts], common.NUM_PERM, 1)
    lsh = RMinHashLSH(threshold=common.THRESHOLD, num_perm=common.NUM_PERM, num_bands=16)
    lsh.insert_many(minhashes, 0)
    left, right = [], []
    for i, candidates in enumerate(lsh.query_all(minhashes)):
        for j in candidates:
            if j < i:
                left.append(j)
                right.append(i)
    cluster = common.clusters_from_pairs(len(texts), left, right)
    kept, rep = common.keep_first_of_cluster(cluster)
    common.write(a.out, kept, rep, cluster, started)


if __name__ == "__main__":  # worker processes of spawn-based executors re-import this file
    main()
