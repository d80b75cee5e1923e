"""Hidden-phase CDCL: CaDiCaL 1.9.5 (PySAT, IPASIR-UP) + the ReLU theory propagator.

One solver per case.  The open disjuncts of the case share it through *selectors* (one Boolean per
open disjunct, with the clause "some selector is true"): the expensive part of a node, the hidden
bounds, is shared by every disjunct, a disjunct refuted under the current phases has its selector
propagated false (reason: the assigned phase literals), and phase conflicts learned for one
disjunct serve all of them.  The formula is unsatisfiable iff no open disjunct is reachable.

Driver loop (restarts, item 3 of issue 4)
------------------------------------------
The solver runs in chunks of ``luby(i) * restart_base`` conflicts (``conf_budget`` +
``solve_limited``; every chunk starts from decision level 0 and keeps all learned clauses).
Between chunks the driver

- re-bounds the root under the literals CaDiCaL fixed at level 0 (learned units) with alpha-CROWN
  on the open objective rows, and hands every neuron that became stable to the solver as a unit;
- alternates the branching heuristic (BaBSR score / interval width / CaDiCaL's own choice) and the
  early-layer bias.

Time limit.  ``Cadical195.interrupt`` is not implemented in PySAT, so the solver always runs under
the assumption ``guard``; the theory checks the clock at every ``propagate``/``check_model`` call
and, once ``deadline`` passed, the adapter adds the clause ``[-guard]``, which ends the call
immediately (returns False; the driver reads its own flag and answers ``timeout``).  A single
bound computation is the longest uninterrupted step (tens of ms on mnist 256x6).

Verdicts: ``sat`` only with a counterexample accepted by ``check_counterexample``; ``unsat`` only
when the solver proves the formula unsatisfiable without the guard and no model was ever blocked
without an LP infeasibility certificate; ``timeout`` when the deadline passed; ``unknown``
otherwise.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from ..bounds import alpha_crown, compute_bounds
from ..lp.graph_lp import GraphLP, graph_lp_columns
from ..lp.layered import LayeredLP
from ..result import Verdict
from ..settings import CdclSettings
from .asynclp import AsyncRelaxationLP
from .decide import Brancher
from .propagator import ReluPropagator
from .theory import ReluTheory

def luby(i: int) -> int:
    """The Luby sequence 1 1 2 1 1 2 4 1 1 2 ... (``i`` from 1)."""
    k = 1
    while (1 << k) - 1 < i:
        k += 1
    while True:
        if i == (1 << k) - 1:
            return 1 << (k - 1)
        i -= (1 << (k - 1)) - 1
        k = 1
        while (1 << k) - 1 < i:
            k += 1


def _unit_lits(theory, lbd):
    """Literals of the neurons stable under ``lbd`` that are not fixed yet (valid root units)."""
    free = theory.fixed == 0
    act = np.flatnonzero(free & (lbd.lb >= 0.0))
    ina = np.flatnonzero(free & (lbd.ub <= 0.0) & (lbd.lb < 0.0))
    return [int(j + 1) for j in act] + [-int(j + 1) for j in ina]


_REF_CACHE: dict = {}  # (id(spec), case, disjuncts, seed) -> PGD reference point, per process


def search_case(network, spec, case_index, open_disjuncts, *, packed, deadline, seed, stats, root,
                cube=None, variant=0, poll=None, settings: CdclSettings | None = None, live=None):
    """Hidden-phase CDCL on one case (see module docstring).

    Parameters
    ----------
    network : Network
    spec : Spec
    case_index : int
    open_disjuncts : list of int -- disjuncts not refuted at the root
    packed : PackedNet
    deadline : float -- ``time.monotonic()`` limit
    seed : int
    stats : dict -- gets ``nodes``, ``conflicts``, ``learned``, ``implied``, ``restarts``,
        ``lp_calls``, ``time_bounds_s``, ``time_lp_s``, ``time_sat_s``; ``lp_async_jobs`` and
        ``time_lp_async_s`` count the relaxation LPs run on the background thread (``asynclp``:
        with a lent core), whose time is not on the search's path
    root : LayerBounds or None -- CROWN root bounds of the case
    cube : sequence of int, optional -- phase literals (``+(j+1)`` active, ``-(j+1)`` inactive
        for flat neuron ``j``) fixed for this call: only the part of the case with these phases is
        searched (parallel cubes, :mod:`dpllnn.search.portfolio`), so ``unsat`` then covers the
        cube only
    variant : int -- portfolio member: the restart schedule of branching heuristics starts at
        ``schedule[variant % len(schedule)]`` (0: the default order)
    poll : callable, optional -- parallel search: ``poll()`` returns a list of lemma clauses
        (phase literals as for ``cube``; each must hold on the whole case, e.g. the negation of
        a cube another worker proved unsat) or None when the case is settled elsewhere (the
        search then stops with ``unknown``); see ``ReluTheory.poll``.  Lemmas are added at level
        0 when the solver's current call returns (with ``TheorySettings.lemma_interrupt``, the
        solver is stopped for them at once and resumes under a fresh guard assumption)
    settings : CdclSettings, optional -- restarts, schedule, LP gate, brancher and theory
        settings (default: the defaults)
    live : dpllnn.search.progress.LiveCounters, optional -- the search's running counts (nodes,
        theory conflicts, learned clauses, root lower bound) are registered there while it runs

    Returns
    -------
    (Verdict, Counterexample or None)

    Raises
    ------
    RuntimeError -- the background relaxation-LP thread failed (never turned into a verdict)
    """
    from pysat.formula import IDPool
    from pysat.solvers import Solver

    t_start = time.monotonic()
    cfg = settings or CdclSettings()
    case = spec.cases[case_index]
    opened = [i for i in open_disjuncts]
    if not opened:
        return Verdict.UNSAT, None
    if any(case.disjuncts[i].C.shape[0] == 0 for i in opened):
        return Verdict.UNKNOWN, None     # an empty conjunction is falsification's business
    pool = IDPool()
    for k, n_k in enumerate(packed.hidden_sizes):
        for j in range(n_k):
            pool.id(("relu", k, j))
    assert pool.top == packed.n_relus
    sel_vars = [pool.id(("sel", i)) for i in opened]
    guard = pool.id(("guard",))
    theory = ReluTheory(network, spec, case_index, opened, packed, sel_vars, deadline,
                        root=root, stats=stats, lp_unstable=cfg.lp_unstable, settings=cfg.theory)
    theory.poll = poll
    n_lemmas = 0
    _add_stats(stats, "cdcl_calls", 1)
    cube = [int(c) for c in (cube or [])]
    if cube and not theory.root_infeasible:
        # fix the cube's phases at the root (CROWN under them; an infeasible cube is refuted)
        for lit in cube:
            theory.fixed[abs(lit) - 1] = theory.phase[abs(lit) - 1] = 1 if lit > 0 else -1
        theory.reset_root(None)
    if not theory.root_infeasible:
        theory.fit_alpha()
    is_graph = getattr(network, "is_graph", False)
    if not theory.root_infeasible and (not is_graph or
                                       graph_lp_columns(network) <= cfg.graph_lp_max_columns):
        # cells and relaxations on one incremental layered LP per case.  A graph's LP has a
        # column per tensor element, so large graphs go without: their complete assignments are
        # blocked without proof and their searches prove unsat by bounds alone
        r = theory.snaps[0].lbd
        if is_graph:
            theory.llp = GraphLP(network, theory.C, theory.d, theory.lb, theory.ub, r)
        else:
            theory.llp = LayeredLP(network, theory.C, theory.d, theory.lb, theory.ub, r.lb, r.ub)
        if cfg.async_lp:
            theory.async_lp = AsyncRelaxationLP(theory.llp, theory.llp_lock)

    running = [True]

    def counters():  # read by the progress thread; empty once finish() moves them to stats
        if not running[0]:
            return {}
        return {"nodes": theory.n_nodes, "conflicts": theory.n_theory_conflicts,
                "learned": theory.n_theory_conflicts + theory.n_blocked,
                "lower_bound": _root_lower_bound(theory)}

    progress = contextlib.ExitStack()
    if live is not None:
        progress.enter_context(live.source(counters))

    def finish(verdict, cex=None):
        running[0] = False
        st = solver.accum_stats() if solver is not None else {}
        _add_stats(stats, "nodes", theory.n_nodes)
        _add_stats(stats, "conflicts", int(st.get("conflicts", 0)))
        _add_stats(stats, "decisions", int(st.get("decisions", 0)))
        _add_stats(stats, "learned", theory.n_theory_conflicts + theory.n_blocked)
        _add_stats(stats, "theory_conflicts", theory.n_theory_conflicts)
        _add_stats(stats, "implied", theory.n_implied)
        _add_stats(stats, "restarts", restarts)
        _add_stats(stats, "lp_calls", theory.n_lp + n_tighten_lp)
        _add_stats(stats, "lp_refuted", theory.n_lp_refuted)
        _add_stats(stats, "time_bounds_s", theory.t_bounds)
        _add_stats(stats, "time_lp_s", theory.t_lp)
        _add_stats(stats, "time_lp_async_s", theory.t_lp_async)
        _add_stats(stats, "lp_async_jobs", theory.n_lp_jobs)
        _add_stats(stats, "time_restart_s", t_tighten)
        _add_stats(stats, "time_rebound_s", theory.t_rebound)
        _add_stats(stats, "time_beta_s", theory.t_beta)
        _add_stats(stats, "beta_refuted", theory.n_beta_refuted)
        _add_stats(stats, "lemmas_imported", n_lemmas)
        _add_stats(stats, "time_stabilise_s", theory.t_stabilise)
        _add_stats(stats, "refutation_clauses", theory.n_refutation_clauses)
        _add_stats(stats, "clause_lits_full", theory.clause_lits_full)
        _add_stats(stats, "clause_lits", theory.clause_lits)
        _add_stats(stats, "clauses_shortened", theory.n_shortened)
        _add_stats(stats, "clause_rechecks", theory.n_recheck)
        if cfg.theory.record_clauses and stats is not None:
            stats.setdefault("clauses", []).extend(
                [list(map(int, c)) for c in theory.clause_log])
            stats["sel_vars"] = dict(zip(map(int, sel_vars), map(int, opened)))
        total = time.monotonic() - t_start
        _add_stats(stats, "time_sat_s", max(0.0, total - theory.t_bounds - theory.t_lp - t_tighten))
        if solver is not None:
            solver.delete()
        return verdict, cex

    solver = None
    restarts, n_tighten_lp, t_tighten = 0, 0, 0.0
    try:
        if theory.root_infeasible:
            return finish(Verdict.UNSAT)
        if time.monotonic() >= deadline:
            return finish(Verdict.TIMEOUT)

        solver = Solver(name="cadical195")
        solver.add_clause(sel_vars)
        for lit in cube:
            solver.add_clause([lit])
        for lit in _unit_lits(theory, theory.snaps[0].lbd):
            solver.add_clause([lit])
        for i, r in enumerate(theory.snaps[0].refuted.tolist()):
            if r:
                solver.add_clause([-sel_vars[i]])
        # a reference point for decision polarities: PGD towards the open disjuncts
        key = (id(spec), case_index, tuple(opened), seed)
        if key not in _REF_CACHE:  # cubes of one case share it
            _REF_CACHE.clear()
            _REF_CACHE[key] = _reference_point(network, case, [case.disjuncts[i] for i in opened],
                                               seed, deadline)
        theory.x_ref = _REF_CACHE[key]
        brancher = Brancher(theory, "babsr", fsb_top=cfg.fsb_top)
        prop = ReluPropagator(theory, brancher, guard)
        solver.connect_propagator(prop)
        for v in range(1, pool.top + 1):
            solver.observe(v)

        i = 0
        while True:
            if time.monotonic() >= deadline:
                return finish(Verdict.TIMEOUT)
            i += 1
            kind, bias = cfg.schedule[(i - 1 + int(variant)) % len(cfg.schedule)]
            brancher.kind, brancher.layer_bias = kind, bias
            solver.conf_budget(luby(i) * cfg.restart_base)
            res = solver.solve_limited(assumptions=[guard])
            if theory.lp_error is not None:   # the background LP failed: no verdict from here
                raise RuntimeError(theory.lp_error)
            if theory.cex is not None:
                return finish(Verdict.SAT, theory.cex)
            if theory.timed_out or time.monotonic() >= deadline:
                return finish(Verdict.TIMEOUT)
            if theory.lemmas_in:            # lemmas from other workers: level 0, permanent
                for c in theory.lemmas_in:
                    solver.add_clause([int(l) for l in c])
                n_lemmas += len(theory.lemmas_in)
                theory.lemmas_in = []
            if theory.lemma_stop and not theory.cancelled:
                theory.stop = theory.lemma_stop = False
                if res is False and prop.stop_sent:
                    # stopped only to take the lemmas in: resume under a fresh guard (the old one
                    # is now false for good), without a restart's re-bounding
                    prop.stop_sent = False
                    guard = prop.guard = pool.id(("guard", i))
                    continue
            if res is False:
                if prop.stop_sent:          # stopped for a reason other than time: give up
                    return finish(Verdict.UNKNOWN)
                return finish(Verdict.UNKNOWN if theory.incomplete else Verdict.UNSAT)
            if res is True:                 # a model the theory accepted: never happens by design
                return finish(Verdict.UNKNOWN)
            # budget exhausted: restart with tightened root bounds
            restarts += 1
            t = time.monotonic()
            units, nlp = _restart_tighten(theory, opened, deadline, restarts, cfg)
            if (cfg.stabilise and not is_graph and not theory.root_infeasible
                    and theory.t_stabilise <= cfg.stabilise_share * (time.monotonic() - t_start)):
                units += _stabilise_root(theory, deadline, cfg, stats)
            n_tighten_lp += nlp
            t_tighten += time.monotonic() - t
            if theory.root_infeasible:
                return finish(Verdict.UNKNOWN if theory.incomplete else Verdict.UNSAT)
            for lit in units:
                solver.add_clause([lit])
            for j, r in enumerate(theory.snaps[0].refuted.tolist()):
                if r:
                    solver.add_clause([-sel_vars[j]])
    finally:  # also on an exception: no LP thread outlives the search
        progress.close()
        if theory.async_lp is not None:
            theory.async_lp.close()


def _root_lower_bound(theory) -> float:
    """The lowest lower bound, over the disjuncts not refuted at the root snapshot, of the
    disjunct's best row (``> 0`` for all would prove the case); NaN without a root."""
    s = theory.snaps[0] if theory.snaps else None
    if s is None or theory.root_infeasible:
        return math.nan
    r = theory.rows
    vals = [float(np.max(s.obj_lower[r[i]:r[i + 1]])) for i in range(len(theory.disj))
            if not s.refuted[i] and r[i + 1] > r[i]]
    return min(vals) if vals else math.nan


