"""Region-free exact reductions of one hidden layer (lumping, after Ressi et al.).

For hidden neurons ``j, j'`` of one layer with augmented rows ``r = [W_j, b_j]`` and
``r' = [W_j', b_j'] = lam * r``:

- ``lam > 0``: ``relu(z_j') = lam * relu(z_j)`` exactly, so ``j'`` is deleted and its outgoing
  column, times ``lam``, is added to ``j``'s (*lumping*);
- ``lam < 0``: ``relu(lam z) = |lam| (relu(z) - z)`` is not a multiple of ``relu(z)``: refused.
  (If ``j`` is stably active or inactive on a region, ``j'`` is stable too and the stable-set pass
  handles both.)

A neuron with a zero weight row is the constant ``relu(b_j)``, folded into the next bias; a neuron
whose outgoing column is zero is deleted.  Every function here maps arrays of one layer to arrays
of the same layer and is exact in real arithmetic of the float64 weights (``rtol`` guards rounding).
"""
from __future__ import annotations

import numpy as np

__all__ = ["proportional", "lump_layer", "drop_constant", "drop_zero_outgoing"]


def proportional(r1: np.ndarray, r2: np.ndarray, rtol: float = 1e-12) -> float | None:
    """``lam`` with ``r2 = lam * r1`` (to ``rtol`` in the max norm), or None.

    r1, r2 : ndarray (n,), float64.  Returns a float (possibly negative) or None."""
    n1 = np.max(np.abs(r1)) if r1.size else 0.0
    n2 = np.max(np.abs(r2)) if r2.size else 0.0
    if n1 == 0.0 or n2 == 0.0:
        return None
    p = int(np.argmax(np.abs(r1)))
    lam = r2[p] / r1[p]
    if lam == 0.0 or np.max(np.abs(r2 - lam * r1)) > rtol * n2:
        return None
    return float(lam)


def _key(r: np.ndarray) -> tuple:
    """Sign-preserving normalisation, so positively proportional rows share a key."""
    s = r / np.max(np.abs(r))
    return tuple(np.round(s, 9).tolist())


def lump_layer(W, b, W_next, b_next, phase, rtol: float = 1e-12):
    """Lump positively proportional neurons of a hidden layer.

    Parameters
    ----------
    W : ndarray (n, n_prev); b : ndarray (n,) -- the layer's affine map
    W_next : ndarray (n_next, n); b_next : ndarray (n_next,) -- the following affine map
    phase : ndarray int8 (n,) -- certified phases (lumped neurons share a sign, so any is kept)
    rtol : float -- proportionality tolerance, relative, max norm

    Returns
    -------
    W, b, W_next, b_next, phase (new arrays), n_lumped (int), n_refused_negative (int)
    """
    R = np.hstack([W, b[:, None]])
    groups: dict = {}
    keep = np.ones(W.shape[0], dtype=bool)
    W_next = W_next.copy()
    lumped = refused = 0
    for j in range(W.shape[0]):
        if not np.any(R[j]):
            continue
        k = _key(R[j])
        rep = groups.get(k)
        if rep is None:
            neg = groups.get(tuple(-v for v in k))
            if neg is not None and proportional(R[neg], R[j], rtol) is not None:
                refused += 1
            groups[k] = j
            continue
        lam = proportional(R[rep], R[j], rtol)
        if lam is None or lam <= 0.0:
            refused += lam is not None
            continue
        W_next[:, rep] += lam * W_next[:, j]
        keep[j] = False
        lumped += 1
    return W[keep], b[keep], W_next[:, keep], b_next.copy(), phase[keep], lumped, refused


def drop_constant(W, b, W_next, b_next, phase):
    """Fold neurons with a zero weight row (constant ``relu(b_j)``) into the next bias.

    Returns W, b, W_next, b_next, phase, n_dropped."""
    const = ~np.any(W != 0.0, axis=1)
    if not const.any():
        return W, b, W_next, b_next, phase, 0
    b_next = b_next + W_next[:, const] @ np.maximum(b[const], 0.0)
    keep = ~const
    return W[keep], b[keep], W_next[:, keep], b_next, phase[keep], int(const.sum())


def drop_zero_outgoing(W, b, W_next, phase):
    """Delete neurons whose outgoing column is zero.  Returns W, b, W_next, phase, n_dropped."""
    dead = ~np.any(W_next != 0.0, axis=0)
    if not dead.any():
        return W, b, W_next, phase, 0
    keep = ~dead
    return W[keep], b[keep], W_next[:, keep], phase[keep], int(dead.sum())
