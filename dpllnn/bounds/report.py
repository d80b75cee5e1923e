"""The document printed by ``dpllnn bounds NET SPEC [--method ...] [--json]``."""
from __future__ import annotations

import time


from .pack import pack
from .compute import compute_bounds


def bounds_report(network, spec, method: str = "crown") -> dict:
    """Bounds of every case of ``spec`` on ``network`` as a JSON-ready dict.

    Parameters
    ----------
    network : dpllnn.network.Network
    spec : dpllnn.spec.Spec
    method : {"ibp", "symbolic", "crown", "alpha"}
        ``"alpha"`` also optimises the intermediate layers (a one-shot report can afford it).

    Returns
    -------
    dict
        ``{"method", "time_s", "unstable", "layers": [{"lb", "ub"}, ...], "cases": [{"disjuncts":
        [{"lower", "upper"}, ...], "unstable", "layers", "infeasible"}, ...]}``.  The top-level
        ``unstable`` and ``layers`` are those of the first case; ``lower``/``upper`` bound each row
        of ``C @ y - d`` (a disjunct is refuted when some row has ``lower > 0``).  ``layers`` lists
        every affine layer, the last being the output.
    """
    t0 = time.perf_counter()
    packed = pack(network)
    cases = []
    for case in spec.cases:
        C, d, _ = case.stack()
        kw = {"intermediate": True} if method == "alpha" and C.shape[0] else {}
        lbd = compute_bounds(packed, case.lb, case.ub, None, method, C=C if C.shape[0] else None,
                             d=d if C.shape[0] else None, **kw)
        disj = []
        r = 0
        for dj in case.disjuncts:
            m = dj.C.shape[0]
            disj.append({"lower": lbd.obj_lower[r:r + m].tolist(), "upper": lbd.obj_upper[r:r + m].tolist()})
            r += m
        layers = []
        for k in range(packed.n_layers + 1):
            lo, hi = lbd.layer(k)
            layers.append({"lb": lo.tolist(), "ub": hi.tolist()})
        cases.append({"disjuncts": disj, "unstable": lbd.n_unstable, "layers": layers,
                      "infeasible": bool(lbd.infeasible)})
    first = cases[0] if cases else {"unstable": 0, "layers": []}
    return {"method": method, "time_s": time.perf_counter() - t0, "unstable": first["unstable"],
            "layers": first["layers"], "cases": cases}
