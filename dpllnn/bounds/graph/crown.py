"""The graph engine's two passes: interval propagation forward, linear relaxation backward.

Backward (CROWN, Zhang et al. 2018 / DeepPoly, Singh et al. 2019, over any DAG as in
auto_LiRPA): a lower bound of ``<A, v>`` for a node ``v`` and coefficient rows ``A`` of shape
``(m, *shape_v)`` is found by sweeping the nodes in reverse topological order.  Each node holds
the sum of the coefficients its consumers passed down (branches meet by addition; the reverse
order means every consumer has contributed before a node is passed on, whatever the nesting of
residual blocks).  A linear op passes ``op.transpose(A)`` to its inputs and adds
``op.bias_term(A)`` to the running constant; a ReLU with pre-activation bounds ``[l, u]`` passes
``A+ * alpha + A- * s`` (lower slope ``alpha`` in [0, 1], upper chord slope ``s = u / (u - l)``)
and adds ``A- * (-s l)``; an active neuron (phase +1 or ``l >= 0``) passes ``A``, an inactive one
(phase -1 or ``u <= 0``) nothing.  At the input the bound is concretised over the box.

Soundness in float64: the sweep also sums, per row, the magnitude of every term that entered the
result (``|A| . wa`` at each linear op, where ``wa = |W| max|input| + |bias|`` bounds every
product of the op; ``|A'| . max|z|`` at each ReLU; both summands where branches meet; the
intercepts and the concretisation), and the bound is moved down by ``margin_factor * mag``
(``gpack`` docstring).  Rows are processed in chunks to bound memory.
"""
from __future__ import annotations

import numpy as np

from ...model.graph import Relu
from ..pack import ABS_MARGIN

__all__ = ["ibp_node", "relu_relaxation", "backward_lower"]


def ibp_node(op, los, his, gam):
    """Interval bounds of one linear op's output from its inputs' bounds.

    Parameters
    ----------
    op : LinearOp;  los, his : list of ndarray (1, *in_shape_i);  gam : float (margin factor)

    Returns
    -------
    (lo, hi, wa) : ndarray (1, *out_shape) each; ``wa = |W| max|x| + |bias|``
    """
    mids = [0.5 * (l + h) for l, h in zip(los, his)]
    # radius rounded up, so [l, h] lies inside [mid - rad, mid + rad] in exact arithmetic
    rads = [np.maximum(h - m, m - l) * (1.0 + 4.0 * 2.0 ** -53) + ABS_MARGIN
            for l, h, m in zip(los, his, mids)]
    amax = [np.maximum(np.abs(l), np.abs(h)) for l, h in zip(los, his)]
    c = op.forward(*mids)
    r = op.abs_forward(*rads)
    wa = op.abs_forward(*amax, bias=True)
    slack = gam * (wa + r) + ABS_MARGIN
    return c - r - slack, c + r + slack, wa


def relu_relaxation(l, u, phase, alpha=None):
    """Slopes and intercept of the CROWN relaxation of ``relu`` on ``[l, u]`` (flat arrays).

    Returns
    -------
    lo_slope : ndarray -- lower slope (``alpha`` rows (m, n) if given, else the adaptive 0/1
        choice: 1 where ``u >= -l``), broadcastable against coefficient rows
    up_slope, up_icpt : ndarray (n,) -- the chord ``s z - s l`` above relu on ``[l, u]``
    """
    return _with_alpha(_relu_parts(l, u, phase), alpha)


def _relu_parts(l, u, phase):
    """The slope-independent part of :func:`relu_relaxation`: (active mask, unstable mask,
    upper slope, upper intercept, adaptive lower slope), flat arrays."""
    act = (phase == 1) | ((phase == 0) & (l >= 0.0))
    ina = (phase == -1) | ((phase == 0) & (u <= 0.0) & ~act)
    unst = ~(act | ina)
    den = np.where(unst, u - l, 1.0)
    s = np.where(unst, u / den, 0.0)
    # the chord through (l, 0) and (u, u): intercept -s l >= 0; rounding of s is absorbed by
    # nudging the intercept up by the margin of the product below (always above relu)
    icpt = np.where(unst, -s * l, 0.0)
    icpt = np.where(unst, icpt + 4.0 * 2.0 ** -53 * (np.abs(icpt) + np.abs(s * u)) + ABS_MARGIN,
                    0.0)
    up = np.where(act, 1.0, s)
    lo = np.where(act, 1.0, np.where(unst & (u >= -l), 1.0, 0.0))
    return act, unst, up, icpt, lo


def _with_alpha(parts, alpha):
    act, unst, up, icpt, lo = parts
    if alpha is not None:
        lo = np.where(act, 1.0, np.where(unst, np.clip(alpha, 0.0, 1.0), 0.0))
    return lo, up, icpt


