"""Certified stable sets of a network on a region (a union of input boxes).

A hidden neuron is *stably active* on the region when its pre-activation ``z >= 0`` everywhere on
it (then ``relu(z) = z``), *stably inactive* when ``z <= 0`` everywhere (``relu(z) = 0``).  Such a
status is only ever recorded from a sound argument:

``ibp`` / ``crown``   sound bound propagation (:func:`dpllnn.bounds.compute_bounds`; CROWN is
                      re-run layer by layer with the phases proved so far as constraints);
``alpha``             alpha-CROWN on the network truncated after the neuron's layer;
``milp``              a HiGHS MILP (big-M with the sound bounds above) that finds no input with
                      ``z >= -tol`` (inactive) or ``z <= tol`` (active), ``tol = 1e-7 (1 + |bounds|)``.

*Refinement* (``refine=R > 1``): each box is first split into up to ``R`` sub-boxes by the k-d tree
of :func:`dpllnn.reduce.regions.split_region` (the sub-boxes tile the box), every sub-box is
certified as above, and a neuron is stable on the box only when it is stable with the same sign on
every sub-box.  This is sound (the sub-boxes cover the box) and much stronger on deep networks, whose
bounds over a whole box are loose in the last layers: on ACAS Xu prop_1 slices it turns ~190
"unknown-heavy" ReLUs into a handful.  The sub-boxes are kept in ``StableSets.cert_boxes`` so the
equivalence check can reuse the same tiling.

Neurons shown to take both signs are *unstable*, with the witness's source (``sample``, ``pgd``,
``milp``); sampling and PGD only ever rule neurons *out* (prove instability), never in.  Neurons
left undecided when the time budget runs out are ``unknown`` and treated as unstable.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from ..bounds import alpha_crown, compute_bounds, pack
from ..errors import InputFileError
from ..network import Network
from ..lp.milp import ReluMILP
from .regions import split_region

__all__ = ["StableSets", "certify_stable", "load_region", "sample_box"]

_RANK = {"": 0, "ibp": 1, "crown": 2, "alpha": 3, "milp": 4}


@dataclass
class StableSets:
    """Per-neuron status over a region.

    Attributes
    ----------
    phase : ndarray int8 (n_relus,) -- +1 stably active, -1 stably inactive, 0 not stable
    how : list of str (n_relus,) -- the proof (``ibp``, ``crown``, ``alpha``, ``milp``) for stable
        neurons; ``unstable:sample|pgd|milp`` or ``unknown`` for the others
    hidden_sizes : list of int
    boxes : list of (lb, ub)
    time_s : float
    cert_boxes : list of (lb, ub) -- the boxes actually certified (``boxes`` itself, or their
        sub-boxes with ``refine > 1``); they tile the union of ``boxes``
    """

    phase: np.ndarray
    how: list
    hidden_sizes: list
    boxes: list = field(default_factory=list)
    time_s: float = 0.0
    cert_boxes: list = field(default_factory=list)

    def layer_phases(self) -> list[np.ndarray]:
        offs = np.concatenate([[0], np.cumsum(self.hidden_sizes)]).astype(int)
        return [self.phase[offs[k]:offs[k + 1]] for k in range(len(self.hidden_sizes))]

    def counts(self) -> dict:
        c = {"relus": int(self.phase.size), "active": int(np.sum(self.phase == 1)),
             "inactive": int(np.sum(self.phase == -1)), "unstable": 0, "unknown": 0, "by": {}}
        for h in self.how:
            key = "unknown" if h == "unknown" else ("unstable" if h.startswith("unstable") else None)
            if key:
                c[key] += 1
            c["by"][h] = c["by"].get(h, 0) + 1
        return c

    def to_json(self) -> dict:
        offs = np.concatenate([[0], np.cumsum(self.hidden_sizes)]).astype(int)
        neurons = []
        for k in range(len(self.hidden_sizes)):
            for j in range(self.hidden_sizes[k]):
                i = offs[k] + j
                st = {1: "active", -1: "inactive"}.get(int(self.phase[i]), "unstable")
                if self.how[i] == "unknown":
                    st = "unknown"
                neurons.append({"layer": k, "index": j, "status": st, "proof": self.how[i]})
        return {"boxes": [{"lb": [float(v) for v in lb], "ub": [float(v) for v in ub]}
                          for lb, ub in self.boxes],
                "summary": self.counts(), "time_s": round(self.time_s, 6), "neurons": neurons}


def load_region(path, network: Network) -> list[tuple[np.ndarray, np.ndarray]]:
    """Input boxes of a region file: a VNN-LIB property (its cases' boxes) or a JSON box.

    JSON forms: ``{"lb": [...], "ub": [...]}``, ``{"boxes": [{"lb":..., "ub":...}, ...]}`` or a
    list of such boxes.  Boxes are over the flattened input.  Empty boxes are dropped.
    """
    path = str(path)
    n = network.n_inputs
    if path.lower().endswith(".json"):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise InputFileError(path, f"cannot read JSON region: {e}") from None
        items = doc.get("boxes", [doc]) if isinstance(doc, dict) else doc
        boxes = []
        try:
            for it in items:
                lb = np.asarray(it["lb"], dtype=np.float64).reshape(-1)
                ub = np.asarray(it["ub"], dtype=np.float64).reshape(-1)
                boxes.append((lb, ub))
        except (KeyError, TypeError, ValueError) as e:
            raise InputFileError(path, f"a box needs numeric 'lb' and 'ub' lists ({e})") from None
    else:
        from ..io.vnnlib import parse_vnnlib   # also .vnnlib.gz
        spec = parse_vnnlib(path, n_inputs=n, n_outputs=network.n_outputs)
        boxes = []
        for c in spec.cases:
            if not any(np.array_equal(c.lb, b[0]) and np.array_equal(c.ub, b[1]) for b in boxes):
                boxes.append((c.lb.copy(), c.ub.copy()))
    for lb, ub in boxes:
        if lb.shape != (n,) or ub.shape != (n,):
            raise InputFileError(path, f"box has {lb.size}/{ub.size} bounds, network has {n} inputs")
        if not (np.all(np.isfinite(lb)) and np.all(np.isfinite(ub))):
            raise InputFileError(path, "box bounds must be finite")
    boxes = [b for b in boxes if np.all(b[0] <= b[1])]
    if not boxes:
        raise InputFileError(path, "the region is empty")
    return boxes


def sample_box(lb, ub, n: int, rng, corners: bool = True) -> np.ndarray:
    """``n`` uniform points of the box, plus its corners (all when ``n_inputs <= 10``, else 64
    random ones) and its centre.  Returns ndarray (m, n_inputs)."""
    lb, ub = np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64)
    d = lb.size
    pts = [lb + rng.random((n, d)) * (ub - lb), ((lb + ub) / 2)[None]]
    if corners:
        if d <= 10:
            bits = ((np.arange(2 ** d)[:, None] >> np.arange(d)) & 1).astype(bool)
        else:
            bits = rng.random((64, d)) < 0.5
        pts.append(np.where(bits, ub, lb))
    return np.vstack(pts)


def _pgd_witness(net_k: Network, lb, ub, js, signs, rng, restarts=4, steps=25):
    """Try to drive neuron ``js[i]`` of ``net_k``'s output to sign ``signs[i]`` (+1 / -1).
    Returns a bool mask of the neurons for which a strict witness was found."""
    m = len(js)
    if m == 0:
        return np.zeros(0, dtype=bool)
    R = restarts
    X = lb + rng.random((m * R, lb.size)) * (ub - lb)
    C = np.zeros((m * R, net_k.n_outputs))
    C[np.arange(m * R), np.repeat(js, R)] = np.repeat(signs, R).astype(np.float64)
    from ..attack import network_gradient
    found = np.zeros(m, dtype=bool)
    width = ub - lb
    for t in range(steps + 1):
        Y = net_k.forward(X)
        val = np.sum(Y * C, axis=1)                  # sign * z_j, want > 0
        found |= (val > 0).reshape(m, R).any(axis=1)
        if t == steps or found.all():
            break
        g = network_gradient(net_k, X, C)
        alpha = 0.3 * (0.01 ** (t / steps))
        X = np.clip(X + alpha * width * np.sign(g), lb, ub)
    return found


def _certify_box(network, packed, lb, ub, deadline, use_alpha, use_milp, n_samples, rng, use_pgd):
    sizes = network.hidden_sizes
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    n = int(offs[-1])
    phase = np.zeros(n, dtype=np.int8)
    how = [""] * n
    wit = [""] * n
    X = sample_box(lb, ub, n_samples, rng)
    Z = np.hstack(network.pre_activations(X)) if n else np.zeros((X.shape[0], 0))
    seen_pos, seen_neg = np.any(Z > 0, axis=0), np.any(Z < 0, axis=0)
    for i in np.nonzero(seen_pos & seen_neg)[0]:
        wit[i] = "unstable:sample"
    for method in ("ibp", "crown"):
        lbd = compute_bounds(packed, lb, ub, None, method)
        for i in np.nonzero(lbd.stable_active | lbd.stable_inactive)[0]:
            if not how[i]:
                how[i] = method
                phase[i] = 1 if lbd.stable_active[i] else -1
    for k in range(len(sizes)):
        lbd = compute_bounds(packed, lb, ub, phase, "crown")
        for i in range(offs[k], offs[k + 1]):
            if phase[i] == 0 and (lbd.stable_active[i] or lbd.stable_inactive[i]):
                phase[i] = 1 if lbd.stable_active[i] else -1
                how[i] = "crown"
        open_ = [i for i in range(offs[k], offs[k + 1]) if phase[i] == 0 and not wit[i]]
        if not open_ or not (use_pgd or use_alpha or use_milp):
            continue
        net_k = Network(network.affines[:k + 1])
        js = np.array(open_) - offs[k]
        # PGD towards the sign not yet seen (rules neurons out cheaply)
        want = np.where(seen_pos[open_], -1, 1)
        hit = _pgd_witness(net_k, lb, ub, js, want, rng) if use_pgd else np.zeros(len(js), bool)
        for i, h in zip(open_, hit):
            if h:
                wit[i] = "unstable:pgd"
        open_ = [i for i in open_ if not wit[i]]
        if open_ and use_alpha:
            js = np.array(open_) - offs[k]
            to_active = seen_pos[open_]
            C = np.zeros((len(open_), sizes[k]))
            C[np.arange(len(open_)), js] = np.where(to_active, 1.0, -1.0)
            pk = pack(net_k)
            ab = alpha_crown(pk, lb, ub, phase[:offs[k]] if k else None, C, np.zeros(len(open_)))
            for r, i in enumerate(open_):
                if not ab.infeasible and ab.obj_lower[r] >= 0.0:
                    phase[i] = 1 if to_active[r] else -1
                    how[i] = "alpha"
            open_ = [i for i in open_ if phase[i] == 0]
        if open_ and use_milp and time.monotonic() < deadline:
            lbd = compute_bounds(packed, lb, ub, phase, "crown")
            zl = [lbd.lb[offs[q]:offs[q + 1]] for q in range(k)]
            zu = [lbd.ub[offs[q]:offs[q + 1]] for q in range(k)]
            js = np.array(open_) - offs[k]
            aff = network.affines[k]
            milp = ReluMILP(network, lb, ub, zl, zu, k, aff.W[js], aff.b[js])
            for r, i in enumerate(open_):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                tol = 1e-7 * (1.0 + max(abs(lbd.lb[i]), abs(lbd.ub[i])))
                to_active = bool(seen_pos[i])
                st, x = (milp.feasible(r, hi=tol, time_limit_s=left) if to_active
                         else milp.feasible(r, lo=-tol, time_limit_s=left))
                if st == "infeasible":
                    phase[i] = 1 if to_active else -1
                    how[i] = "milp"
                elif st == "feasible":
                    z = net_k.forward(x)[js[r]]
                    if (z < 0) if to_active else (z > 0):
                        wit[i] = "unstable:milp"
    for i in range(n):
        if phase[i] == 0:
            how[i] = wit[i] or "unknown"
    return phase, how


def certify_stable(network: Network, boxes, *, budget_s: float = 10.0, use_alpha: bool = True,
                   use_milp: bool = True, n_samples: int = 1024, seed: int = 0,
                   use_pgd: bool = True, refine: int = 1) -> StableSets:
    """Certified stable neurons of ``network`` on the union of ``boxes``.

    Parameters
    ----------
    network : Network
    boxes : list of (lb, ub) ndarray pairs, shape (n_inputs,)
    budget_s : float -- wall-clock budget, seconds, of the MILP queries for the whole region
        (bounds, PGD and alpha-CROWN always run)
    use_alpha, use_milp, use_pgd : bool -- enable alpha-CROWN / MILP / PGD on the near-stable
        remainder (all off: IBP + layer-wise CROWN only, the fast mode used for many slices)
    n_samples : int -- random samples per box (plus corners), used only to rule neurons out
    seed : int
    refine : int -- split each box into up to ``refine`` sub-boxes (k-d tree) and certify on their
        union (see the module docstring; 1: no refinement)

    Returns
    -------
    StableSets -- a neuron is stable on the union only when stable with the same sign on every box
    """
    t0 = time.monotonic()
    rng = np.random.default_rng(seed)
    packed = pack(network)
    n = network.n_relus
    boxes = [(np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64)) for lb, ub in boxes]
    cert = boxes
    if refine > 1:
        cert = [sb for b in boxes for sb in split_region(network, [b], refine)]
    phase = None
    how = [""] * n
    for bi, (lb, ub) in enumerate(cert):
        deadline = t0 + budget_s * (bi + 1) / len(cert)
        ph, hw = _certify_box(network, packed, lb, ub, deadline, use_alpha, use_milp, n_samples, rng,
                              use_pgd)
        if phase is None:
            phase, how = ph.copy(), list(hw)
            continue
        for i in range(n):
            if phase[i] != 0 and ph[i] == phase[i]:
                how[i] = max(how[i], hw[i], key=lambda h: _RANK.get(h, 0))
                continue
            if int(phase[i]) * int(ph[i]) < 0:
                how[i] = "unstable:boxes"
            elif phase[i] == 0 and how[i].startswith("unstable"):
                pass
            elif ph[i] == 0 and hw[i].startswith("unstable"):
                how[i] = hw[i]
            else:
                how[i] = "unknown"
            phase[i] = 0
    for i in range(n):
        if phase[i] == 0 and not how[i].startswith("unstable") and how[i] != "unknown":
            how[i] = "unknown"
    return StableSets(phase.astype(np.int8), how, list(network.hidden_sizes), boxes,
                      time.monotonic() - t0, cert)
