"""Linear terms and DNF formulas of VNN-LIB 1.0 (:mod:`dpllnn.io.vnnlib`'s algebra).

A linear term is ``(coefs, const)`` with ``coefs = {(kind, idx): coef}`` (kind 0 = an input
``X_i``, 1 = an output ``Y_j``).  A formula is a DNF: a ``list`` of terms ``(input literals,
output rows)``; an input literal is ``(i, is_upper, value)`` or a :class:`Block` of many, an
output row ``({j: c}, d)`` meaning ``sum_j c * Y_j <= d``.  :class:`DnfAlgebra` compares terms,
conjoins and disjoins formulas (within :data:`MAX_TERMS` terms and :data:`MAX_LITERALS` literal
copies) and turns the final DNF into the :class:`~dpllnn.spec.Spec`'s boxes and output
disjuncts; the tokenizer and shift-reduce driver that call it live in :mod:`dpllnn.io.vnnlib`.
"""
from __future__ import annotations

import math

import numpy as np

from ..spec import Case, Disjunct, Spec

__all__ = ["Block", "DnfAlgebra", "MAX_TERMS", "MAX_LITERALS", "MAX_BOX_FLOATS"]

MAX_TERMS = 100_000           # DNF terms allowed after distributing and over or
MAX_LITERALS = 20_000_000     # literal copies allowed while distributing (memory guard)
MAX_BOX_FLOATS = 50_000_000   # n_terms * n_inputs allowed when building the boxes


class Block:
    """Many input bounds at once: ``x[idx] <= val`` where ``up`` else ``x[idx] >= val``."""

    __slots__ = ("idx", "up", "val")

    def __init__(self, idx, up, val):
        self.idx, self.up, self.val = idx, up, val

