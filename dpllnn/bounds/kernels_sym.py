"""Numba kernel for forward symbolic intervals over a batch of input boxes.

ReluVal / Neurify (Wang et al. 2018): every neuron carries a lower and an upper linear function of
the input, ``L(x) <= z <= U(x)``, propagated forward.  An affine layer maps them exactly,
``W+ L + W- U = W (L+U)/2 - |W| (U-L)/2`` (two GEMMs over the whole batch at once); an unstable
ReLU keeps ``U`` when ``U >= 0`` on the box, else replaces it by the chord
``s (U - U_lo)`` over the range ``[U_lo, U_hi]`` of ``U``; ``L`` is kept, zeroed, or scaled by
``lambda`` in [0, 1] (``lower_mode`` 0: adaptive 0/1 as in CROWN; 1: Neurify's parallel
``U_hi/(U_hi-U_lo)`` slope of ``L``'s own range).  Equations are stored as (n, B, n_in + 1)
arrays, the last column being the constant.

Equations are concretised with the float midpoint and radius of each box (their rounding, at
most ``2 u max|x|`` per coordinate, lies inside the margin).  Boxes are processed in blocks of a
few dozen so that the (n, block, n_in + 1) arrays stay in cache.

Floating point: every step widens the constant columns by ``gam * mag`` where ``mag`` bounds the
magnitude of every term involved (see ``pack.py``); the chord uses the same slack as
``kernels.chord``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .kernels import ABS_MARGIN, U_ROUND, chord


@njit(cache=True)
def _concretize(E, xmid, xrad, xmax, gam, lo, hi, mag):
    """Range of each equation of E (n, B, n1) over box beta; writes lo, hi, mag (n, B).

    Uses the float midpoint/radius of the box; their rounding (<= u |x|) is inside the margin.
    """
    n, B, n1 = E.shape
    n_in = n1 - 1
    for i in range(n):
        for bt in range(B):
            c = E[i, bt, n_in]
            v = c
            r = 0.0
            mg = abs(c)
            for t in range(n_in):
                e = E[i, bt, t]
                v += e * xmid[bt, t]
                r += abs(e) * xrad[bt, t]
                mg += abs(e) * xmax[bt, t]
            mag[i, bt] = mg
            lo[i, bt] = v - r - gam * mg - ABS_MARGIN
            hi[i, bt] = v + r + gam * mg + ABS_MARGIN


@njit(cache=True)
def _symbolic_block(Wf, Wa, bf, w_off, sizes, zoff, xl, xu, phase, C, d, gam, lower_mode,
                   lb_out, ub_out, obj_out, unstable_out, infeasible_out):
    """One block of :func:`symbolic_batch` (same arguments, B = this block's boxes)."""
    L = sizes.shape[0] - 2
    B = xl.shape[0]
    n_in = sizes[0]
    n1 = n_in + 1
    m = C.shape[0]
    store = lb_out.shape[0] == B
    xmax = np.maximum(np.abs(xl), np.abs(xu))
    xmid = (xl + xu) * 0.5
    xrad = (xu - xl) * 0.5
    dead = np.zeros(B, dtype=np.bool_)
    unstable_out[:] = 0
    # layer 0: exact copies of W_0, b_0
    n0 = sizes[1]
    W0 = Wf[w_off[0]:w_off[1]].reshape((n0, n_in))
    Lz = np.empty((n0, B, n1))
    for i in range(n0):
        for bt in range(B):
            Lz[i, bt, :n_in] = W0[i, :]
            Lz[i, bt, n_in] = bf[i]
    Uz = Lz.copy()
    for k in range(L + 1):
        n = sizes[k + 1]
        z0 = zoff[k]
        Llo = np.empty((n, B))
        Lhi = np.empty((n, B))
        Ulo = np.empty((n, B))
        Uhi = np.empty((n, B))
        magL = np.empty((n, B))
        magU = np.empty((n, B))
        _concretize(Lz, xmid, xrad, xmax, gam, Llo, Lhi, magL)
        _concretize(Uz, xmid, xrad, xmax, gam, Ulo, Uhi, magU)
        if k == L:
            break
        for i in range(n):
            ph = phase[z0 + i]
            for bt in range(B):
                lo = Llo[i, bt]
                hi = Uhi[i, bt]
                if ph == 1 and lo < 0.0:
                    lo = 0.0
                if ph == -1 and hi > 0.0:
                    hi = 0.0
                if store:
                    lb_out[bt, z0 + i] = lo
                    ub_out[bt, z0 + i] = hi
                if lo > hi:
                    dead[bt] = True
                if dead[bt] or ph == -1 or hi <= 0.0:
                    Lz[i, bt, :] = 0.0
                    Uz[i, bt, :] = 0.0
                    continue
                if ph == 1 or lo >= 0.0:
                    continue
                unstable_out[bt] += 1
                # upper equation
                if Ulo[i, bt] < 0.0:
                    s, t = chord(Ulo[i, bt], Uhi[i, bt])
                    for c in range(n1):
                        Uz[i, bt, c] *= s
                    Uz[i, bt, n_in] += t + 2.0 * U_ROUND * (s * magU[i, bt] + abs(t))
                # lower equation
                if Lhi[i, bt] <= 0.0:
                    Lz[i, bt, :] = 0.0
                elif Llo[i, bt] < 0.0:
                    if lower_mode == 1:
                        lam = Lhi[i, bt] / (Lhi[i, bt] - Llo[i, bt])
                    else:
                        lam = 1.0 if Lhi[i, bt] > -Llo[i, bt] else 0.0
                    for c in range(n1):
                        Lz[i, bt, c] *= lam
                    Lz[i, bt, n_in] -= 2.0 * U_ROUND * lam * magL[i, bt] + ABS_MARGIN
        # affine layer k+1 over the whole batch: two GEMMs
        n2 = sizes[k + 2]
        W = Wf[w_off[k + 1]:w_off[k + 2]].reshape((n2, n))
        Wab = Wa[w_off[k + 1]:w_off[k + 2]].reshape((n2, n))
        mag = np.empty((n, B))
        Cc = np.empty((n, B, n1))
        R = np.empty((n, B, n1))
        for i in range(n):
            for bt in range(B):
                mg = abs(Lz[i, bt, n_in]) + abs(Uz[i, bt, n_in])
                for t in range(n1):
                    lv = Lz[i, bt, t]
                    uv = Uz[i, bt, t]
                    Cc[i, bt, t] = (lv + uv) * 0.5
                    R[i, bt, t] = (uv - lv) * 0.5
                    if t < n_in:
                        mg += (abs(lv) + abs(uv)) * xmax[bt, t]
                mag[i, bt] = mg
        Zc = np.dot(W, Cc.reshape((n, B * n1))).reshape((n2, B, n1))
        Zr = np.dot(Wab, R.reshape((n, B * n1))).reshape((n2, B, n1))
        err = np.dot(Wab, mag)
        zb = zoff[k + 1]
        for i in range(n2):
            bi = bf[zb + i]
            for bt in range(B):
                for t in range(n1):
                    c = Zc[i, bt, t]
                    r = Zr[i, bt, t]
                    Zc[i, bt, t] = c - r
                    Zr[i, bt, t] = c + r
                e = gam * (err[i, bt] + abs(bi)) + ABS_MARGIN
                Zc[i, bt, n_in] += bi - e
                Zr[i, bt, n_in] += bi + e
        Lz = Zc
        Uz = Zr
    # outputs: box bounds, then the objective from the output equations
    zL = zoff[L]
    n_out = sizes[L + 1]
    if store:
        for i in range(n_out):
            for bt in range(B):
                lb_out[bt, zL + i] = Llo[i, bt]
                ub_out[bt, zL + i] = Uhi[i, bt]
    for r in range(m):
        E = np.zeros((1, B, n1))
        emag = np.zeros(B)
        for bt in range(B):
            E[0, bt, n_in] = -d[r]
            emag[bt] = abs(d[r])
        for i in range(n_out):
            cr = C[r, i]
            if cr == 0.0:
                continue
            src = Lz if cr > 0.0 else Uz
            srcm = magL if cr > 0.0 else magU
            for bt in range(B):
                for t in range(n1):
                    E[0, bt, t] += cr * src[i, bt, t]
                emag[bt] += abs(cr) * srcm[i, bt]
        lo = np.empty((1, B))
        hi = np.empty((1, B))
        mg = np.empty((1, B))
        _concretize(E, xmid, xrad, xmax, gam, lo, hi, mg)
        for bt in range(B):
            v = lo[0, bt] - gam * emag[bt]
            obj_out[bt, r] = np.inf if dead[bt] else v
    infeasible_out[:] = dead


@njit(cache=True)
def symbolic_batch(Wf, Wa, bf, w_off, sizes, zoff, xl, xu, phase, C, d, gam, lower_mode,
                   lb_out, ub_out, obj_out, unstable_out, infeasible_out):
    """Forward symbolic interval bounds for B boxes, processed in cache-sized blocks.

    Parameters: packed buffers; ``xl``, ``xu`` (B, n_in); ``phase`` int8 (n_z,) shared by all
    boxes; ``C`` (m, n_out), ``d`` (m,); ``lower_mode`` 0 (adaptive) or 1 (Neurify parallel).
    Writes ``lb_out``, ``ub_out`` (B, n_z) (or shape (0, 0) to skip), ``obj_out`` (B, m) lower
    bounds of ``C y - d``, ``unstable_out`` int64 (B,), ``infeasible_out`` bool (B,).  An
    infeasible box gets ``obj_out = +inf``.
    """
    B = xl.shape[0]
    store = lb_out.shape[0] == B
    blk = max(8, 16384 // (max(sizes.max(), 1) * (sizes[0] + 1)))
    for b0 in range(0, B, blk):
        b1 = min(B, b0 + blk)
        if store:
            lo = lb_out[b0:b1]
            hi = ub_out[b0:b1]
        else:
            lo = lb_out
            hi = ub_out
        _symbolic_block(Wf, Wa, bf, w_off, sizes, zoff, xl[b0:b1], xu[b0:b1], phase, C, d, gam,
                        lower_mode, lo, hi, obj_out[b0:b1], unstable_out[b0:b1],
                        infeasible_out[b0:b1])
