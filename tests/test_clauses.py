"""Theory clauses of the CDCL search (:mod:`dpllnn.search.clauses`): every clause the theory
hands to CaDiCaL is valid -- checked cell by cell against the exact LP of each phase pattern it
excludes -- with and without shortening, and shortening changes no verdict."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import dpllnn
from dpllnn.result import Verdict
from dpllnn.settings import CdclSettings, SearchSettings, TheorySettings
from dpllnn.spec import Spec
from naive import (cell_margin, exhaustive_decide, random_network, random_spec,
                   small_margin_problem)

TOL = 1e-6


def _settings(shorten):
    return SearchSettings(cdcl=CdclSettings(theory=TheorySettings(shorten_clauses=shorten,
                                                                   record_clauses=True)))


def _searched_problems():
    """One-case problems that reach the CDCL search: each box of the small-margin family
    (unsat by 0.1 % of the output range), then random tiny properties."""
    for seed in range(8):
        net, spec, _ = small_margin_problem(seed, hidden=(3, 3, 2))
        for c in spec.cases:
            yield net, Spec([c], spec.n_inputs, spec.n_outputs)
    for seed in range(60):
        yield _problem(seed)


def _problem(seed):
    """16 ReLUs: searches long enough to learn clauses that leave phases free."""
    rng = np.random.default_rng(7000 + seed)
    net = random_network(rng, n_in=3, hidden=(8, 8), n_out=3)
    return net, random_spec(rng, net, n_cases=1, n_disjuncts=2)


def _violated(net, case, clause, sel_of):
    """The lowest margin over the phase patterns and points the clause excludes (``<= 0``: some
    point of the box with those phases violates what the clause says cannot be violated)."""
    n = net.n_relus
    phase = np.zeros(n, dtype=np.int8)
    need = []                                  # disjuncts the clause says are not violated
    for lit in clause:
        v = abs(lit)
        if v <= n:
            phase[v - 1] = -1 if lit > 0 else 1   # the clause is false: every literal false
        elif v in sel_of and lit < 0:
            need.append(sel_of[v])
    free = np.flatnonzero(phase == 0)
    groups = [need] if need else [[i] for i in sel_of.values()]
    worst = np.inf
    for bits in itertools.product((1, -1), repeat=free.size):
        ph = phase.copy()
        ph[free] = bits
        for g in groups:
            C = np.vstack([case.disjuncts[i].C for i in g])
            d = np.concatenate([case.disjuncts[i].d for i in g])
            worst = min(worst, cell_margin(net, case.lb, case.ub, ph, C, d)[0])
    return worst


@pytest.mark.parametrize("shorten", [True, False])
def test_every_theory_clause_is_valid(shorten):
    checked = shortened = 0
    for seed, (net, spec) in enumerate(_searched_problems()):
        if checked >= 40:
            break
        res = dpllnn.verify(net, spec, mode="cdcl", timeout_s=20.0, falsify_s=0.0, workers=1,
                            settings=_settings(shorten))
        st = res.stats
        if "clauses" not in st:
            continue                          # decided before the search
        shortened += st.get("clauses_shortened", 0)
        sel_of = st["sel_vars"]
        n = net.n_relus
        # the clauses that leave at most 2**8 phase patterns to check, shortest first
        clauses = sorted((c for c in {tuple(c) for c in st["clauses"]}
                          if n - sum(abs(l) <= n for l in c) <= 8), key=len)[:25]
        for c in clauses:
            m = _violated(net, spec.cases[0], c, sel_of)
            assert m > -TOL, (seed, c, m)
            checked += 1
    assert checked >= 40, checked
    if shorten:
        assert shortened >= 1      # the re-checked shortening was exercised
    else:
        assert shortened == 0


@pytest.mark.parametrize("seed", range(8))
def test_shortening_changes_no_verdict(seed):
    net, spec, _ = small_margin_problem(20 + seed, hidden=(3, 3, 2))
    truth, _ = exhaustive_decide(net, spec)
    got = []
    for shorten in (True, False):
        res = dpllnn.verify(net, spec, mode="cdcl", timeout_s=20.0, falsify_s=0.0, workers=1,
                            settings=_settings(shorten))
        got.append(res.verdict)
        st = res.stats
        assert st.get("clauses_shortened", 0) <= st.get("clause_rechecks", 0)
        assert st.get("clause_lits", 0) <= st.get("clause_lits_full", 0)
    assert got[0] == got[1]
    assert got[0] in (Verdict.SAT, Verdict.UNSAT) and got[0].value == truth
