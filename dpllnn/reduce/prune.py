"""Exact pruning of a network on a region from its certified stable sets (Serra et al. 2021).

Per hidden layer, front to back, repeated until nothing changes:

1. *stably inactive* neurons are deleted (``relu(z) = 0`` on the region);
2. neurons with a zero weight row are folded into the next bias, positively proportional neurons
   are lumped (:mod:`dpllnn.reduce.lump`, region-free);
3. *stably active* neurons (``relu(z) = z``) are folded: a well-conditioned basis ``B`` of their
   weight rows is kept and every other active row ``r = c @ W_B`` (checked to ``1e-12`` relative)
   is replaced in the next layer by ``c @ a_B + (b_r - c @ b_B)``;
4. a layer whose remaining neurons are all stably active (or that is empty) is affine on the
   region and is composed into the next affine map (*collapse*);

then, back to front, neurons whose outgoing weights are all zero are deleted.  Every step is exact
in real arithmetic on the region; in float64 only rounding changes (measure it with
:mod:`dpllnn.reduce.equiv`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..network import Affine, Network
from .lump import drop_constant, drop_zero_outgoing, lump_layer
from .stable import StableSets

__all__ = ["prune_network", "PruneReport", "size_of", "active_basis"]

_FOLD_RTOL = 1e-12


def size_of(network: Network) -> dict:
    """``{"relus", "neurons", "params", "layers"}``: neurons counts every affine output unit."""
    return {"relus": network.n_relus, "neurons": int(sum(a.n_out for a in network.affines)),
            "params": network.n_params, "layers": list(network.hidden_sizes)}


@dataclass
class PruneReport:
    before: dict
    after: dict
    steps: dict = field(default_factory=dict)
    time_s: float = 0.0

    def to_json(self) -> dict:
        return {"before": self.before, "after": self.after, "steps": dict(self.steps),
                "time_s": round(self.time_s, 6)}

    def lines(self) -> list[str]:
        b, a = self.before, self.after
        return [f"ReLUs      {b['relus']:>8} -> {a['relus']:>8}",
                f"neurons    {b['neurons']:>8} -> {a['neurons']:>8}",
                f"parameters {b['params']:>8} -> {a['params']:>8}",
                "layers     " + "x".join(map(str, b["layers"])) + " -> "
                + ("x".join(map(str, a["layers"])) or "(affine)"),
                "steps      " + ", ".join(f"{k} {v}" for k, v in self.steps.items() if v)]


def active_basis(WS: np.ndarray, rtol: float = _FOLD_RTOL):
    """Split rows of ``WS`` (m, n) into a basis and combinations of it.

    Greedy pivoted Gram-Schmidt (largest residual first, re-orthogonalised) picks the basis; each
    other row gets ``c`` with ``row = c @ WS[basis]`` from least squares, accepted only when the
    residual is at most ``rtol`` times the row's size (else the row joins the basis).

    Returns
    -------
    basis : list of int; combos : dict row -> ndarray c (len(basis),)
    """
    m = WS.shape[0]
    norms = np.max(np.abs(WS), axis=1) if m else np.zeros(0)
    Q: list[np.ndarray] = []
    basis: list[int] = []
    res = WS.astype(np.float64).copy()
    rest = [i for i in range(m) if norms[i] > 0]
    while rest:
        i = max(rest, key=lambda r: np.linalg.norm(res[r]) / max(np.linalg.norm(WS[r]), 1e-300))
        rel = np.linalg.norm(res[i]) / np.linalg.norm(WS[i])
        if rel <= 1e-9:
            break
        q = res[i] / np.linalg.norm(res[i])
        for _ in range(2):
            for qq in Q:
                q = q - (q @ qq) * qq
            q = q / np.linalg.norm(q)
        Q.append(q)
        basis.append(i)
        rest.remove(i)
        for r in rest:
            res[r] = res[r] - (res[r] @ q) * q
    combos: dict = {}
    changed = True
    while changed:
        changed = False
        B = WS[basis]
        for r in range(m):
            if r in basis or r in combos:
                continue
            if norms[r] == 0:
                combos[r] = np.zeros(len(basis))
                continue
            c = np.linalg.lstsq(B.T, WS[r], rcond=None)[0] if basis else np.zeros(0)
            err = np.max(np.abs(WS[r] - c @ B)) if basis else norms[r]
            scale = norms[r] + (np.abs(c) @ np.max(np.abs(B), axis=1) if basis else 0.0)
            if err <= rtol * scale:
                combos[r] = c
            else:
                basis.append(r)
                combos.clear()
                changed = True
                break
    return basis, combos


def _fold_active(W, b, W_next, b_next, ph, steps):
    S = np.nonzero(ph == 1)[0]
    if S.size < 2 and not (S.size == 1 and not np.any(W[S[0]])):
        return W, b, W_next, b_next, ph
    basis, combos = active_basis(W[S])
    if not combos:
        return W, b, W_next, b_next, ph
    W_next, b_next = W_next.copy(), b_next.copy()
    Bi = S[basis]
    keep = np.ones(W.shape[0], dtype=bool)
    for r, c in combos.items():
        j = S[r]
        col = W_next[:, j]
        if basis:
            W_next[:, Bi] += np.outer(col, c)
        b_next += col * (b[j] - (c @ b[Bi] if basis else 0.0))
        keep[j] = False
    steps["active_folded"] += int((~keep).sum())
    return W[keep], b[keep], W_next[:, keep], b_next, ph[keep]


def _one_pass(Ws, bs, phases, steps, lump: bool, fold: bool) -> None:
    k = 0
    while k < len(Ws) - 1:
        W, b, Wn, bn, ph = Ws[k], bs[k], Ws[k + 1], bs[k + 1], phases[k]
        keep = ph != -1
        if not keep.all():
            steps["inactive_removed"] += int((~keep).sum())
            W, b, Wn, ph = W[keep], b[keep], Wn[:, keep], ph[keep]
        W, b, Wn, bn, ph, nc = drop_constant(W, b, Wn, bn, ph)
        steps["constant_folded"] += nc
        if lump:
            W, b, Wn, bn, ph, nl, nr = lump_layer(W, b, Wn, bn, ph)
            steps["lumped"] += nl
            steps["lump_refused_negative"] += nr
        if fold:
            W, b, Wn, bn, ph = _fold_active(W, b, Wn, bn, ph, steps)
        if ph.size == 0 or np.all(ph == 1):
            steps["layers_collapsed"] += 1
            steps["active_collapsed"] += int(ph.size)
            Ws[k + 1], bs[k + 1] = Wn @ W, Wn @ b + bn
            del Ws[k], bs[k], phases[k]
            continue
        Ws[k], bs[k], Ws[k + 1], bs[k + 1], phases[k] = W, b, Wn, bn, ph
        k += 1
    for k in range(len(Ws) - 2, -1, -1):
        Ws[k], bs[k], Ws[k + 1], phases[k], nz = drop_zero_outgoing(Ws[k], bs[k], Ws[k + 1], phases[k])
        steps["zero_outgoing_removed"] += nz


def prune_network(network: Network, stable: StableSets | None = None, *, lump: bool = True,
                  fold: bool = True) -> tuple[Network, PruneReport]:
    """Reduce ``network`` exactly on the region ``stable`` was certified for.

    Parameters
    ----------
    network : Network
    stable : StableSets or None -- None: only the region-free reductions (lumping, constants,
        zero outgoing weights)
    lump, fold : bool -- enable lumping / active folding and collapsing

    Returns
    -------
    (Network, PruneReport) -- the reduced network has the same inputs, outputs and shapes
    """
    t0 = time.monotonic()
    Ws = [a.W.copy() for a in network.affines]
    bs = [a.b.copy() for a in network.affines]
    if stable is None:
        phases = [np.zeros(s, dtype=np.int8) for s in network.hidden_sizes]
    else:
        if list(stable.hidden_sizes) != list(network.hidden_sizes):
            raise ValueError("stable sets were computed for a different network")
        phases = [p.copy() for p in stable.layer_phases()]
    if not fold:
        phases = [np.where(p == 1, 0, p).astype(np.int8) for p in phases]
    steps = {k: 0 for k in ("inactive_removed", "active_folded", "active_collapsed",
                            "layers_collapsed", "lumped", "lump_refused_negative",
                            "constant_folded", "zero_outgoing_removed")}
    while True:
        n_before = sum(W.size for W in Ws)
        _one_pass(Ws, bs, phases, steps, lump, fold)
        if sum(W.size for W in Ws) == n_before:
            break
    out = Network([Affine(W, b) for W, b in zip(Ws, bs)], input_shape=tuple(network.input_shape),
                  output_shape=tuple(network.output_shape), input_name=network.input_name,
                  output_name=network.output_name)
    out.meta["phases"] = phases
    rep = PruneReport(size_of(network), size_of(out), steps, time.monotonic() - t0)
    return out, rep