def _stabilise_root(theory, deadline, cfg, stats):
    """MILP stabilisation of the root's near-stable neurons (:mod:`dpllnn.search.stabilise`):
    the proved phases become root-fixed (the caller adds them as units) and the root is
    re-bounded under them."""
    from .stabilise import stabilise

    t = time.monotonic()
    try:
        lits = stabilise(theory.network, theory.lb, theory.ub, theory.snaps[0].lbd, theory.fixed,
                         theory.layer_off, max_neurons=cfg.stabilise_neurons,
                         milp_s=cfg.stabilise_milp_s,
                         deadline=min(deadline, t + cfg.stabilise_call_s), stats=stats)
        if not lits:
            return []
        for lit in lits:
            j = abs(lit) - 1
            theory.fixed[j] = theory.phase[j] = 1 if lit > 0 else -1
        old = theory.snaps[0].lbd   # valid on a superset of the new root: intersect with it
        lbd = compute_bounds(theory.packed, theory.lb, theory.ub, theory.fixed.copy(), "crown",
                             outer=old)
        if lbd.infeasible:
            theory.root_infeasible = True
            return lits
        theory.reset_root(lbd, own_objective=True)
        return lits + _unit_lits(theory, lbd)
    finally:
        theory.t_stabilise += time.monotonic() - t


