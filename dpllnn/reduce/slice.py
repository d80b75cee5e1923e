"""Slicing (Lahav & Katz 2021): cover a region with boxes and prune the network on each.

:func:`split_region` grows a k-d tree: the leaf with the most unstable neurons (CROWN) is split at
the midpoint of the input dimension whose halves have the fewest unstable neurons in total, until
``max_regions`` leaves exist or every leaf is fully stable.  The leaves partition the region (the
union of its boxes), so every input of the region lies in some slice.  Splitting may start from
*seed boxes* (e.g. the boxes an input-splitting verify run closed), accepted only when they tile
the region (inside it, disjoint interiors, volumes summing to the region's).

:func:`slice_network` prunes the network on every leaf (:mod:`dpllnn.reduce.prune`), writes one
float64 ONNX per leaf and ``manifest.json``::

    {"source": ..., "regions": [{"lb": [...], "ub": [...], "onnx": "region_0000.onnx",
                                 "relus": N, "proved": true|false, ...}, ...]}

``proved`` means :func:`dpllnn.reduce.equiv.check_equivalence` proved the slice equivalent to the
source on its box within ``eps`` (see there).  :class:`SliceFamily` evaluates the family at a point.
"""
from __future__ import annotations

import heapq
import json
import os
import time

import numpy as np

from ..bounds import compute_bounds, pack
from ..errors import DpllnnError, InputFileError
from ..network import Network
from .equiv import check_equivalence
from .prune import prune_network
from .stable import certify_stable

__all__ = ["split_region", "slice_network", "SliceFamily", "tiles_region"]


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


