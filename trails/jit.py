"""One place for Numba options, so every kernel compiles the same way.

`fastmath` is off: breach records must be bit-for-bit reproducible and the
contract's threshold comparisons are exact IEEE arithmetic.
"""
from __future__ import annotations

import numba

__all__ = ["njit_serial", "njit_parallel", "prange", "limit_threads_here"]

prange = numba.prange


def njit_serial(fn):
    return numba.njit(cache=True, nogil=True)(fn)


def njit_parallel(fn):
    return numba.njit(cache=True, nogil=True, parallel=True)(fn)


def limit_threads_here(n_threads: int) -> None:
    """Run the parallel kernels called from this thread on at most `n_threads` threads.

    Numba's thread count is per calling thread. A long-running thread that
    shares the cores with other busy threads (the stream service's detector
    beside HTTP intake) does better on one: a parallel region waits for its
    slowest thread, and a thread preempted by the neighbour stalls the whole
    region (measured: a national pass 3-5x slower on two threads than on one
    while intake ran). Results never depend on the thread count.
    """
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads={n_threads!r} must be an int >= 1")
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
