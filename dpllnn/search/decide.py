"""Branching heuristics for the hidden-phase CDCL search.

The solver asks the propagator for a decision after propagation settles; the bounds of the current
assignment are then the top snapshot of :class:`~dpllnn.search.theory.ReluTheory`.  A
:class:`Brancher` scores the unassigned unstable neurons of that snapshot and returns a literal, or
0 to let CaDiCaL choose (its VSIDS/VMTF on the learned clauses).

Heuristics (``kind``)
---------------------
``"babsr"``   BaBSR-like score (Bunel et al. 2020) summed over the rows of the disjuncts that the
              snapshot does not refute (:func:`dpllnn.bounds.babsr_scores`);
``"width"``   the widest unstable neuron relative to its interval (``min(u, -l)``), earliest layer
              first among ties: cheap, no backward pass;
``"fsb"``     filtered smart branching (De Palma et al. 2021; alpha-beta-CROWN's default): the
              ``fsb_top`` neurons with the largest BaBSR scores are split tentatively on both
              sides, each child's objective bound recomputed (output-only CROWN on the node's
              intermediate bounds with the split neuron exact, adaptive and the root's alpha
              slopes); the neuron whose worse child leaves the least negative bound mass
              (``sum_r min(lower_r, 0)`` over the rows of the open disjuncts) wins;
``"solver"``  always 0.

Polarity: the sign of the neuron's pre-activation at a reference point (the best candidate seen so
far: PGD or the last LP point), so that the first full assignment reached is that point's cell;
without one, the side with the larger interval part.
"""
from __future__ import annotations

import numpy as np

from ..bounds import babsr_scores
from ..settings import CdclSettings


class Brancher:
    """Decision heuristic over one theory (see module docstring).

    Parameters
    ----------
    theory : ReluTheory
    kind : {"babsr", "width", "solver"}
    layer_bias : float -- multiply scores of layer ``k`` by ``layer_bias ** -k`` (> 1 favours
        early layers, whose splits tighten everything after them)
    fsb_top : int -- FSB: candidates (by BaBSR score) whose two children are bounded
        (``CdclSettings.fsb_top``)
    """

    def __init__(self, theory, kind: str = "babsr", layer_bias: float = 1.0,
                 fsb_top: int = CdclSettings.fsb_top):
        if kind not in ("babsr", "fsb", "width", "solver"):
            raise ValueError(f"unknown branching heuristic {kind!r}")
        self.th = theory
        self.kind = kind
        self.layer_bias = float(layer_bias)
        self.fsb_top = int(fsb_top)
        self._ref_phase = None
        self._ref_x = None
        self._cache_key = None
        self._cache = None

    def _reference_phase(self):
        x = self.th.x_ref
        if x is None:
            return None
        if x is not self._ref_x:
            pre = self.th.network.pre_activations(np.asarray(x, dtype=np.float64))
            self._ref_phase = np.concatenate([np.asarray(p).reshape(-1) for p in pre[: self.th.packed.n_layers]])
            self._ref_x = x
        return self._ref_phase

    def scores(self, snap) -> np.ndarray:
        th = self.th
        lbd = snap.lbd
        unst = (th.phase == 0) & (lbd.lb < 0.0) & (lbd.ub > 0.0)
        if not unst.any():
            return np.zeros(th.n)
        fsb_rows = None
        if self.kind in ("babsr", "fsb"):
            rows = [r for i in np.flatnonzero(~snap.refuted).tolist()
                    for r in range(th.rows[i], th.rows[i + 1])]
            s = np.zeros(th.n)
            for r in rows[:4]:
                s += babsr_scores(th.packed, lbd, th.C[r], float(th.d[r]))
            s = np.where(unst, s, 0.0)
            if not np.any(s > 0):          # degenerate backward coefficients: fall back to width
                s = np.where(unst, np.minimum(lbd.ub, -lbd.lb), 0.0)
            elif self.kind == "fsb" and rows:
                fsb_rows = rows[:4]
        else:
            s = np.where(unst, np.minimum(lbd.ub, -lbd.lb), 0.0)
        if self.layer_bias != 1.0:
            s = s * self.layer_bias ** (-th.layer_of.astype(np.float64))
        if fsb_rows is not None:
            s = self._fsb(lbd, fsb_rows, s)
        return s

    def _fsb(self, lbd, rows, base):
        """FSB scores: ``base`` (BaBSR, layer bias applied) re-ranked by the children's objective
        bounds (``ReluTheory.children_lower``); the top ``fsb_top`` candidates get
        ``1e6 + sum_r min(lower_r, 0)`` of their worse child (always above every other neuron's
        score, which stay as tie-breakers below)."""
        cand = [int(j) for j in np.argsort(-base, kind="stable")[:self.fsb_top] if base[j] > 0]
        out = base.copy()
        if cand:
            mass = np.minimum(self.th.children_lower(lbd, cand, rows), 0.0).sum(axis=2)
            out[cand] = 1e6 + mass.min(axis=1)
        return out

    def decide(self) -> int:
        th = self.th
        if self.kind == "solver" or th.stop or not th.snaps:
            return 0
        snap = th.snaps[-1]
        key = (id(snap), snap.trail_len)
        if key == self._cache_key:
            s = self._cache
        else:
            s = self.scores(snap)
            self._cache_key, self._cache = key, s
        s = np.where(th.phase == 0, s, 0.0)
        j = int(np.argmax(s))
        if s[j] <= 0.0:
            return 0
        ref = self._reference_phase()
        if ref is not None:
            pos = ref[j] >= 0.0
        else:
            pos = snap.lbd.ub[j] >= -snap.lbd.lb[j]
        return (j + 1) if pos else -(j + 1)
