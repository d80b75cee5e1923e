"""Objective rows of a case's open disjuncts for the input-splitting search.

:func:`stack_rows` stacks the rows ``C y <= d`` of several disjuncts (with the first row of each
as ``groups``), optionally with :func:`combined_rows`: exact convex combinations of one
disjunct's rows, implied by it, which can refute a box no single row does.
"""
from __future__ import annotations

import numpy as np

__all__ = ["combined_rows", "stack_rows"]

def _weights(r, q):
    """Weight vectors with entries in ``{0, 1/q, ..., 1}``, sum 1, at least two nonzero."""
    out = []

    def rec(prefix, left):
        if len(prefix) == r - 1:
            w = prefix + [left]
            if sum(1 for x in w if x) >= 2:
                out.append(w)
            return
        for v in range(left + 1):
            rec(prefix + [v], left - v)
    rec([], q)
    return out


def combined_rows(C, d, q=None):
    """Rows implied by the conjunction ``C y <= d`` (one disjunct): convex combinations of its
    rows with weights in multiples of ``1/q`` (``q = 4`` for up to 4 rows, ``2`` for up to 6,
    none beyond).  A convex combination of the rows is ``<= 0`` wherever all rows are, so a lower
    bound ``> 0`` on it refutes the disjunct just as well, and it can refute a box that no single
    row does.  Soundness in float: the combination is computed in exact rational arithmetic; its
    coefficients are kept only when they are floats exactly, and its right-hand side is rounded up
    (which only weakens the row).  Returns (C2, d2) of the extra rows (possibly 0 rows)."""
    from fractions import Fraction
    r = C.shape[0]
    if q is None:
        q = 4 if r <= 4 else (2 if r <= 6 else 0)
    C2, d2 = [], []
    if q < 2 or r < 2:
        return np.zeros((0, C.shape[1])), np.zeros(0)
    Cf = [[Fraction(float(v)) for v in row] for row in C]
    df = [Fraction(float(v)) for v in d]
    for w in _weights(r, q):
        coef = []
        ok = True
        for j in range(C.shape[1]):
            e = sum(Fraction(w[i], q) * Cf[i][j] for i in range(r) if w[i])
            f = float(e)
            if Fraction(f) != e:
                ok = False
                break
            coef.append(f)
        if not ok:
            continue
        e = sum(Fraction(w[i], q) * df[i] for i in range(r) if w[i])
        f = float(e)
        if Fraction(f) < e:
            f = float(np.nextafter(f, np.inf))
        C2.append(coef)
        d2.append(f)
    if not C2:
        return np.zeros((0, C.shape[1])), np.zeros(0)
    return np.array(C2), np.array(d2)


def stack_rows(case, idx, combine=False, q=0):
    """Stack the rows of ``case.disjuncts[i]`` for ``i`` in ``idx`` (with :func:`combined_rows`
    when ``combine``): returns ``C (m, n_out)``, ``d (m,)``, ``groups`` (first row of each
    disjunct, int64)."""
    Cs = [case.disjuncts[i].C for i in idx]
    ds = [case.disjuncts[i].d for i in idx]
    if combine:
        ext = [combined_rows(c, dd, q or None) for c, dd in zip(Cs, ds)]
        Cs = [np.vstack([c, e[0]]) for c, e in zip(Cs, ext)]
        ds = [np.concatenate([dd, e[1]]) for dd, e in zip(ds, ext)]
    groups = np.cumsum([0] + [c.shape[0] for c in Cs[:-1]]).astype(np.int64)
    return np.ascontiguousarray(np.vstack(Cs)), np.ascontiguousarray(np.concatenate(ds)), groups
