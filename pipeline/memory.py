"""Giving freed memory back to the operating system between phases of heavy work.

Arrow's memory pool and glibc's malloc both keep freed memory for reuse. A phase that allocates through
another allocator than the one before it (pandas objects after Arrow buffers, numpy temporaries after
Python strings) then adds its peak on top of what the earlier phase left behind, though none of it is in
use. `release_memory()` hands it back; the executor calls it after each stage and the quality gate between
its phases (see benchmarks/README.md for what it changes at 1M rows).
"""
from __future__ import annotations

import ctypes
import gc

# A full garbage collection walks every object the interpreter tracks: with the gate's libraries loaded
# (great_expectations, scikit-learn, cleanlab, transformers: ~300k objects) one costs 0.16 s on this VM, and a
# run calls this 17 times (profiled): the shipped SMS sample ran in 10.4 s with them, 8.2–9.2 s without (same peak
# memory), the test suite in 27 minutes, 20 without. What a phase over fewer rows leaves in
# reference cycles is small next to that heap, so below this many rows only the (microsecond) pool release
# and heap trim run; the 1M-row runs the memory figures come from collect as before.
COLLECT_FROM_ROWS = 100_000


def release_memory(rows: int) -> None:
    """Release Arrow's unused pool memory and trim glibc's heap (where there is glibc); first collect garbage
    when the phase that freed it handled `rows` ≥ COLLECT_FROM_ROWS rows."""
    import pyarrow as pa

    if rows >= COLLECT_FROM_ROWS:
        gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