def slice_network(network: Network, boxes, max_regions: int, out_dir=None, *,
                  budget_s: float = 2.0, equiv: bool = True, equiv_timeout_s: float = 30.0,
                  seed_boxes=None, source: str | None = None, seed: int = 0,
                  thorough: bool = True, refine: int = 1, refine_until: float | None = None,
                  refine_max: int = 256, refine_alpha: bool = False) -> dict:
    """Slice ``network`` over the region and (optionally) write the family to ``out_dir``.

    Parameters
    ----------
    network : Network
    boxes : list of (lb, ub)
    max_regions : int
    out_dir : str, optional -- created if needed; one ``region_NNNN.onnx`` per leaf (float64) and
        ``manifest.json``
    budget_s : float -- MILP budget per slice for near-stable neurons (0: no MILP)
    thorough : bool -- also PGD and alpha-CROWN per slice (False: bounds only, for many slices)
    refine : int -- certify each slice's stable sets on up to ``refine`` sub-boxes of its box
        (:func:`dpllnn.reduce.stable.certify_stable`).  The family still has one network per
        slice; the certified phases hold on the whole slice box, so the equivalence check runs on
        that box with them.
    refine_until, refine_max : adaptive refinement: while a slice keeps more than
        ``refine_until * network.n_relus`` ReLUs, certify it again with 4x the sub-boxes, up to
        ``refine_max`` (None: no escalation).  Each slice records ``refine`` (sub-boxes used).
    refine_alpha : bool -- a slice still above ``refine_until`` at ``refine_max`` sub-boxes is
        certified once more with alpha-CROWN on every sub-box (for the neurons CROWN leaves
        open); recorded as ``refine_alpha`` on the slice
    equiv, equiv_timeout_s : prove each slice equivalent (``proved``), and the time per slice
    seed_boxes : optional initial tiling (see :func:`split_region`)
    source : str -- recorded in the manifest

    Returns
    -------
    dict -- the manifest; each region also carries ``network`` (the pruned Network) in memory
    """
    from ..io.onnx_export import to_onnx

    t0 = time.monotonic()
    leaves = split_region(network, boxes, max_regions, seed_boxes)
    t_split = time.monotonic() - t0
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    regions = []
    for i, (lb, ub) in enumerate(leaves):
        R = max(1, int(refine))
        alpha = thorough
        while True:
            st = certify_stable(network, [(lb, ub)], budget_s=budget_s, seed=seed,
                                use_milp=budget_s > 0, use_alpha=alpha, use_pgd=thorough,
                                n_samples=(1024 if thorough else 64) // R or 16, refine=R)
            small, rep = prune_network(network, st)
            if refine_until is None or small.n_relus <= refine_until * network.n_relus:
                break
            if R >= refine_max:
                if alpha or not refine_alpha:
                    break
                alpha = True
            R = min(4 * R, refine_max)
        reg = {"lb": [float(v) for v in lb], "ub": [float(v) for v in ub],
               "onnx": f"region_{i:04d}.onnx", "relus": small.n_relus,
               "params": small.n_params, "proved": False, "refine": R,
               "refine_alpha": bool(alpha and not thorough)}
        if equiv:
            er = check_equivalence(network, small, [(lb, ub)], timeout_s=equiv_timeout_s,
                                   seed=seed, phases=[st.phase],
                                   tiling=st.cert_boxes if R > 1 else None)
            reg.update(proved=er.proved, eps=er.eps, equiv=er.verdict, equiv_how=er.how,
                       equiv_time_s=round(er.time_s, 4))
        if out_dir is not None:
            to_onnx(small, os.path.join(out_dir, reg["onnx"]), input_shape=network.input_shape,
                    dtype="float64")
        reg["network"] = small
        regions.append(reg)
    man = {"source": source, "relus_source": network.n_relus,
           "input_shape": list(network.input_shape), "split_s": round(t_split, 4),
           "time_s": round(time.monotonic() - t0, 4), "regions": regions}
    if out_dir is not None:
        doc = dict(man, regions=[{k: v for k, v in r.items() if k != "network"} for r in regions])
        tmp = os.path.join(out_dir, ".manifest.json.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, os.path.join(out_dir, "manifest.json"))
    return man


class SliceFamily:
    """A sliced network loaded from a directory with ``manifest.json``.

    ``family.evaluate(x)`` runs the slice whose box contains ``x`` (first match; boxes of a k-d
    tree share faces, where both slices agree with the source).
    """

    def __init__(self, directory: str):
        self.directory = str(directory)
        path = os.path.join(self.directory, "manifest.json")
        try:
            with open(path) as f:
                self.manifest = json.load(f)
            self.regions = self.manifest["regions"]
            self.lbs = np.array([r["lb"] for r in self.regions], dtype=np.float64)
            self.ubs = np.array([r["ub"] for r in self.regions], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputFileError(path, f"not a slice manifest: {e}") from None
        self._nets: dict = {}

    def find(self, x) -> int | None:
        """Index of the first region containing ``x`` (flattened), or None."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.lbs.shape[1]:
            raise DpllnnError(f"point has {x.size} values, the slices take {self.lbs.shape[1]}")
        hit = np.nonzero(np.all((self.lbs <= x) & (x <= self.ubs), axis=1))[0]
        return int(hit[0]) if hit.size else None

    def network(self, i: int) -> Network:
        if i not in self._nets:
            from ..io.onnx_import import load_onnx
            self._nets[i] = load_onnx(os.path.join(self.directory, self.regions[i]["onnx"]))
        return self._nets[i]

    def evaluate(self, x, engine: str = "float64") -> tuple[int, np.ndarray]:
        """``(region index, output)`` at ``x``; ``engine`` ``float64`` or ``onnxruntime``.

        Raises DpllnnError when ``x`` lies in no region."""
        i = self.find(x)
        if i is None:
            raise DpllnnError("the point lies outside every slice's box")
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if engine == "onnxruntime":
            from ..validate import onnxruntime_forward
            path = os.path.join(self.directory, self.regions[i]["onnx"])
            return i, onnxruntime_forward(path, x, self.network(i).input_shape)
        return i, self.network(i).forward(x)
