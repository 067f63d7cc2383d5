"""Giving freed memory back to the operating system between phases of heavy work.

Arrow's memory pool and glibc's malloc both keep freed memory for reuse. A phase that allocates through
another allocator than the one before it (pandas objects after Arrow buffers, numpy temporaries after
Python strings) then adds its peak on top of what the earlier phase left behind, though none of it is in
use. `release_memory()` hands it back; the quality gate calls it between its phases (see
benchmarks/README.md for what it changes at 1M rows).
"""
from __future__ import annotations

import ctypes
import gc


def release_memory() -> None:
    """Collect garbage, release Arrow's unused pool memory, and trim glibc's heap (where there is glibc)."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
