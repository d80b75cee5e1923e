"""k-d tree tilings of an input region (slicing, and the refined stable-neuron certification).

:func:`split_region` grows a k-d tree: the leaf with the most unstable neurons (CROWN) is split at
the midpoint of the input dimension whose halves have the fewest unstable neurons in total, until
``max_regions`` leaves exist or every leaf is fully stable.  The leaves partition the region (the
union of its boxes).  Splitting may start from *seed boxes* (e.g. the boxes an input-splitting
verify run closed), accepted only when they tile the region (inside it, disjoint interiors,
volumes summing to the region's).

Both :mod:`dpllnn.reduce.slice` and :mod:`dpllnn.reduce.stable` use it; it imports neither.
"""
from __future__ import annotations

import heapq

import numpy as np

from ..bounds import compute_bounds, pack
from ..errors import DpllnnError
from ..network import Network

__all__ = ["split_region", "tiles_region"]


def _n_unstable(packed, lb, ub) -> int:
    return compute_bounds(packed, lb, ub, None, "crown").n_unstable


def tiles_region(seed_boxes, boxes, rtol: float = 1e-9) -> bool:
    """True when ``seed_boxes`` tile the union of the disjoint ``boxes`` (see module docstring)."""
    vol = lambda lb, ub: float(np.prod(ub - lb))
    total = sum(vol(*b) for b in boxes)
    inside = all(any(np.all(s[0] >= b[0]) and np.all(s[1] <= b[1]) for b in boxes) for s in seed_boxes)
    if not inside or abs(sum(vol(*s) for s in seed_boxes) - total) > rtol * max(total, 1e-300):
        return False
    for i in range(len(seed_boxes)):
        for j in range(i + 1, len(seed_boxes)):
            lo = np.maximum(seed_boxes[i][0], seed_boxes[j][0])
            hi = np.minimum(seed_boxes[i][1], seed_boxes[j][1])
            if np.all(hi > lo):
                return False
    return True


def split_region(network: Network, boxes, max_regions: int, seed_boxes=None,
                 max_dims: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """k-d tree leaves covering ``boxes`` (at most ``max_regions``, fewer when all are stable).

    Parameters
    ----------
    network : Network
    boxes : list of (lb, ub) -- the region
    max_regions : int
    seed_boxes : list of (lb, ub), optional -- an initial tiling of the region
    max_dims : int -- candidate split dimensions per leaf (the widest by ``width * |W_0 column|``)
    """
    packed = pack(network)
    start = boxes
    if seed_boxes:
        seed_boxes = [(np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64))
                      for l, u in seed_boxes]
        if not tiles_region(seed_boxes, boxes):
            raise DpllnnError("seed boxes do not tile the region")
        start = seed_boxes
    heap = []
    for i, (lb, ub) in enumerate(start):
        heapq.heappush(heap, (-_n_unstable(packed, lb, ub), -float(np.sum(ub - lb)), i, lb, ub))
    colw = np.sum(np.abs(network.affines[0].W), axis=0)
    tick = len(heap)
    while len(heap) < max_regions:
        negu, _, _, lb, ub = heap[0]
        if negu == 0:
            break
        width = ub - lb
        dims = np.argsort(-(width * colw))[:max_dims]
        best = None
        for d in dims:
            if width[d] <= 0:
                continue
            mid = lb[d] + width[d] / 2
            if not lb[d] < mid < ub[d]:
                continue
            ub1, lb2 = ub.copy(), lb.copy()
            ub1[d] = mid
            lb2[d] = mid
            u1, u2 = _n_unstable(packed, lb, ub1), _n_unstable(packed, lb2, ub)
            key = (u1 + u2, max(u1, u2), -width[d])
            if best is None or key < best[0]:
                best = (key, (lb, ub1, u1), (lb2, ub, u2))
        if best is None:
            break
        heapq.heappop(heap)
        for l, u, n in best[1:]:
            tick += 1
            heapq.heappush(heap, (-n, -float(np.sum(u - l)), tick, l, u))
    leaves = sorted(heap, key=lambda t: t[2])
    return [(l, u) for _, _, _, l, u in leaves]