class SweepState:
    """What the backward sweep needs of a region's bounds: per node the interval
    ``lo[v], hi[v]`` (1, *shape) (ReLU pre-activations clamped by phase), ``amax[v]`` and
    ``wa[v]`` (magnitudes), and per ReLU number ``k`` its phase (flat int8)."""

    def __init__(self, gp, lo, hi, wa, phase):
        self.gp, self.lo, self.hi, self.wa, self.phase = gp, lo, hi, wa, phase
        self._amax = {}
        self._relax = {}

    def relaxation(self, k, alpha=None):
        """:func:`relu_relaxation` of ReLU number ``k`` on this state's bounds and phases; the
        slope-independent part is computed once per state (alpha- and beta-CROWN make one
        backward pass per step on the same bounds)."""
        parts = self._relax.get(k)
        if parts is None:
            p = self.gp.pre[k]
            parts = _relu_parts(self.lo[p].reshape(-1), self.hi[p].reshape(-1), self.phase[k])
            self._relax[k] = parts
        return _with_alpha(parts, alpha)

    def amax(self, v) -> np.ndarray:
        """``max(|lo[v]|, |hi[v]|)`` flat (cached: a node is final once a pass reads it)."""
        a = self._amax.get(v)
        if a is None:
            a = np.maximum(np.abs(self.lo[v]), np.abs(self.hi[v])).reshape(-1)
            self._amax[v] = a
        return a


def _rows_chunk(gp, target) -> int:
    widest = gp.widest_upto[target]
    return max(1, int(gp.row_chunk_bytes // (8 * 4 * max(widest, 1))))


def backward_lower(st: SweepState, target: int, A: np.ndarray, alphas=None, overrides=None,
                   want_coeffs=False, tape=None, betas=None):
    """Sound lower bounds of ``<A[r], value of node target>`` over the region of ``st``.

    Parameters
    ----------
    st : SweepState
    target : int -- node index
    A : ndarray, float64, (m, *shape of target)
    alphas : dict, optional -- ReLU number ``k`` -> lower slopes (m, size_k) for these rows
    overrides : (idx (m,), sgn (m,)), optional -- row ``r`` treats flat neuron ``idx[r]`` as
        having phase ``sgn[r]`` (the two children of a split in one pass; -1 in ``idx``: none)
    want_coeffs : bool -- also return the input coefficients (m, n_inputs)
    tape : dict, optional -- filled with what the alpha gradient needs: ``tape[k]`` =
        ``(coefficients at the ReLU's output, lower slopes, upper slopes, intercepts)`` per ReLU number
        (the rows are not chunked when a tape is asked for)
    betas : dict, optional -- ReLU number ``k`` -> coefficients (m, size_k) added to the rows
        at the ReLU's pre-activation: beta-CROWN's Lagrangian terms ``-beta_j s_j z_j`` of the
        split constraints ``s_j z_j >= 0`` (``dpllnn.bounds.graph.beta``); the result is then a
        lower bound of ``<A, v> - sum_j beta_j s_j z_j``, which is below ``<A, v>`` wherever the
        splits hold (weak duality).  Not with ``overrides``; rows are not chunked.

    Returns
    -------
    lower : ndarray (m,) [, A_in (m, n_inputs)]
    """
    m = A.shape[0]
    if alphas is not None and not isinstance(alphas, dict):   # flat (m, n_relus) slopes
        z = st.gp.zoff
        # (m, w): slopes of the first ReLUs only (an intermediate node's ancestors)
        alphas = {k: alphas[:, z[k]:z[k + 1]] for k in range(st.gp.n_layers)
                  if z[k + 1] <= alphas.shape[1]}
    step = _rows_chunk(st.gp, target)
    if m > step and tape is None and betas is None:
        outs = [backward_lower(st, target, A[s:s + step],
                               None if alphas is None else {k: a[s:s + step] for k, a in
                                                            alphas.items()},
                               None if overrides is None else (overrides[0][s:s + step],
                                                               overrides[1][s:s + step]),
                               want_coeffs) for s in range(0, m, step)]
        if want_coeffs:
            return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])
        return np.concatenate(outs)
    gp, g = st.gp, st.gp.graph
    coef = {target: np.asarray(A, dtype=np.float64)}
    # nodes whose coefficient array was allocated here and is referenced by ``coef`` alone: a
    # region transpose may add into it in place (any other array may be a view of the
    # caller's rows or of a tape entry)
    owned: set = set()
    const = np.zeros(m)
    mag = np.zeros(m)
    for v in range(target, 0, -1):
        Av = coef.pop(v, None)
        if Av is None:
            continue
        nd = g.nodes[v]
        Af = Av.reshape(m, -1)
        if isinstance(nd.op, Relu):
            k = gp.relu_index[v]
            p = nd.inputs[0]
            a = None if alphas is None else alphas.get(k)
            if overrides is not None:
                lo_s, up_s, icpt = _relax_override(st.relaxation(k, a), g.nodes[p].size,
                                                   overrides, gp.zoff[k], gp.zoff[k + 1], m)
            else:
                lo_s, up_s, icpt = st.relaxation(k, a)
            Ap = np.maximum(Af, 0.0)
            An = Af - Ap
            Apre = Ap * lo_s + An * up_s
            if tape is not None:
                tape[k] = (Af, lo_s, up_s, icpt)
            t = An * icpt
            const += t.sum(axis=1)
            mag += np.abs(t).sum(axis=1) + np.abs(Apre) @ st.amax(p)
            b = None if betas is None else betas.get(k)
            if b is not None:
                # the sum may cancel: its rounding is covered by both summands' magnitudes
                mag += np.abs(b) @ st.amax(p)
                Apre = Apre + b
                mag += np.abs(Apre) @ st.amax(p)
            parts = (Apre.reshape(Av.shape),)
        else:
            const += nd.op.bias_term(Av)
            mag += np.abs(Af) @ st.wa[v].reshape(-1)
            region = getattr(nd.op, "transpose_region", None)
            if region is not None:
                sl, vals = region(Av)
                _add_region(st, coef, owned, nd.inputs[0], nd.op.in_shapes[0], sl, vals, mag)
                continue
            parts = nd.op.transpose(Av)
        for i, q in zip(nd.inputs, parts):
            if i in coef:
                old = coef[i]
                mag += (np.abs(old).reshape(m, -1) + np.abs(q).reshape(m, -1)) @ \
                    st.amax(i)
                coef[i] = old + q
                owned.add(i)
            else:
                coef[i] = q
                owned.discard(i)
    A0 = coef.get(0)
    xl, xu = st.lo[0].reshape(-1), st.hi[0].reshape(-1)
    if A0 is None:
        A0 = np.zeros((m, xl.size))
    A0 = A0.reshape(m, -1)
    lower = const + np.maximum(A0, 0.0) @ xl + np.minimum(A0, 0.0) @ xu
    mag += np.abs(A0) @ st.amax(0) + np.abs(const)
    lower = lower - (gp.margin_factor * mag + ABS_MARGIN)
    lower = np.where(np.isnan(lower), -np.inf, lower)
    return (lower, A0) if want_coeffs else lower


