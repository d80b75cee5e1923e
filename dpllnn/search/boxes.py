"""The pool of open boxes of the input-splitting search (:mod:`dpllnn.search.inputsplit`).

Growable parallel arrays, one row per box; best-first pops by priority (or deepest-first when the
pool is too large), and :meth:`BoxPool.split_off` hands half of the boxes to another worker
(work sharing, :mod:`dpllnn.search.portfolio`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["BoxPool", "FIELDS"]

FIELDS = ("lo", "hi", "lower", "open", "depth", "prio", "sc", "zl", "zu")


class BoxPool:
    """Open boxes in growable arrays: lo, hi (N, n); lower (N, m); open (N, k); depth (N,);
    prio (N,); sc (N, n) split scores (smear); zl, zu (N, n_z) hidden/output bounds (or 0
    columns when not inherited)."""

    def __init__(self, n, m, k, nz, cap=1024):
        self.zl = np.empty((cap, nz))
        self.zu = np.empty((cap, nz))
        self.sc = np.empty((cap, n))
        self.lo = np.empty((cap, n))
        self.hi = np.empty((cap, n))
        self.lower = np.empty((cap, m))
        self.open = np.empty((cap, k), dtype=bool)
        self.depth = np.empty(cap, dtype=np.int64)
        self.prio = np.empty(cap)
        self.size = 0

    def push(self, lo, hi, lower, open_, depth, prio, sc, zl, zu):
        b = lo.shape[0]
        need = self.size + b
        if need > self.lo.shape[0]:
            cap = max(need, 2 * self.lo.shape[0])
            for name in FIELDS:
                old = getattr(self, name)
                new = np.empty((cap,) + old.shape[1:], dtype=old.dtype)
                new[:self.size] = old[:self.size]
                setattr(self, name, new)
        s = slice(self.size, need)
        self.lo[s], self.hi[s], self.lower[s] = lo, hi, lower
        self.open[s], self.depth[s], self.prio[s] = open_, depth, prio
        self.sc[s] = sc
        self.zl[s], self.zu[s] = zl, zu
        self.size = need

    def pop(self, k, depth_first=False):
        n = self.size
        if k >= n:
            idx = np.arange(n)
        else:
            key = -self.depth[:n] if depth_first else self.prio[:n]
            idx = np.argpartition(key, k)[:k]
        out = tuple(getattr(self, a)[idx]
                    for a in ("lo", "hi", "lower", "open", "depth", "sc", "zl", "zu"))
        keep = np.ones(n, dtype=bool)
        keep[idx] = False
        m = int(keep.sum())
        for name in FIELDS:
            arr = getattr(self, name)
            arr[:m] = arr[:n][keep]
        self.size = m
        return out

    def split_off(self):
        """Remove every other box in priority order (half the pool, a mix of hard and easy
        boxes) and return them as a dict of arrays (the fields of :data:`FIELDS`)."""
        n = self.size
        order = np.argsort(self.prio[:n], kind="stable")
        give = np.zeros(n, dtype=bool)
        give[order[1::2]] = True
        out = {name: getattr(self, name)[:n][give].copy() for name in FIELDS}
        m = n - int(give.sum())
        for name in FIELDS:
            arr = getattr(self, name)
            arr[:m] = arr[:n][~give]
        self.size = m
        return out