class DnfAlgebra:
    """Mixin of the VNN-LIB 1.0 parser: the algebra of terms and formulas.  The parser
    provides ``err(token_index, msg)`` (raises :class:`~dpllnn.errors.SpecError` with the
    line), ``xmap``/``ymap`` (declared names -> indices), ``names``/``dk`` (declaration names
    and their tokens), ``g_in``/``g_out`` (input literals and output rows asserted
    unconditionally), ``multi`` (asserted multi-term formulas) and ``false``."""

    def compare(self, op: str, a, b, k: int) -> list:
        """``a op b`` for linear terms -> DNF (one term, or none when constantly false)."""
        if op[0] == ">":
            a, b = b, a
        coefs = dict(a[0])
        for key, c in b[0].items():
            coefs[key] = coefs.get(key, 0.0) - c
        coefs = {key: c for key, c in coefs.items() if c != 0.0}
        const = a[1] - b[1]                        # sum(coefs * vars) + const <= 0
        if not coefs:
            return [([], [])] if const <= 0.0 else []
        kinds = {key[0] for key in coefs}
        if len(kinds) == 2:
            self.err(k, "unsupported: comparison mixes inputs X and outputs Y")
        if 0 in kinds:
            if len(coefs) > 1:
                names = ", ".join(f"X_{i}" for _, i in sorted(coefs))
                self.err(k, f"unsupported: non-box input constraint over {names}")
            ((_, i), c), = coefs.items()
            v = -const / c
            if not math.isfinite(v):
                self.err(k, "bound is not finite")
            return [([(i, c > 0.0, v)], [])]
        return [([], [({j: c for (_, j), c in coefs.items()}, -const)])]

    def finite(self, term, k: int):
        """``term`` unchanged, or an error when arithmetic overflowed to inf/NaN."""
        if not math.isfinite(term[1]) or not all(map(math.isfinite, term[0].values())):
            self.err(k, "arithmetic overflow: a coefficient or constant is not finite")
        return term

    def arith(self, op: str, terms: list, k: int):
        """``(op t1 t2 ...)`` for ``op`` in ``+ - * /`` over linear terms ``(coefs, const)`` ->
        a linear term; products and quotients must keep it linear."""
        if op in ("+", "-"):
            if not terms:
                self.err(k, f"'{op}' needs arguments")
            if op == "-" and len(terms) == 1:
                return ({key: -c for key, c in terms[0][0].items()}, -terms[0][1])
            coefs, const = dict(terms[0][0]), terms[0][1]
            sign = 1.0 if op == "+" else -1.0
            for cs, c0 in terms[1:]:
                for key, c in cs.items():
                    coefs[key] = coefs.get(key, 0.0) + sign * c
                const += sign * c0
            return self.finite((coefs, const), k)
        if op in ("*", "/"):
            if len(terms) < 2:
                self.err(k, f"'{op}' needs at least 2 arguments")
            if op == "/":
                if any(t[0] for t in terms[1:]):
                    self.err(k, "unsupported: division by a variable")
                den = math.prod(t[1] for t in terms[1:])
                if den == 0.0:
                    self.err(k, "division by zero")
                terms = [terms[0], ({}, 1.0 / den)]
            nonconst = [t for t in terms if t[0]]
            if len(nonconst) > 1:
                self.err(k, "unsupported: nonlinear product of variables")
            f = math.prod(t[1] for t in terms if not t[0])
            if not nonconst:
                return self.finite(({}, f), k)
            return self.finite(({key: c * f for key, c in nonconst[0][0].items()},
                                nonconst[0][1] * f), k)

    def conj(self, parts: list, k) -> list:
        singles, multi = [], []
        for p in parts:
            if not p:
                return []
            if len(p) == 1:
                singles.append(p[0])
            else:
                multi.append(p)
        if singles:                                  # extend the biggest one in place
            singles.sort(key=lambda t: len(t[0]) + len(t[1]), reverse=True)
            base = singles[0]
            for t in singles[1:]:
                base[0].extend(t[0])
                base[1].extend(t[1])
        else:
            base = ([], [])
        terms = [base]
        for p in multi:
            if len(terms) * len(p) > MAX_TERMS:
                self.err(k, f"DNF too large: more than {MAX_TERMS} terms")
            size = sum(len(a[0]) + len(a[1]) for a in terms) * len(p) + \
                sum(len(b[0]) + len(b[1]) for b in p) * len(terms)
            if size > MAX_LITERALS:
                self.err(k, f"DNF too large: more than {MAX_LITERALS} literals")
            terms = [(a[0] + b[0], a[1] + b[1]) for a in terms for b in p]
        return terms

    def disj(self, parts: list, k: int) -> list:
        if not parts:
            return []
        parts.sort(key=len, reverse=True)
        base = parts[0]
        for p in parts[1:]:
            base.extend(p)
        if len(base) > MAX_TERMS:
            self.err(k, f"DNF too large: more than {MAX_TERMS} terms")
        return base

    def counts(self, kind: int, given, letter: str, what: str) -> int:
        idx = sorted((self.xmap if kind == 0 else self.ymap).values())
        n = len(idx)
        if idx != list(range(n)):
            missing = next(i for i in range(n + 1) if i >= n or idx[i] != i)
            self.err(None, f"{what}s must be {letter}_0..{letter}_{n - 1}: {letter}_{missing} "
                     "is not declared")
        if given is not None and given != n:
            rng = f" {letter}_0..{letter}_{n - 1}" if n else ""
            self.err(None, f"property declares {n} {what}s{rng} but the network has {given}")
        return n

    @staticmethod
    def apply(lb, ub, lits):
        """Intersect the box ``[lb, ub]`` (in place) with the input literals ``lits``."""
        for e in lits:
            if isinstance(e, Block):
                np.minimum.at(ub, e.idx[e.up], e.val[e.up])
                np.maximum.at(lb, e.idx[~e.up], e.val[~e.up])
            elif e[1]:
                ub[e[0]] = min(ub[e[0]], e[2])
            else:
                lb[e[0]] = max(lb[e[0]], e[2])

    def build(self, n_inputs, n_outputs) -> Spec:
        nx = self.counts(0, n_inputs, "X", "input")
        ny = self.counts(1, n_outputs, "Y", "output")
        if nx == 0:
            self.err(None, "the property declares no input variables X_i")
        lb, ub = np.full(nx, -np.inf), np.full(nx, np.inf)
        self.apply(lb, ub, self.g_in)
        terms = [] if self.false else self.conj(self.multi, None) if self.multi else [([], [])]
        if len(terms) * nx > MAX_BOX_FLOATS:
            self.err(None, f"property too large: {len(terms)} boxes of {nx} inputs")
        cases: dict[bytes, Case] = {}
        for t_in, t_out in terms:
            tlb, tub = lb.copy(), ub.copy()
            self.apply(tlb, tub, t_in)
            for arr, side in ((tlb, "lower"), (tub, "upper")):
                bad = np.flatnonzero(np.isinf(arr))
                if bad.size:
                    name = f"X_{bad[0]}"
                    self.err(self.dk[self.names.index(name)], f"{name} has no {side} bound")
            tlb += 0.0                               # -0.0 -> 0.0 so equal boxes group
            tub += 0.0
            rows = self.g_out + t_out
            C = np.zeros((len(rows), ny))
            for r, (cs, _) in enumerate(rows):
                for j, c in cs.items():
                    C[r, j] += c
            dj = Disjunct(C, np.array([d for _, d in rows], dtype=np.float64) + 0.0)
            key = tlb.tobytes() + tub.tobytes()
            if key in cases:
                cases[key].disjuncts.append(dj)
            else:
                cases[key] = Case(tlb, tub, [dj])
        return Spec(list(cases.values()), nx, ny, source=self.path)