def _relax_override(relax, n, overrides, z0, z1, m):
    """Per-row relaxations where row ``r`` fixes neuron ``idx[r] - z0`` (if in this node) to
    phase ``sgn[r]``: ``relax`` is the node's (lower slope, upper slope, intercept) of its ``n``
    neurons (:meth:`SweepState.relaxation`); returns (m, n) arrays."""
    idx, sgn = overrides
    lo_s, up_s, icpt = (np.broadcast_to(a, (m, n)).copy() for a in relax)
    rows = np.flatnonzero((idx >= z0) & (idx < z1))
    if rows.size:
        j = idx[rows] - z0
        on = sgn[rows] > 0
        lo_s[rows, j] = np.where(on, 1.0, 0.0)
        up_s[rows, j] = np.where(on, 1.0, 0.0)
        icpt[rows, j] = 0.0
    return lo_s, up_s, icpt


def _add_region(st, coef, owned, i, in_shape, sl, vals, mag):
    """Add the transpose of a selection op (``coefficients = vals`` on the region ``sl`` of
    input ``i``, zero elsewhere) into ``coef[i]`` without a full-size temporary.

    MaxPool lowers into 16 Slices of one 32x27x27 map on verivital's ``Convnet_maxpool``: a
    full-size transpose per Slice and a full-size sum at every meeting made the root CROWN
    pass 33 s.  The sum is exact outside the region (a zero is added), so the rounding
    magnitude is summed over the region only.
    """
    m = vals.shape[0]
    old = coef.get(i)
    if old is None:
        Y = np.zeros((m,) + tuple(in_shape))
        Y[sl] = vals
        coef[i] = Y
        owned.add(i)
        return
    if i not in owned:
        old = np.array(old, dtype=np.float64, copy=True).reshape((m,) + tuple(in_shape))
        coef[i] = old
        owned.add(i)
    blk = old[sl]
    am = st.amax(i).reshape(tuple(in_shape))[sl[1:]]
    mag += (np.abs(blk) + np.abs(vals)).reshape(m, -1) @ am.reshape(-1)
    old[sl] = blk + vals
