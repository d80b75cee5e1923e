"""Slicing (Lahav & Katz 2021): cover a region with boxes and prune the network on each.

:func:`split_region` (:mod:`dpllnn.reduce.regions`) grows a k-d tree whose leaves partition the
region, so every input of the region lies in some slice.

:func:`slice_network` prunes the network on every leaf (:mod:`dpllnn.reduce.prune`), writes one
float64 ONNX per leaf and ``manifest.json``::

    {"source": ..., "regions": [{"lb": [...], "ub": [...], "onnx": "region_0000.onnx",
                                 "relus": N, "proved": true|false, ...}, ...]}

``proved`` means :func:`dpllnn.reduce.equiv.check_equivalence` proved the slice equivalent to the
source on its box within ``eps`` (see there).  :class:`SliceFamily` evaluates the family at a point.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from ..errors import DpllnnError, InputFileError
from ..network import Network
from .equiv import check_equivalence
from .prune import prune_network
from .regions import split_region, tiles_region
from .stable import certify_stable

__all__ = ["split_region", "slice_network", "SliceFamily", "tiles_region"]


def slice_network(network: Network, boxes, max_regions: int, out_dir=None, *,
                  budget_s: float = 2.0, equiv: bool = True, equiv_timeout_s: float = 30.0,
                  seed_boxes=None, source: str | None = None, seed: int = 0,
                  thorough: bool = True, refine: int = 1, refine_until: float | None = None,
                  refine_max: int = 256, refine_alpha: bool = False, interface=None,
                  dtype: str | None = None) -> dict:
    """Slice ``network`` over the region and (optionally) write the family to ``out_dir``.

    Parameters
    ----------
    network : Network
    boxes : list of (lb, ub)
    max_regions : int
    out_dir : str, optional -- created if needed; one ``region_NNNN.onnx`` per leaf and
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
    interface : dpllnn.reduce.export.Interface, optional -- names, shapes and element type of the
        written slices (those of the source model; default: float64, ``input``/``output``)
    dtype : str, optional -- element type of the written slices instead of the interface's; a
        written slice is read back and proved equivalent as written

    Returns
    -------
    dict -- the manifest; each region also carries ``network`` (the pruned Network) in memory
    """
    from .export import default_interface, write_reduced

    iface = interface or default_interface(network)
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
        if out_dir is not None:          # proved below as written (float32 rounds weights)
            small, again = write_reduced(network, st, small, iface,
                                         os.path.join(out_dir, reg["onnx"]), [(lb, ub)], dtype,
                                         tiling=st.cert_boxes if R > 1 else None, seed=seed)
            if again is not None:
                reg.update(relus=small.n_relus, params=small.n_params)
        if equiv:
            er = check_equivalence(network, small, [(lb, ub)], timeout_s=equiv_timeout_s,
                                   seed=seed, phases=[st.phase],
                                   tiling=st.cert_boxes if R > 1 else None)
            reg.update(proved=er.proved, eps=er.eps, equiv=er.verdict, equiv_how=er.how,
                       equiv_time_s=round(er.time_s, 4))
        reg["network"] = small
        regions.append(reg)
    man = {"source": source, "relus_source": network.n_relus,
           "input_shape": list(network.input_shape), "dtype": dtype or iface.dtype,
           "split_s": round(t_split, 4),
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
            from ..io.onnx_load import load_onnx
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
