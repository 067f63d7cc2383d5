"""rensa's verified mode (rensa ≥ 0.5): `RMinHashDeduplicator(use_lsh=True)` streams the documents through
`add_pairs`, which finds LSH candidates (16 bands of 8) among the documents kept so far and keeps a document
unless a candidate's *estimated* Jaccard (from the 128-slot sketches) reaches the threshold — the peer
closest to ours in what it promises (a removed row has a kept look-alike, no chains). Which kept row a
removed row matched is asked afterwards (`get_duplicate_sets`, outside the timed part): the first one."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402
from rensa import RMinHashDeduplicator  # noqa: E402

import common  # noqa: E402


def main() -> None:
    a = common.args()
    started = time.perf_counter()
    texts = common.read_texts(a.corpus)
    dedup = RMinHashDeduplicator(threshold=common.THRESHOLD, num_perm=common.NUM_PERM, use_lsh=True, num_bands=16)
    kept = np.array(dedup.add_pairs((str(i), common.shingles(t)) for i, t in enumerate(texts)), dtype=bool)
    seconds = time.perf_counter() - started

    removed = np.flatnonzero(~kept)
    rep = np.full(len(texts), -1, np.int64)
    matches = dedup.get_duplicate_sets([common.shingles(texts[i]) for i in removed])
    rep[removed] = [min(int(k) for k in keys) if keys else -1 for keys in matches]
    cluster = np.where(kept, np.arange(len(texts)), rep)  # a removed row joins the kept row it names
    common.write(a.out, kept, rep, cluster, started, result_seconds=seconds)


if __name__ == "__main__":
    main()
