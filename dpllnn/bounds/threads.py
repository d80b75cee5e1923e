"""Threads for the bound kernels of this process (row-parallel backward passes).

One thread by default: parallelism comes from worker processes (``dpllnn/__init__.py``).  A
parallel search lends the cores of idle workers to a running search
(:class:`dpllnn.search.workers.Lender`), which calls :func:`set_kernel_threads`; the wrappers
in :mod:`dpllnn.bounds.propagate` and :mod:`dpllnn.bounds.alpha` then split the rows of each
backward pass over that many numba threads (``kernels.*_rows``).  Each row is computed by the
same code either way (up to BLAS's summation order), so the bounds are sound at any count.
"""
from __future__ import annotations

import ctypes
import os
import sys
from importlib import metadata

import numba

#: file name of the TBB runtime numba's ``tbb`` layer links against (TBB >= 2021.6)
_LIBTBB = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}


def _preload_tbb() -> str | None:
    """Load the TBB runtime of the ``tbb`` wheel (a dependency) into this process, globally.

    The wheel puts the library in ``<prefix>/lib``, where numba's ``tbbpool`` extension does
    not look (it has no rpath there); once loaded, the dynamic linker resolves ``tbbpool``'s
    dependency to it.  Returns the path loaded, or None (no wheel, or the library does not
    load): numba then falls back to its ``workqueue`` layer, which is slower (below), never
    less sound.
    """
    name = _LIBTBB.get(sys.platform)
    if name is None:
        return None
    try:
        files = metadata.files("tbb") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == name:
            path = os.path.realpath(f.locate())
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                return None
            return path
    return None


# Numba starts its threading layer when it first runs a kernel with ``prange``, possibly in the
# parent of the forked workers, so the layer must be fork-safe.  GNU OpenMP, numba's choice
# where libgomp is present, is not.  "forksafe" takes TBB when it loads, else "workqueue".
# The layer matters: launching a parallel region costs about 2 us with TBB and 70-90 us with
# workqueue on this project's 2-core machine, and a node's CROWN pass launches one per layer;
# two kernel threads gave 1.68-1.86x on a node's compute_bounds (mnist 256x4 prop_13) with TBB
# against 1.18-1.69x with workqueue (benchmarks/bench_threads.py).  An explicit
# NUMBA_THREADING_LAYER wins (the runtime is preloaded anyway, so that "tbb" works there too).
TBB_PATH = _preload_tbb()
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "forksafe"

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
