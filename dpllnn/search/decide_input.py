"""Input-splitting decisions: which dimension of a box to bisect, and which points of a box to try.

Nothing here needs to be sound: these are heuristics.  Soundness of the input-splitting search
rests only on :func:`dpllnn.bounds.batch_objective_bounds` (refutation) and
:func:`dpllnn.validate.check_counterexample` (``sat``).

Disjuncts are handled *stacked*: the rows of all open disjuncts of a case form one matrix ``C``
(m, n_outputs) with ``d`` (m,), and ``groups`` (k,) holds the first row of each disjunct.  A
disjunct's *score* on a box is the largest lower bound among its rows (it is refuted iff the
score is > 0); a box's *priority* is the smallest score among its still-open disjuncts (``+inf``
when none is open): the most negative boxes are the furthest from a proof.
"""
from __future__ import annotations

import numpy as np

from ..attack import margin_and_grad
from ..spec import union_row

__all__ = ["disjunct_scores", "box_priority", "lookahead_children", "candidate_points",
           "disjunct_margins", "smear_scores"]


def disjunct_scores(lower: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-disjunct refutation scores ``max`` of row lower bounds, (B, k) from (B, m)."""
    return np.maximum.reduceat(lower, groups, axis=1)


def box_priority(scores: np.ndarray, open_mask: np.ndarray) -> np.ndarray:
    """``min`` over open disjuncts of the score (``+inf`` if none is open), (B,)."""
    return np.where(open_mask, scores, np.inf).min(axis=1)


def disjunct_margins(Y: np.ndarray, C: np.ndarray, d: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-disjunct margins ``max_rows (C y - d)`` of outputs ``Y`` (B, n_out) -> (B, k)."""
    return np.maximum.reduceat(Y @ C.T - d, groups, axis=1)


def smear_scores(network, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, d: np.ndarray,
                 groups: np.ndarray, open_mask: np.ndarray) -> np.ndarray:
    """ReluVal-style smear: ``|d margin / d x_i| * width_i`` at the box centre.

    Uses the gradient of the union margin of the open disjuncts (the arg-max row of the arg-min
    disjunct) at the centre.  Dimensions that can no longer be bisected (float resolution) get
    score -1; a box with no splittable dimension gets -1 (the caller checks).

    Returns
    -------
    scores : ndarray, float64, shape (B, n)
    """
    X = 0.5 * (lo + hi)
    w = hi - lo
    # restrict the union to open disjuncts by adding a huge offset to closed ones' rows
    rows_closed = np.repeat(~open_mask, np.diff(np.append(groups, C.shape[0])), axis=1)
    Y = network.forward(X)
    R = Y @ C.T - d + np.where(rows_closed, 1e300, 0.0)
    i = union_row(R, groups)
    from ..attack import _backward, _forward_masks  # analytic backprop, batched
    _, masks = _forward_masks(network, X)
    grad = _backward(network, masks, C[i], leak=0.01)
    s = np.abs(grad) * w
    s = s + 1e-12 * w / np.maximum(w.max(axis=1, keepdims=True), 1e-300)  # tie-break: widest
    s[~splittable(lo, hi)] = -1.0
    return s


def splittable(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Bool (B, n): bisecting dimension i yields two strictly smaller boxes."""
    mid = 0.5 * (lo + hi)
    return (mid > lo) & (mid < hi)


def bisect(lo: np.ndarray, hi: np.ndarray, dims: np.ndarray):
    """Children of every box split at the midpoint of ``dims``: (lo2, hi2) of shape (2B, n),
    children ``2j`` (lower half) and ``2j + 1`` (upper half) of box ``j``."""
    B = lo.shape[0]
    r = np.arange(B)
    mid = 0.5 * (lo[r, dims] + hi[r, dims])
    lo2 = np.repeat(lo, 2, axis=0)
    hi2 = np.repeat(hi, 2, axis=0)
    hi2[2 * r, dims] = mid
    lo2[2 * r + 1, dims] = mid
    return lo2, hi2


def lookahead_children(lo: np.ndarray, hi: np.ndarray, dims: np.ndarray | None = None):
    """Bisections of every box along each of its candidate ``dims`` (B, q) (default: all n):
    (lo2, hi2) (B * 2q, n); box j, candidate i, half h at row ``(j * q + i) * 2 + h``."""
    B, n = lo.shape
    if dims is None:
        dims = np.tile(np.arange(n), (B, 1))
    q = dims.shape[1]
    return bisect(np.repeat(lo, q, axis=0), np.repeat(hi, q, axis=0), dims.reshape(-1))


def candidate_points(network, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, d: np.ndarray,
                     groups: np.ndarray):
    """Centre of each box and the corner a gradient step at the centre points to.

    Returns
    -------
    X : ndarray (2B, n) -- centres then corners
    margins : ndarray (2B, k) -- per-disjunct margins at those points
    """
    X = 0.5 * (lo + hi)
    _, g = margin_and_grad(network, X, C, d, leak=0.01, groups=groups if len(groups) > 1 else None)
    corner = np.where(g > 0, lo, hi)
    P = np.vstack([X, corner])
    return P, disjunct_margins(network.forward(P), C, d, groups)
