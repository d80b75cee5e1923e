"""Batched CROWN: bounds of many input boxes in one ``@njit`` call (input splitting).

Each box runs exactly the single-box pipeline of :func:`dpllnn.bounds.propagate.propagate_bounds`
with ``method="crown"`` followed by :func:`dpllnn.bounds.propagate.objective_bounds` (lower side):
an IBP pass, a CROWN pass intersected with it, then the backward pass from the objective rows.
The kernels called are the single-box ones of :mod:`dpllnn.bounds.kernels`, so the rounding
margin (``gam * mag + ABS_MARGIN`` on every result, the chord slack) and hence the soundness
argument are the same, and every box's numbers equal the single-box call bit for bit.  What the
batch saves is the per-box Python work (wrappers, shape checks, allocation of the result
objects), and with ``parallel`` the boxes are spread over threads (``numba.prange``).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import objective_lower, propagate_layers


@njit(cache=True)
def _crown_box(Wf, Wp, Wn, Wa, bf, w_off, sizes, zoff, xl, xu, phase, P, c, gam, n_relus,
               zl, zu, low, ain, store_ain, early_stop, plb, pub):
    """One box: hidden/output bounds into ``zl``/``zu`` (n_z,), objective lower bounds into
    ``low`` (m,) (``+inf`` when the box or the phases are empty), input coefficients of the
    objective's linear lower bound into ``ain`` (m, n_in) if ``store_ain``.  Returns the
    number of unstable hidden neurons, or -1 if infeasible."""
    n_in = xl.shape[0]
    m = P.shape[0]
    for i in range(n_in):
        if xl[i] > xu[i]:
            for r in range(m):
                low[r] = np.inf
            return -1
    nz = zl.shape[0]
    ilb = np.full(nz, np.nan)
    iub = np.full(nz, np.nan)
    iwa = np.zeros(nz)
    bad = propagate_layers(Wf, Wp, Wn, Wa, bf, w_off, sizes, zoff, xl, xu, phase, ilb, iub, iwa,
                           0, False, plb, pub, gam, False)
    if bad < 0:
        for i in range(nz):
            zl[i] = np.nan
            zu[i] = np.nan
        wa = np.zeros(nz)
        bad = propagate_layers(Wf, Wp, Wn, Wa, bf, w_off, sizes, zoff, xl, xu, phase, zl, zu, wa,
                               0, True, ilb, iub, gam, early_stop)
    if bad >= 0:
        for r in range(m):
            low[r] = np.inf
        return -1
    empty2 = np.zeros((0, 0))
    if store_ain:
        objective_lower(Wf, bf, w_off, sizes, zoff, xl, xu, zl, zu, phase, wa, P, c, empty2,
                        empty2, gam, low, ain, np.zeros(0, dtype=np.int64),
                        np.zeros(0, dtype=np.int8))
    else:
        objective_lower(Wf, bf, w_off, sizes, zoff, xl, xu, zl, zu, phase, wa, P, c, empty2,
                        empty2, gam, low, empty2, np.zeros(0, dtype=np.int64),
                        np.zeros(0, dtype=np.int8))
    cnt = 0
    for i in range(n_relus):
        if phase[i] == 0 and zl[i] < 0.0 and zu[i] > 0.0:
            cnt += 1
    return cnt


@njit(cache=True)
def crown_batch(Wf, Wp, Wn, Wa, bf, w_off, sizes, zoff, xl, xu, phase, P, c, gam, n_relus,
                zl, zu, low, ain, unst, early_stop, plb, pub):
    """CROWN on boxes ``xl``/``xu`` (B, n_in) sequentially.

    ``phase`` (n_z,) int8 shared; ``P`` (m, n_out), ``c`` (m,): objective ``P y + c``.
    Writes ``zl``/``zu`` (B, n_z), ``low`` (B, m), ``unst`` (B,) (-1: infeasible) and, when
    ``ain`` has B rows, ``ain`` (B, m, n_in).  ``early_stop``: as in
    :func:`dpllnn.bounds.kernels.propagate_layers` (hidden bounds of neurons proven stable are
    then the interval that proved them; the objective bound stays sound).  ``plb``/``pub``
    (B, n_z) or 0 rows: sound bounds known for each box (e.g. from a superset box, under the same
    phases), intersected into its interval pass, so into everything after it.
    """
    B = xl.shape[0]
    store = ain.shape[0] == B
    inherit = plb.shape[0] == B
    empty3 = np.zeros((1, 0, 0))
    nz = zl.shape[1]
    ninf = np.full(nz, -np.inf)
    pinf = np.full(nz, np.inf)
    for b in range(B):
        a = ain[b] if store else empty3[0]
        pl = plb[b] if inherit else ninf
        pu = pub[b] if inherit else pinf
        unst[b] = _crown_box(Wf, Wp, Wn, Wa, bf, w_off, sizes, zoff, xl[b], xu[b], phase, P, c,
                             gam, n_relus, zl[b], zu[b], low[b], a, store, early_stop, pl, pu)


@njit(cache=True, parallel=True)
def crown_batch_parallel(Wf, Wp, Wn, Wa, bf, w_off, sizes, zoff, xl, xu, phase, P, c, gam,
                         n_relus, zl, zu, low, ain, unst, early_stop, plb, pub):
    """:func:`crown_batch` with the boxes spread over threads (``numba.prange``)."""
    B = xl.shape[0]
    store = ain.shape[0] == B
    inherit = plb.shape[0] == B
    empty3 = np.zeros((1, 0, 0))
    nz = zl.shape[1]
    ninf = np.full(nz, -np.inf)
    pinf = np.full(nz, np.inf)
    for b in prange(B):
        a = ain[b] if store else empty3[0]
        pl = plb[b] if inherit else ninf
        pu = pub[b] if inherit else pinf
        unst[b] = _crown_box(Wf, Wp, Wn, Wa, bf, w_off, sizes, zoff, xl[b], xu[b], phase, P, c,
                             gam, n_relus, zl[b], zu[b], low[b], a, store, early_stop, pl, pu)