def _restart_tighten(theory, opened, deadline, restarts, cfg):
    """Between chunks: re-bound the root under the fixed literals (alpha-CROWN every 4th; on
    graphs its hidden-layer steps within ``cfg.graph_intermediate_share`` of the time left)."""
    packed = theory.packed
    units = []
    nlp = 0
    if time.monotonic() >= deadline:
        return units, nlp
    fixed = theory.fixed.copy()
    old = theory.snaps[0].lbd if theory.snaps else None
    lbd = compute_bounds(packed, theory.lb, theory.ub, fixed, "crown", outer=old)
    if lbd.infeasible:
        theory.root_infeasible = True
        return units, nlp
    if restarts % 4 == 1:
        # intermediate layers too (as at the root): the new root snapshot bounds every node
        # no deadline= (DeadlineReached): in a worker it would read as an error, not a timeout
        iters, inter_deadline = cfg.hidden_alpha(getattr(packed, "is_graph", False), deadline)
        al = alpha_crown(packed, theory.lb, theory.ub, fixed, theory.C, theory.d, iters=30, base=lbd,
                         intermediate=iters > 0, intermediate_iters=max(iters, 1),
                         intermediate_deadline=inter_deadline)
        if al.infeasible:
            theory.root_infeasible = True
            return units, nlp
        lbd = al
    theory.reset_root(lbd, own_objective=True)
    units += _unit_lits(theory, lbd)
    return units, nlp


def _reference_point(network, case, disjuncts, seed, deadline):
    from ..attack import falsify_box

    best, bm = None, np.inf
    for k, dj in enumerate(disjuncts[:4]):
        if time.monotonic() >= deadline:
            break
        x, m = falsify_box(network, case.lb, case.ub, dj.C, dj.d, seed=seed + k, steps=20,
                           restarts=4, deadline=min(deadline, time.monotonic() + 0.5))
        if m < bm:
            best, bm = x, m
    return best


def _add_stats(stats, key, v):
    if stats is not None:
        stats[key] = stats.get(key, 0) + v
