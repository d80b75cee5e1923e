"""Parallel search on all cores: worker processes, cubes and a portfolio.

PySAT holds the GIL during ``solve`` and the propagator callbacks are Python, so threads do not
help (DESIGN.md §3): workers are processes.  The ways of spreading the work:

- **work sharing** (input splitting): each case starts as one task; a worker that finds the task
  queue empty raises a shared *hungry* counter, and a busy worker's
  :func:`dpllnn.search.inputsplit.search_case` then hands over half of its open boxes (with
  their bounds) as a new task (:class:`~dpllnn.search.workers.Share`).  Every task answers
  only for its own boxes, so the case is ``unsat`` when every task is.  (This replaced static
  cubes -- the box bisected into 4 sub-boxes per worker up front -- which balanced badly: on
  ACAS Xu one cube often held all the hard boxes.)
- **hybrid** (CDCL, the default ``ParallelSettings.scheme``), in two phases.  First
  (``hybrid_cube_s`` seconds) one worker searches the whole case (starting at ``hybrid_variant``
  in the heuristic schedule) while the others work through phase cubes (below); every cube
  proved unsat is sent to the whole-case workers as a lemma -- the clause of its negated
  phases, valid for the whole case -- which they add at level 0 at their next restart
  (``ReluTheory.poll``).  Then the *focus* member searches the whole case at variant 0, with
  the lemmas, on every core: the workers left idle lend it their cores (``workers.Lender``:
  each backward pass split over threads).  The case is unsat when a whole-case search is, or
  when every cube is.
- **portfolio** (CDCL): every worker searches the whole case from the same root bounds, with
  its own seed and its own start in the restart schedule of branching heuristics
  (``variant``); the first proof or counterexample wins.
- **phase cubes** (CDCL, ``"cubes"``): each case is split on the phases of its
  ``k`` unstable neurons with the largest BaBSR scores at the root (``2**k`` cubes,
  ``k = log2(cubes_per_worker * workers)``); workers pull cubes from the queue and run
  :func:`dpllnn.search.cdcl.search_case` with the cube's phases fixed; the case is ``unsat``
  when every cube is.  Cubes had replaced a seed portfolio (0.98x on mnist_fc with plain CROWN
  roots); with alpha-CROWN root bounds the portfolio was faster, and the hybrid combines the two
  (figures at :class:`dpllnn.settings.ParallelSettings`).
  A settled case is closed for every worker (``closed``): its queued tasks are skipped and its
  running searches stop at their next poll.
  Only the cube lemmas are shared: the theory's own conflict clauses hold every assigned phase
  of the earlier layers and are long.  The up-front falsification is split too: half in the
  parent (part of it in a forked process beside the root bounds, ``verify._AttackBeside``), half
  as the first task of the pool (another seed) beside the first searches.

The worker side (tasks, messages, the worker loop, work sharing, core lending) is
:mod:`dpllnn.search.workers`.  Workers are forked when the platform allows it (the network and
the numba code are inherited, no re-import), else spawned.  The parent stops every worker as
soon as the answer is known, on the deadline, on an error and on Ctrl-C/SIGTERM (``finally``
terminates and joins them), so no child outlives the call.  A worker's exception is reported
back and turns the verdict into ``unknown`` (with the error in the reason), never into
``unsat``.
"""
from __future__ import annotations

import contextlib
import os
import queue as queue_mod
import time

import numpy as np

from ..result import Verdict
from ..settings import DEFAULT, PARALLEL_SCHEMES
from .workers import (CaseTask, Done, FalsifyTask, Falsified, Skipped, Spawned, WorkerPool,
                      context, stop_processes, worker_loop)

#: the parallel CDCL schemes (``--parallel``)
SCHEMES = PARALLEL_SCHEMES


def phase_cubes(packed, case, open_idx, n):
    """Split ``case`` on the phases of the ``k = ceil(log2 n)`` unstable root neurons with the
    largest BaBSR scores (for the worst open disjunct's worst row); returns a list of ``2**k``
    literal lists (fewer neurons when fewer are unstable; ``[[]]`` when none is)."""
    from ..bounds import compute_bounds
    from ..bounds.scores import babsr_scores
    lbd = compute_bounds(packed, case.lb, case.ub, None, "crown")
    if lbd.infeasible or n <= 1:
        return [[]]
    C, d = case.stack(open_idx)[:2]
    from ..bounds import objective_bounds
    lo, _ = objective_bounds(packed, case.lb, case.ub, lbd, C, d)
    r = int(np.argmin(lo))
    sc = np.where(lbd.unstable, babsr_scores(packed, lbd, C[r], float(d[r])), -np.inf)
    k = min(int(np.ceil(np.log2(n))), int(lbd.unstable.sum()))
    top = [int(j) for j in np.argsort(-sc, kind="stable")[:k]]
    cubes = [[]]
    for j in top:
        cubes = [c + [s * (j + 1)] for c in cubes for s in (1, -1)]
    return cubes


