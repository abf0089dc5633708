"""One place for Numba options, so every kernel compiles the same way.

`fastmath` is off: breach records must be bit-for-bit reproducible and the
contract's threshold comparisons are exact IEEE arithmetic.
"""
from __future__ import annotations

import numba

__all__ = ["njit_serial", "njit_parallel", "prange"]

prange = numba.prange


def njit_serial(fn):
    return numba.njit(cache=True, nogil=True)(fn)


def njit_parallel(fn):
    return numba.njit(cache=True, nogil=True, parallel=True)(fn)
