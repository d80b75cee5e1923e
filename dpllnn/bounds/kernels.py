"""Numba kernels for interval (IBP) and backward linear (CROWN / DeepPoly) bound propagation.

Kernels only: arrays and scalars in, preallocated arrays out, ``@njit(cache=True, nogil=True)``
(the GIL released: a relaxation LP thread runs beside them, ``dpllnn.search.asynclp``), no
fastmath.
The ``*_rows`` variants (``parallel=True``) split the independent rows of a backward pass into
``nt`` blocks run on numba's threads (``nt`` from :func:`dpllnn.bounds.threads.kernel_threads`):
each row gets the serial kernel's arithmetic, except that BLAS may sum a product in another order
for another block size (last-bit differences, inside the same outward margins: sound either way).
Buffers and index spaces are those of :mod:`dpllnn.bounds.pack`; the typed wrappers are in
:mod:`dpllnn.bounds.propagate`.

Soundness in floating point (see ``pack.py``): every kernel returns ``value -/+ gam * mag - ABS``
where ``mag`` bounds the sum of absolute values of every term that entered ``value``; ``gam`` is
``PackedNet.margin_factor``.  The ReLU upper chord gets its own slack so that the *float* line
``s z + t`` lies above ``relu`` on ``[l, u]``.

Relaxation of an unstable neuron ``l < 0 < u`` (Zhang et al. 2018 CROWN; Singh et al. 2019 DeepPoly):
upper ``a <= s (z - l)`` with ``s = u / (u - l)``; lower ``a >= alpha z`` with ``alpha`` in [0, 1],
by default adaptive (``1`` if ``u > -l`` else ``0``), optimised in alpha-CROWN (Xu et al. 2021).
A neuron with phase +1 (or ``l >= 0``) is the identity, phase -1 (or ``u <= 0``) is zero.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

U_ROUND = 2.0 ** -53
ABS_MARGIN = 1e-290
_NO_IDX = np.zeros(0, dtype=np.int64)
_NO_SGN = np.zeros(0, dtype=np.int8)


@njit(cache=True, nogil=True)
def chord(l, u):
    """Sound float chord ``relu(z) <= s z + t`` on ``[l, u]``, ``l < 0 < u``; returns ``(s, t)``."""
    s = u / (u - l)
    t = max(-s * l, u * (1.0 - s))
    t += 4.0 * U_ROUND * (abs(s * l) + u) + ABS_MARGIN
    return s, t


@njit(cache=True, nogil=True)
def post_bounds(lb, ub, z0, n, al, au):
    """Post-activation box of ReLU layer at ``lb/ub[z0:z0+n]`` into ``al``, ``au`` (n,)."""
    for i in range(n):
        al[i] = max(lb[z0 + i], 0.0)
        au[i] = max(ub[z0 + i], 0.0)


@njit(cache=True, nogil=True)
def ibp_layer(Wp, Wn, Wa, bf, w_off, sizes, zoff, k, al, au, amax, gam, out_l, out_u, wa_out):
    """Interval bounds of affine layer ``k`` from the box ``[al, au]`` of its input.

    ``amax >= |input|`` elementwise; writes ``out_l``, ``out_u`` and the magnitude
    ``wa_out = |W_k| amax + |b_k|`` (all shape (sizes[k+1],)).
    """
    n_out = sizes[k + 1]
    n_in = sizes[k]
    base = w_off[k]
    zb = zoff[k]
    for i in range(n_out):
        lo = 0.0
        hi = 0.0
        mg = 0.0
        row = base + i * n_in
        for j in range(n_in):
            lo += Wp[row + j] * al[j] + Wn[row + j] * au[j]
            hi += Wp[row + j] * au[j] + Wn[row + j] * al[j]
            mg += Wa[row + j] * amax[j]
        bi = bf[zb + i]
        mg += abs(bi)
        wa_out[i] = mg
        out_l[i] = lo + bi - gam * mg - ABS_MARGIN
        out_u[i] = hi + bi + gam * mg + ABS_MARGIN


@njit(cache=True, nogil=True)
def backward_lower(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase, wa, A, const, mag,
                   jtop, alpha, Astore, gam, early_stop, out, Ain, ov_idx, ov_sgn):
    """Lower bound of ``A @ a_jtop + const`` over the box and the phase constraints.

    ``A`` (m, sizes[jtop+1]) is the coefficient on ``a_jtop`` (``jtop = -1``: on ``x``); ``const``
    and ``mag`` (m,) hold the constant and a bound on the magnitude of what is in it (both are
    consumed).  ``alpha`` (m, n_relus) gives per-row lower slopes, or has 0 rows for the adaptive
    default.  If ``Astore`` has m rows, the coefficient on each ``a_j`` before relaxation is stored
    there (flat neuron index), for alpha gradients.  With ``early_stop`` a row stops as soon as the
    interval of an intermediate layer already proves its lower bound ``>= 0`` (enough to decide a
    neuron's sign; ``Astore``/``Ain`` then meaningless).  Writes ``out`` (m,) and, if it has m
    rows, the final input coefficient into ``Ain`` (m, n_in).  ``ov_idx`` (m,) int64 and
    ``ov_sgn`` (m,) int8, if of length m (length 0: no overrides): row ``r`` is bounded as if flat neuron ``ov_idx[r]`` (-1:
    none) had the phase ``ov_sgn[r]`` (exact identity / zero there; FSB's children, many in one
    pass).
    """
    m = A.shape[0]
    use_ov = ov_idx.shape[0] == m
    use_alpha = alpha.shape[0] == m
    store = Astore.shape[0] == m
    rows = np.arange(m)
    for j in range(jtop, -1, -1):
        z0 = zoff[j]
        n = sizes[j + 1]
        mc = A.shape[0]
        # per neuron: lower slope sl, upper slope su, upper intercept tu, magnitude weight zm;
        # identity is (1, 1, 0, 0), zero is (0, 0, 0, 0): the row loop is branch-free
        unst = np.zeros(n, dtype=np.bool_)
        sl = np.empty(n)
        su = np.empty(n)
        tu = np.zeros(n)
        zm = np.zeros(n)
        for i in range(n):
            l = lb[z0 + i]
            u = ub[z0 + i]
            ph = phase[z0 + i]
            if ph == 1 or l >= 0.0:
                sl[i] = 1.0
                su[i] = 1.0
            elif ph == -1 or u <= 0.0:
                sl[i] = 0.0
                su[i] = 0.0
            else:
                unst[i] = True
                s, t = chord(l, u)
                su[i] = s
                tu[i] = t
                sl[i] = 1.0 if u > -l else 0.0
                zm[i] = 2.0 * max(-l, u)
        bj = bf[z0:z0 + n]
        waj = wa[z0:z0 + n]
        slr = sl.copy()
        for r in range(mc):
            ro = rows[r]
            if use_alpha:
                for i in range(n):
                    if unst[i]:
                        slr[i] = alpha[ro, z0 + i]
            if store:
                for i in range(n):
                    Astore[ro, z0 + i] = A[r, i]
            iov = -1
            if use_ov:
                q = ov_idx[ro] - z0
                if q >= 0 and q < n:
                    iov = q
                    k_sl, k_su, k_tu, k_zm = slr[q], su[q], tu[q], zm[q]
                    one = 1.0 if ov_sgn[ro] > 0 else 0.0
                    slr[q] = one
                    su[q] = one
                    tu[q] = 0.0
                    zm[q] = 0.0
            c = 0.0
            mg = 0.0
            for i in range(n):
                a = A[r, i]
                ap = max(a, 0.0)
                an = min(a, 0.0)
                v = ap * slr[i] + an * su[i]
                A[r, i] = v
                c += an * tu[i] + v * bj[i]
                mg += (ap - an) * zm[i] + abs(v) * waj[i]
            const[r] += c
            mag[r] += mg
            if iov >= 0:
                slr[iov], su[iov], tu[iov], zm[iov] = k_sl, k_su, k_tu, k_zm
        # affine layer j: z_j = W_j a_{j-1} + b_j (bias and its margin were fused above)
        Wj = Wf[w_off[j]:w_off[j + 1]].reshape((sizes[j + 1], sizes[j]))
        A = np.dot(A, Wj)
        if early_stop and j > 0:
            zp = zoff[j - 1]
            npv = sizes[j]
            keep = np.ones(mc, dtype=np.bool_)
            nkeep = 0
            for r in range(mc):
                v = const[r]
                mg = mag[r]
                for i in range(npv):
                    a = A[r, i]
                    au = max(ub[zp + i], 0.0)
                    v += max(a, 0.0) * max(lb[zp + i], 0.0) + min(a, 0.0) * au
                    mg += abs(a) * au
                v = v - gam * mg - ABS_MARGIN
                if v >= 0.0:
                    out[rows[r]] = v
                    keep[r] = False
                else:
                    nkeep += 1
            if nkeep < mc:
                idx = np.flatnonzero(keep)
                A = A[idx]
                const = const[idx]
                mag = mag[idx]
                rows = rows[idx]
                if nkeep == 0:
                    return
    n_in = sizes[0]
    for r in range(A.shape[0]):
        v = const[r]
        mg = mag[r]
        for i in range(n_in):
            a = A[r, i]
            v += a * xl[i] if a >= 0.0 else a * xu[i]
            mg += abs(a) * xmax[i]
        out[rows[r]] = v - gam * mg - ABS_MARGIN
    if Ain.shape[0] == m and A.shape[0] == m:
        Ain[:, :] = A


@njit(cache=True, parallel=True, nogil=True)
def backward_lower_rows(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase, wa, A, const, mag,
                        jtop, alpha, Astore, gam, early_stop, out, Ain, nt):
    """:func:`backward_lower` with its rows split into ``nt`` blocks, one per thread (``alpha``,
    ``Astore``, ``Ain``: 0 rows, or one per row of ``A``)."""
    m = A.shape[0]
    for t in prange(nt):
        a = t * m // nt
        b = (t + 1) * m // nt
        backward_lower(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase, wa, A[a:b],
                       const[a:b], mag[a:b], jtop, alpha[a:b], Astore[a:b], gam, early_stop,
                       out[a:b], Ain[a:b], np.zeros(0, dtype=np.int64),
                       np.zeros(0, dtype=np.int8))


#: fewest rows per thread worth a parallel backward pass
ROWS_PER_THREAD = 4


@njit(cache=True, nogil=True)
def propagate_layers(Wf, Wp, Wn, Wa, bf, w_off, sizes, zoff, xl, xu, phase, lb, ub, wa, start,
                     use_crown, ilb, iub, gam, early_stop, nt=1):
    """Bounds of affine layers ``start..L`` into ``lb``, ``ub``, ``wa`` (n_z,), in place.

    Layers below ``start`` must already hold sound bounds.  With ``use_crown`` every layer
    ``k >= 1`` is refined by a backward pass (CROWN) for the neurons IBP leaves unstable (all
    outputs), and intersected with IBP from the refined previous layer and with ``ilb``/``iub``
    (n_z,; pass ``-inf``/``+inf`` for none); ``nt`` > 1 runs each layer's backward pass on
    ``nt`` threads (:func:`backward_lower_rows`).  ``early_stop``: see :func:`backward_lower` (then a
    neuron proven stable keeps the interval bound that proved it, not its full CROWN bound).  Bounds are clamped by ``phase`` (int8, n_z; zero on
    outputs).  Returns the flat index of the first neuron with ``lb > ub`` (infeasible phases), or
    -1.  After an infeasible layer the later layers are left untouched.
    """
    L = sizes.shape[0] - 2
    n_in = sizes[0]
    xmax = np.maximum(np.abs(xl), np.abs(xu))
    empty2 = np.zeros((0, 0))
    for k in range(start, L + 1):
        n = sizes[k + 1]
        z0 = zoff[k]
        if k == 0:
            al = xl.copy()
            au = xu.copy()
            am = xmax
        else:
            np_ = sizes[k]
            al = np.empty(np_)
            au = np.empty(np_)
            post_bounds(lb, ub, zoff[k - 1], np_, al, au)
            am = au
        lo = np.empty(n)
        hi = np.empty(n)
        ibp_layer(Wp, Wn, Wa, bf, w_off, sizes, zoff, k, al, au, am, gam, lo, hi, wa[z0:z0 + n])
        if use_crown and k > 0:
            # rows: what IBP (from the refined previous layer, before phase clamping) leaves
            # undecided, and only the side the phase does not fix
            nprev = sizes[k]
            want_lo = np.zeros(n, dtype=np.bool_)
            want_hi = np.zeros(n, dtype=np.bool_)
            m = 0
            for i in range(n):
                ph = phase[z0 + i]
                # a free neuron that IBP or ``ilb``/``iub`` (the outer bounds) already prove
                # stable needs no CROWN bound: only unstable neurons' bounds enter later
                # relaxations (a neuron with a phase keeps its rows: they detect conflicts)
                li, hi_ = lo[i], hi[i]
                if ph == 0:
                    li = max(li, ilb[z0 + i])
                    hi_ = min(hi_, iub[z0 + i])
                if k == L or (li < 0.0 and hi_ > 0.0):
                    if ph != 1 and li < hi_:
                        want_lo[i] = True
                        m += 1
                    if ph != -1 and li < hi_:
                        want_hi[i] = True
                        m += 1
            if m > 0:
                Wk = Wf[w_off[k]:w_off[k + 1]].reshape((n, nprev))
                A = np.empty((m, nprev))
                const = np.empty(m)
                mag = np.empty(m)
                r = 0
                for i in range(n):
                    if want_lo[i]:
                        A[r, :] = Wk[i, :]
                        const[r] = bf[z0 + i]
                        mag[r] = abs(bf[z0 + i])
                        r += 1
                    if want_hi[i]:
                        A[r, :] = -Wk[i, :]
                        const[r] = -bf[z0 + i]
                        mag[r] = abs(bf[z0 + i])
                        r += 1
                out = np.empty(m)
                if nt > 1 and m >= nt * ROWS_PER_THREAD:
                    backward_lower_rows(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase,
                                        wa, A, const, mag, k - 1, empty2, empty2, gam,
                                        early_stop and k < L, out, empty2, nt)
                else:
                    backward_lower(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase, wa,
                                   A, const, mag, k - 1, empty2, empty2, gam,
                                   early_stop and k < L, out, empty2,
                                   np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8))
                r = 0
                for i in range(n):
                    if want_lo[i]:
                        lo[i] = max(lo[i], out[r])
                        r += 1
                    if want_hi[i]:
                        hi[i] = min(hi[i], -out[r])
                        r += 1
        for i in range(n):
            lo[i] = max(lo[i], ilb[z0 + i])
            hi[i] = min(hi[i], iub[z0 + i])
        bad = -1
        for i in range(n):
            ph = phase[z0 + i]
            if ph == 1 and lo[i] < 0.0:
                lo[i] = 0.0
            elif ph == -1 and hi[i] > 0.0:
                hi[i] = 0.0
            lb[z0 + i] = lo[i]
            ub[z0 + i] = hi[i]
            if lo[i] > hi[i] and bad < 0:
                bad = z0 + i
        if bad >= 0:
            return bad
    return -1


@njit(cache=True, nogil=True)
def objective_lower(Wf, bf, w_off, sizes, zoff, xl, xu, lb, ub, phase, wa, P, c, alpha, Astore,
                    gam, out, Ain, ov_idx, ov_sgn):
    """Lower bound of ``P @ y + c`` (P (m, n_out), c (m,)) by a backward pass from the output.

    Uses the hidden bounds ``lb``/``ub`` and magnitudes ``wa`` (n_z,) of a previous
    :func:`propagate_layers`; ``alpha``, ``Astore``, ``Ain`` as in :func:`backward_lower`.
    The result is also intersected with the interval of ``P @ y + c`` over the output box
    ``lb/ub[zoff[L]:]``.  Writes ``out`` (m,).  ``ov_idx``/``ov_sgn``: per-row phase overrides,
    as in :func:`backward_lower`.
    """
    L = sizes.shape[0] - 2
    zL = zoff[L]
    n_out = sizes[L + 1]
    m = P.shape[0]
    xmax = np.maximum(np.abs(xl), np.abs(xu))
    WL = Wf[w_off[L]:w_off[L + 1]].reshape((n_out, sizes[L]))
    absP = np.abs(P)
    const = c + np.dot(P, bf[zL:zL + n_out])
    mag = np.abs(c) + np.dot(absP, wa[zL:zL + n_out])
    A = np.dot(P, WL)
    backward_lower(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase, wa, A, const, mag,
                   L - 1, alpha, Astore, gam, False, out, Ain, ov_idx, ov_sgn)
    for r in range(m):
        v = c[r]
        mg = abs(c[r])
        for i in range(n_out):
            p = P[r, i]
            yl = lb[zL + i]
            yu = ub[zL + i]
            v += p * yl if p >= 0.0 else p * yu
            mg += abs(p) * max(abs(yl), abs(yu))
        v = v - gam * mg - ABS_MARGIN
        if v > out[r]:
            out[r] = v


@njit(cache=True, parallel=True, nogil=True)
def objective_lower_rows(Wf, bf, w_off, sizes, zoff, xl, xu, lb, ub, phase, wa, P, c, alpha,
                         Astore, gam, out, Ain, ov_idx, ov_sgn, nt):
    """:func:`objective_lower` with the rows of ``P`` split into ``nt`` blocks, one per thread."""
    m = P.shape[0]
    for t in prange(nt):
        a = t * m // nt
        b = (t + 1) * m // nt
        objective_lower(Wf, bf, w_off, sizes, zoff, xl, xu, lb, ub, phase, wa, P[a:b], c[a:b],
                        alpha[a:b], Astore[a:b], gam, out[a:b], Ain[a:b], ov_idx[a:b],
                        ov_sgn[a:b])


@njit(cache=True, nogil=True)
def relaxed_forward_grad(Wf, bf, w_off, sizes, zoff, xl, xu, lb, ub, phase, alpha, Astore, Ain,
                         n_fwd, grad):
    """Gradient of each row's backward lower bound w.r.t. its lower slopes ``alpha`` (m, n_relus).

    The bound equals the relaxed network evaluated at the minimising box vertex ``x*`` (chosen by
    the sign of ``Ain``), each unstable neuron replaced by the relaxation the backward pass chose
    (by the sign of ``Astore``); so ``d bound / d alpha_i = Astore_i * z_i`` where the lower slope
    was used.  ``n_fwd`` ReLU layers are traversed (``L`` for the objective, ``k`` for rows on
    ``z_k``).  Writes ``grad`` (m, n_relus); no margin needed (heuristic only).
    """
    m = Ain.shape[0]
    L = n_fwd
    n_in = sizes[0]
    grad[:, :] = 0.0
    a = np.empty((m, n_in))
    for r in range(m):
        for i in range(n_in):
            a[r, i] = xl[i] if Ain[r, i] >= 0.0 else xu[i]
    for j in range(L):
        z0 = zoff[j]
        n = sizes[j + 1]
        Wj = Wf[w_off[j]:w_off[j + 1]].reshape((n, sizes[j]))
        z = np.dot(a, Wj.T)
        for i in range(n):
            l = lb[z0 + i]
            u = ub[z0 + i]
            ph = phase[z0 + i]
            bi = bf[z0 + i]
            if ph == 1 or l >= 0.0:
                for r in range(m):
                    z[r, i] += bi
                continue
            if ph == -1 or u <= 0.0:
                for r in range(m):
                    z[r, i] = 0.0
                continue
            s, t = chord(l, u)
            for r in range(m):
                v = z[r, i] + bi
                if Astore[r, z0 + i] >= 0.0:
                    grad[r, z0 + i] = Astore[r, z0 + i] * v
                    z[r, i] = alpha[r, z0 + i] * v
                else:
                    z[r, i] = s * v + t
        a = z


@njit(cache=True, nogil=True)
def interval_objective(P, c, ylo, yhi, gam, out):
    """Lower bound of ``P @ y + c`` over the box ``[ylo, yhi]``; P (m, n), writes out (m,)."""
    m, n = P.shape
    for r in range(m):
        v = c[r]
        mg = abs(c[r])
        for i in range(n):
            p = P[r, i]
            v += p * ylo[i] if p >= 0.0 else p * yhi[i]
            mg += abs(p) * max(abs(ylo[i]), abs(yhi[i]))
        out[r] = v - gam * mg - ABS_MARGIN
