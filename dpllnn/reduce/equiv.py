"""Equivalence of two networks on a region: sampling, PGD, and a formal product-network check.

The *product network* ``P(x) = N_A(x) - N_B(x)`` shares the input: both networks are first padded
to the same depth (a ReLU layer carries a linear value ``v`` exactly as ``relu(v) - relu(-v)``),
then the first affine stacks both first layers, hidden layers are block-diagonal and the last
affine subtracts.  ``N_A`` and ``N_B`` are ``eps``-equivalent on the boxes iff the unsafe property
"some ``P_i(x) >= eps`` or ``P_i(x) <= -eps``" (``2 n_out`` disjuncts) is unsat.

Order: sampled points and box corners, then PGD on each ``+-P_i``, then sound bounds on ``P``
(CROWN), then neuron-function matching (:mod:`dpllnn.reduce.forms`: sound, and the check that
succeeds on pruned networks; given a *tiling* of a box, e.g. the sub-boxes its stable sets were
certified on, the atoms' ranges are the maximum of CROWN over the sub-boxes, which keeps the error
bound below ``eps`` on big boxes), then a HiGHS MILP per disjunct (:mod:`dpllnn.lp.milp`; measured faster than the
search on product networks, whose LP relaxation of ``N - N`` is loose), then, if still open,
:func:`dpllnn.search.verify.verify` on the property with the remaining time.  A counterexample is reported only after a
float64 replay shows ``|N_A(x) - N_B(x)| > eps``.

Exactness.  Pruning changes float rounding, so "exactly equivalent" is checked with
:func:`default_eps`: ``eps = 1e-6 * (1 + max |N_A(x)|)`` over sampled points of the region.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from ..bounds import compute_bounds, pack
from ..model.compose import pad_to_depth
from ..network import Affine, Network
from ..spec import Case, Disjunct, Spec
from .forms import form_difference_bound
from ..lp.milp import ReluMILP
from .stable import sample_box

__all__ = ["product_network", "pad_to_depth", "check_equivalence", "EquivResult", "default_eps",
           "difference_spec", "tiled_upper_bounds"]


def product_network(A: Network, B: Network) -> Network:
    """``x -> N_A(x) - N_B(x)`` as one canonical network (shared input, block-diagonal layers)."""
    if A.n_inputs != B.n_inputs or A.n_outputs != B.n_outputs:
        raise ValueError(f"networks differ in shape: {A.n_inputs}->{A.n_outputs} vs "
                         f"{B.n_inputs}->{B.n_outputs}")
    D = max(A.n_hidden_layers, B.n_hidden_layers)
    A, B = pad_to_depth(A, D), pad_to_depth(B, D)
    if D == 0:
        return Network([Affine(A.affines[0].W - B.affines[0].W, A.affines[0].b - B.affines[0].b)],
                       input_shape=tuple(A.input_shape))
    affs = [Affine(np.vstack([A.affines[0].W, B.affines[0].W]),
                   np.concatenate([A.affines[0].b, B.affines[0].b]))]
    for k in range(1, D):
        a, b = A.affines[k], B.affines[k]
        W = np.zeros((a.n_out + b.n_out, a.n_in + b.n_in))
        W[:a.n_out, :a.n_in] = a.W
        W[a.n_out:, a.n_in:] = b.W
        affs.append(Affine(W, np.concatenate([a.b, b.b])))
    a, b = A.affines[D], B.affines[D]
    affs.append(Affine(np.hstack([a.W, -b.W]), a.b - b.b))
    return Network(affs, input_shape=tuple(A.input_shape))


def difference_spec(n_inputs: int, n_outputs: int, boxes, eps: float) -> Spec:
    """Unsafe set of the product network: some output ``>= eps`` or ``<= -eps``, on any box."""
    disj = []
    for i in range(n_outputs):
        e = np.zeros((1, n_outputs))
        e[0, i] = 1.0
        disj.append(Disjunct(-e, [-eps]))     # diff_i >= eps
        disj.append(Disjunct(e, [-eps]))      # diff_i <= -eps
    cases = [Case(lb, ub, [Disjunct(d.C.copy(), d.d.copy()) for d in disj]) for lb, ub in boxes]
    return Spec(cases, n_inputs, n_outputs, source="<equivalence>")


def default_eps(A: Network, boxes, n: int = 256, seed: int = 0, rel: float = 1e-6) -> float:
    """``rel * (1 + max |N_A(x)|)`` over sampled points and corners of the boxes."""
    rng = np.random.default_rng(seed)
    m = max(float(np.max(np.abs(A.forward(sample_box(lb, ub, n, rng))))) for lb, ub in boxes)
    return rel * (1.0 + m)


@dataclass
class EquivResult:
    """``verdict``: ``equivalent`` (proved), ``different`` (counterexample) or ``unknown``."""

    verdict: str
    eps: float
    how: str
    max_diff_seen: float
    time_s: float
    x: np.ndarray | None = None
    diff: np.ndarray | None = None

    @property
    def proved(self) -> bool:
        return self.verdict == "equivalent"

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "eps": self.eps, "how": self.how,
                "max_diff_seen": self.max_diff_seen, "time_s": round(self.time_s, 6),
                "counterexample": None if self.x is None else
                {"x": [float(v) for v in self.x], "diff": [float(v) for v in self.diff]}}


def _pgd_extremes(P: Network, lb, ub, rng, restarts=4, steps=30):
    """Max of ``+-P_i`` by sign-gradient ascent; returns (best value, its x)."""
    from ..attack import network_gradient
    m = P.n_outputs
    rows = np.repeat(np.vstack([np.eye(m), -np.eye(m)]), restarts, axis=0)
    X = lb + rng.random((rows.shape[0], lb.size)) * (ub - lb)
    width = ub - lb
    best, bx = -np.inf, None
    for t in range(steps + 1):
        val = np.sum(P.forward(X) * rows, axis=1)
        i = int(np.argmax(val))
        if val[i] > best:
            best, bx = float(val[i]), X[i].copy()
        if t == steps:
            break
        g = network_gradient(P, X, rows)
        X = np.clip(X + 0.3 * (0.01 ** (t / steps)) * width * np.sign(g), lb, ub)
    return best, bx


def check_equivalence(A: Network, B: Network, boxes, eps: float | None = None, *,
                      timeout_s: float = 60.0, seed: int = 0, use_verify: bool = True,
                      use_milp: bool = True, n_samples: int = 1024, pgd: bool = True,
                      verify_share: float = 0.5, phases=None, tiling=None) -> EquivResult:
    """Is ``max |N_A(x) - N_B(x)| < eps`` for every ``x`` in the boxes?

    Parameters
    ----------
    A, B : Network -- same numbers of inputs and outputs
    boxes : list of (lb, ub)
    eps : float or None -- tolerance (> 0); None: :func:`default_eps`
    timeout_s : float -- wall-clock budget for the whole check
    use_milp, use_verify : bool -- formal back-ends tried in this order after bounds (the MILP
        gets ``1 - verify_share`` of the remaining time when verify is enabled, then verify the rest)
    n_samples, pgd : random samples per box (0: no sampling at all) and whether to run PGD
    phases : list of ndarray int8 (A.n_relus,) per box, optional -- certified phases of ``A``
        (e.g. from :func:`dpllnn.reduce.stable.certify_stable`) for the form-matching proof
    tiling : list of (lb, ub), optional -- sub-boxes with disjoint interiors that tile the boxes
        (e.g. :attr:`StableSets.cert_boxes`); the sub-boxes inside a box tighten ``A``'s
        pre-activation ranges for the form-matching proof, when their volumes sum to the box's
        (otherwise they are ignored for that box)

    Returns
    -------
    EquivResult
    """
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    boxes = [(np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64)) for l, u in boxes]
    if eps is None:
        eps = default_eps(A, boxes, seed=seed)
    if not eps > 0:
        raise ValueError("eps must be > 0")
    P = product_network(A, B)
    rng = np.random.default_rng(seed)
    worst = 0.0

    def out(verdict, how, x=None):
        diff = None if x is None else A.forward(x) - B.forward(x)
        return EquivResult(verdict, eps, how, worst, time.monotonic() - t0, x, diff)

    def confirm(x):  # float64 replay of both networks separately
        return x is not None and float(np.max(np.abs(A.forward(x) - B.forward(x)))) >= eps

    for lb, ub in boxes if n_samples > 0 else []:  # 1. sampling
        X = sample_box(lb, ub, n_samples, rng)
        D = np.abs(A.forward(X) - B.forward(X))
        i = int(np.argmax(np.max(D, axis=1)))
        worst = max(worst, float(np.max(D[i])))
        if D[i].max() >= eps:
            return out("different", "sample", X[i])
    for lb, ub in boxes if pgd else []:  # 2. PGD
        v, x = _pgd_extremes(P, lb, ub, rng)
        worst = max(worst, v)
        if v >= eps and confirm(x):
            return out("different", "pgd", x)
    packed = pack(P)
    open_boxes = []
    for lb, ub in boxes:  # 3. sound bounds on the difference
        lbd = compute_bounds(packed, lb, ub, None, "crown")
        if not (np.all(lbd.output_ub < eps) and np.all(lbd.output_lb > -eps)):
            open_boxes.append((lb, ub, lbd))
    if not open_boxes:
        return out("equivalent", "bounds")
    still = []
    for bi, (lb, ub, lbd) in enumerate(open_boxes):  # 4. neuron-function matching (forms.py)
        ph = None if phases is None else phases[boxes_index(boxes, lb, ub)]
        z_ub = None if tiling is None else tiled_upper_bounds(A, lb, ub, tiling, ph)
        bnd = form_difference_bound(A, B, lb, ub, ph, z_ub=z_ub)
        if bnd is None or not np.all(bnd < eps):
            still.append((lb, ub, lbd))
    open_boxes = still
    if not open_boxes:
        return out("equivalent", "forms")
    if use_milp:
        share = (1.0 - verify_share) if use_verify else 1.0
        st, x = _milp(P, open_boxes, eps, time.monotonic() + share * (deadline - time.monotonic()))
        if st == "equivalent":
            return out("equivalent", "milp")
        if st == "feasible" and confirm(x):
            return out("different", "milp", x)
    if use_verify and time.monotonic() < deadline:  # 5. dpllnn's own search
        v = _verify(P, [(l, u) for l, u, _ in open_boxes], eps, deadline - time.monotonic(), seed)
        if isinstance(v, str) and v == "unsat":     # else a counterexample array or None
            return out("equivalent", "verify")
        if isinstance(v, np.ndarray) and confirm(v):
            return out("different", "verify", v)
    return out("unknown", "time limit" if time.monotonic() >= deadline else "no proof")


def tiled_upper_bounds(A: Network, lb, ub, tiling, phase=None, rtol: float = 1e-9):
    """Max over the sub-boxes of ``tiling`` inside ``[lb, ub]`` of ``A``'s CROWN pre-activation
    upper bounds (with ``phase`` where it is consistent on the sub-box), or None when those
    sub-boxes' volumes do not sum to the box's.  Sound when the tiling's sub-boxes have disjoint
    interiors (then they cover the box)."""
    subs = [(np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64)) for l, u in tiling]
    subs = [(l, u) for l, u in subs if np.all(l >= lb) and np.all(u <= ub)]
    vol = float(np.prod(ub - lb))
    if not subs or vol <= 0 or abs(sum(float(np.prod(u - l)) for l, u in subs) - vol) > rtol * max(vol, 1e-300):
        return None
    packed = pack(A)
    z_ub = np.full(A.n_relus, -np.inf)
    for l, u in subs:
        lbd = compute_bounds(packed, l, u, phase, "crown")
        if lbd.infeasible:      # phases not consistent here: bounds without them
            lbd = compute_bounds(packed, l, u, None, "crown")
        np.maximum(z_ub, lbd.ub, out=z_ub)
    return z_ub


def boxes_index(boxes, lb, ub) -> int:
    return next(i for i, (l, u) in enumerate(boxes) if l is lb and u is ub)


def _milp(P: Network, open_boxes, eps, deadline):
    """MILP per box and disjunct: ("equivalent", None), ("feasible", x) or ("unknown", None)."""
    for lb, ub, lbd in open_boxes:
        L = P.n_hidden_layers
        offs = np.concatenate([[0], np.cumsum(P.hidden_sizes)]).astype(int)
        zl = [lbd.lb[offs[k]:offs[k + 1]] for k in range(L)]
        zu = [lbd.ub[offs[k]:offs[k + 1]] for k in range(L)]
        milp = None
        for i in range(P.n_outputs):
            for side in (1, -1):
                if (lbd.output_ub[i] < eps) if side == 1 else (lbd.output_lb[i] > -eps):
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return "unknown", None
                if milp is None:
                    milp = ReluMILP(P, lb, ub, zl, zu, L, P.affines[-1].W, P.affines[-1].b)
                st, x = (milp.feasible(i, lo=eps, time_limit_s=left) if side == 1
                         else milp.feasible(i, hi=-eps, time_limit_s=left))
                if st != "infeasible":
                    return st, x
    return "equivalent", None


def _verify(P: Network, boxes, eps, timeout_s, seed):
    """dpllnn.verify on the difference property: "unsat", a counterexample x, or None."""
    from ..io.onnx_export import to_onnx
    from ..result import Verdict
    from ..search.verify import verify

    spec = difference_spec(P.n_inputs, P.n_outputs, boxes, eps)
    with tempfile.TemporaryDirectory(prefix="dpllnn-equiv-") as d:
        path = os.path.join(d, "product.onnx")
        to_onnx(P, path, dtype="float64")
        P.source = path          # counterexamples are replayed in onnxruntime by verify
        try:
            res = verify(P, spec, timeout_s=max(timeout_s, 0.1), seed=seed, workers=1, mode="auto")
        finally:
            P.source = None
    if res.verdict is Verdict.UNSAT:
        return "unsat"
    if res.verdict is Verdict.SAT:
        return res.counterexample.x
    return None
