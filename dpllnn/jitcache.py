"""Is numba's on-disk cache of the bound kernels current?  (``cache=True`` kernels.)

The first run after an install or a change of the kernels' sources compiles them (about 20 s on
a quiet 2-core machine, a minute under load); ``./run.sh setup`` does it ahead
(:func:`dpllnn.bounds.warmup`), and ``verify`` says on stderr when it has to.
"""
from __future__ import annotations

__all__ = ["kernels_cached", "warm"]


def kernels_cached() -> bool:
    """True when every ``cache=True`` bound kernel has a current cache index (one compiled for
    the kernel's present source); a kernel never run gets none.  Reads numba's private cache
    object, so anything unexpected counts as cached (no false alarm)."""
    from numba.core.registry import CPUDispatcher

    from .bounds import kernels, kernels_alpha, kernels_batch, kernels_sym
    try:
        for mod in (kernels, kernels_alpha, kernels_batch, kernels_sym):
            for obj in vars(mod).values():
                if isinstance(obj, CPUDispatcher) and obj._cache is not None \
                        and getattr(obj._cache, "_cache_file", None) is not None \
                        and not obj._cache._cache_file._load_index():
                    return False
    except Exception:                # numba internals changed: stay quiet
        return True
    return True


def warm() -> float:
    """Compile (or load) every bound kernel once, on a tiny network; returns the seconds taken.
    :func:`dpllnn.bounds.warmup` plus the parallel batched CROWN that input splitting runs on
    lent cores."""
    import time

    import numpy as np

    from .bounds import warmup
    from .bounds.pack import pack
    from .bounds.propagate import batch_crown
    from .network import Affine, Network

    t0 = time.perf_counter()
    warmup()
    rng = np.random.default_rng(0)
    P = pack(Network([Affine(rng.normal(size=(3, 2)), rng.normal(size=3)),
                      Affine(rng.normal(size=(2, 3)), rng.normal(size=2))]))
    lb, ub = -np.ones((2, 2)), np.ones((2, 2))
    batch_crown(P, lb, ub, np.array([[1.0, -1.0]]), np.zeros(1), parallel=True)
    return time.perf_counter() - t0


if __name__ == "__main__":           # ./run.sh setup
    import sys
    print(f"dpllnn: bound kernels compiled and cached ({warm():.0f} s)", file=sys.stderr)