def _merge(stats, part):
    for k, v in part.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if k.endswith("_max") or k.startswith("max_"):
            stats[k] = max(stats.get(k, v), v)
        elif k in stats and isinstance(stats[k], (int, float)):
            stats[k] += v
        else:
            stats[k] = v


def search_parallel(network, spec, todo, open_per_case, *, chosen, deadline, seed, workers,
                    stats, done, falsify_task=None, roots=None, parallel=None, settings=None,
                    live=None):
    """Search the open cases with ``workers`` processes; returns ``done(verdict, cex, reason)``.

    Parameters
    ----------
    network, spec : as for :func:`dpllnn.search.verify.verify`
    todo : list of int -- case indices still open after the root bounds
    open_per_case : dict case -> list of open disjunct indices
    chosen : {"inputsplit", "cdcl"}
    deadline : float -- ``time.monotonic()`` limit
    workers : int >= 2
    stats : dict -- updated with the summed worker counters and ``workers``
    done : callable(verdict, cex=None, reason="") -> Result
    roots : dict case -> LayerBounds or None -- the root bounds of each case over its open
        disjuncts (CDCL: alpha-CROWN with optimised intermediate layers); handed to the workers
        (inherited when forked, pickled when spawned)
    parallel : {"hybrid", "portfolio", "cubes"} or None -- how CDCL workers share a case (None:
        ``settings.parallel.scheme``)
    settings : SearchSettings or None -- the tuning (None: :data:`dpllnn.settings.DEFAULT`): its
        ``parallel`` part here, the rest handed to every worker's searches
    falsify_task : (budget_s, starts) or None -- queue a falsification task first (seed + 1;
        ``starts`` as for :func:`dpllnn.attack.falsify`); a counterexample it finds is
        re-validated here like a search's
    live : dpllnn.search.progress.LiveCounters or None -- when given, the workers' running
        counters (one shared row each) and the number of proved phase cubes are registered there
    """
    from ..validate import check_counterexample

    ctx = context()
    tasks, results = ctx.Queue(), ctx.Queue()
    # the plan: one CaseTask per task id (its index).  Task ``t`` belongs to alternative ``alt``
    # of ``key`` (owner[t] = (key, alt)): ``key`` is settled when every task of one of its
    # alternatives is unsat, and the search when every key is.
    settings = settings or DEFAULT
    par = settings.parallel
    how = parallel or par.scheme
    if how not in SCHEMES:
        raise ValueError(f"unknown parallel CDCL scheme {how!r}")
    plan: list[CaseTask] = []
    owner: dict = {}                         # task id -> (key, alt)

    def add(key, alt, **fields):
        owner[len(plan)] = (key, alt)
        plan.append(CaseTask(tid=len(plan), **fields))

    n_cases = len(spec.cases)
    if chosen == "inputsplit":
        for ci in todo:  # one task per case; work sharing splits it further; every task (and
            # every part handed over) is its own key: all must be unsat
            add(("task", len(plan)), 0, case=ci, open_idx=open_per_case[ci], seed=seed)
    else:
        from ..bounds import pack
        packed = pack(network, settings.graph_row_chunk_bytes)
        for ci in todo:
            whole = dict(case=ci, open_idx=open_per_case[ci], seed=seed, cube=[])
            if how == "portfolio":
                for w in range(workers):     # every member searches the whole case
                    add(ci, w, **dict(whole, seed=seed + w, variant=w))
                continue
            n_cubes = par.cubes_per_worker * workers
            stop_at = None
            if how == "hybrid":    # a whole-case member that takes the cubes' lemmas, for
                # hybrid_cube_s seconds like the cubes (the first phase)
                stop_at = time.monotonic() + par.hybrid_cube_s
                add(ci, 0, **whole, variant=par.hybrid_variant, stop_at=stop_at, listen=True)
                n_cubes = par.hybrid_cubes_per_worker * (workers - 1)
            for cube in phase_cubes(packed, spec.cases[ci], open_per_case[ci], n_cubes):
                add(ci, 1, **dict(whole, cube=cube), stop_at=stop_at)
            if how == "hybrid":    # the focus member: the whole case at schedule variant 0 (as
                # one worker), taken by the first worker done with the first phase; it gets
                # every proved cube as a lemma and, once the others are idle, their cores
                add(ci, 2, **whole, variant=0, listen=True)
        stats[how] = len(plan)
    alts: dict = {}                          # key -> alt -> set of task ids
    for tid, (key, alt) in owner.items():
        alts.setdefault(key, {}).setdefault(alt, set()).add(tid)
    if falsify_task is not None:
        tasks.put(FalsifyTask(float(falsify_task[0]), falsify_task[1], seed + 1))
    for task in plan:
        tasks.put(task)
    sharing = chosen == "inputsplit"
    pool = WorkerPool(network, spec, chosen, tasks, results, deadline, settings=settings,
                      roots=roots, workers=workers, busy=ctx.Value("i", 0))
    if sharing:
        pool.hungry = ctx.Value("i", 0)
        pool.next_tid = ctx.Value("i", len(plan))
    else:  # CDCL: a fixed task list, then stop
        for _ in range(workers):
            tasks.put(None)
        pool.closed = ctx.Array("b", n_cases, lock=False)
        if any(t.listen for t in plan):
            pool.lemma_qs = {t.tid: ctx.Queue() for t in plan if t.listen}
    closed, lemma_qs = pool.closed, pool.lemma_qs
    stats["workers"] = workers
    procs = [ctx.Process(target=worker_loop, args=(w, pool), daemon=True)
             for w in range(workers)]
    verdict_of: dict = {}  # task id -> Verdict
    unsat: set = set()
    settled: set = set()   # keys with an alternative whose tasks are all unsat
    errors = []
    known, finished = set(range(len(plan))), set()
    # the workers' rows of progress counters (``verify -v``), set before they start
    progress = contextlib.ExitStack()
    if live is not None:
        from .progress import WorkerSlots

        pool.slots = WorkerSlots(ctx, workers)
        cubes = {t.tid for t in plan if t.cube}
        progress.enter_context(live.source(
            lambda: dict(pool.slots.read(), cubes_proved=len(cubes & unsat)) if cubes else
            pool.slots.read()))

    def is_settled(key):
        return any(ts <= unsat for ts in alts[key].values())

    try:
        for p in procs:
            p.start()
        while not known <= finished:
            try:
                msg = results.get(timeout=0.1)
            except queue_mod.Empty:
                if time.monotonic() >= deadline + 0.5:
                    break
                if not any(p.is_alive() for p in procs):
                    if time.monotonic() < deadline:   # died (a crash, a kill) with tasks open
                        codes = sorted({p.exitcode for p in procs if p.exitcode})
                        errors.append(f"worker processes exited with tasks unfinished "
                                      f"(exit codes {codes})")
                    break
                continue
            if isinstance(msg, Falsified):
                if msg.error:
                    errors.append(msg.error)
                if msg.x is not None:
                    cex = check_counterexample(network, spec, msg.x)
                    if cex is not None:
                        return done(Verdict.SAT, cex, "falsification (sampling/PGD, in a worker)")
                    errors.append("a worker's counterexample failed re-validation")
                continue
            if isinstance(msg, Spawned):
                known.add(msg.tid)
                owner[msg.tid] = (("task", msg.tid), 0)
                alts[("task", msg.tid)] = {0: {msg.tid}}
                stats["tasks_shared"] = stats.get("tasks_shared", 0) + 1
                continue
            if isinstance(msg, Skipped):      # its case was settled before it started
                finished.add(msg.tid)
                continue
            assert isinstance(msg, Done), msg
            tid, err = msg.tid, msg.error
            finished.add(tid)
            _merge(stats, msg.stats)
            v = Verdict(msg.verdict)
            if err:
                errors.append(err)
            if v is Verdict.SAT:
                cex = check_counterexample(network, spec, msg.x)
                if cex is not None:
                    return done(Verdict.SAT, cex, f"{chosen} search ({workers} workers)")
                errors.append("a worker's counterexample failed re-validation")
                v = Verdict.UNKNOWN
            verdict_of[tid] = v
            key, alt = owner[tid]
            if v is not Verdict.UNSAT or err:
                continue
            unsat.add(tid)
            if key in settled:
                continue
            if is_settled(key):
                settled.add(key)
                if closed is not None:
                    closed[key] = 1           # stop the case's other searches
                if len(settled) == len(alts):
                    break
            elif lemma_qs is not None and plan[tid].cube:
                # hybrid: a proved cube, negated, is a lemma for the whole-case members
                for t, q in lemma_qs.items():
                    if plan[t].case == key and t not in finished:
                        q.put([-int(l) for l in plan[tid].cube])
                        stats["lemmas_shared"] = stats.get("lemmas_shared", 0) + 1
    finally:
        progress.close()
        stop_processes(procs)
        tasks.cancel_join_thread()
        results.cancel_join_thread()
        for q in (lemma_qs or {}).values():
            q.cancel_join_thread()
    missing = Verdict.TIMEOUT if time.monotonic() >= deadline else Verdict.UNKNOWN
    all_v = [Verdict.UNSAT if key in settled else
             Verdict.combine(verdict_of.get(t, missing) for ts in alts[key].values() for t in ts)
             for key in alts]
    v = Verdict.combine(all_v)
    if errors and v is Verdict.UNSAT:
        v = Verdict.UNKNOWN  # never prove with a failed worker in the picture
    if errors:
        stats["worker_errors"] = errors[:3]
    reason = {Verdict.UNSAT: f"{chosen} search ({workers} workers)",
              Verdict.TIMEOUT: "time limit reached",
              Verdict.UNKNOWN: ("worker error: " + errors[0].splitlines()[0]) if errors else
              "search gave up without a proof or counterexample"}[v]
    return done(v, reason=reason)


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
