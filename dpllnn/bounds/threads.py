"""Threads for the bound kernels of this process (row-parallel backward passes).

One thread by default: parallelism comes from worker processes (``dpllnn/__init__.py``).  A
parallel search lends the cores of idle workers to a running search
(:class:`dpllnn.search.portfolio._Lender`), which calls :func:`set_kernel_threads`; the wrappers
in :mod:`dpllnn.bounds.propagate` and :mod:`dpllnn.bounds.alpha` then split the rows of each
backward pass over that many numba threads (``kernels.*_rows``).  Each row is computed by the
same code either way (up to BLAS's summation order), so the bounds are sound at any count.
"""
from __future__ import annotations

import numba

# Numba starts its threading layer when it first compiles a kernel with ``prange`` (also when
# only the serial branch ever runs), that is in the parent of the forked workers.  GNU OpenMP,
# numba's choice where libgomp is present, is not fork-safe; its "workqueue" layer is, and two
# row blocks need no more.  An explicit NUMBA_THREADING_LAYER wins.
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

_THREADS = [1]
#: cores of this process's kernel threads taken by other work (a relaxation LP on a background
#: thread, ``dpllnn.search.asynclp``)
_RESERVED = [0]


def kernel_threads() -> int:
    """Threads the bound kernels of this process may use (>= 1): the count set by
    :func:`set_kernel_threads` less the cores reserved (:func:`reserve_core`)."""
    return max(1, _THREADS[0] - _RESERVED[0])


def lent_threads() -> int:
    """The count set by :func:`set_kernel_threads`, reservations ignored (>= 1)."""
    return _THREADS[0]


def reserve_core(on: bool) -> None:
    """Take one core from the kernels (``on``) or give it back: a background thread of this
    process (the asynchronous relaxation LP) works on it meanwhile."""
    _RESERVED[0] = 1 if on else 0


def set_kernel_threads(n: int) -> int:
    """Let the bound kernels use ``n`` threads (capped by numba's pool size, at least 1);
    returns the number set.  Parallel search calls it in its workers, for cores that would
    otherwise idle; a one-worker run stays on one core."""
    n = max(1, int(n))
    if n > 1:
        n = min(n, int(numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(n)
    _THREADS[0] = n
    return n
