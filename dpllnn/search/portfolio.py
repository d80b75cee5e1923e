"""Parallel search on all cores: worker processes, cubes and a portfolio.

PySAT holds the GIL during ``solve`` and the propagator callbacks are Python, so threads do not
help (DESIGN.md §3): workers are processes.  Two ways of spreading the work:

- **work sharing** (input splitting): each case starts as one task; a worker that finds the task
  queue empty raises a shared *hungry* counter, and a busy worker's
  :func:`dpllnn.search.inputsplit.search_case` then hands over half of its open boxes (with
  their bounds) as a new task (``_Share``).  Every task answers only for its own boxes, so the
  case is ``unsat`` when every task is.  (This replaced static cubes -- the box bisected into
  4 sub-boxes per worker up front -- which balanced badly: on ACAS Xu one cube often held all
  the hard boxes.)
- **portfolio** (CDCL, the default, ``CDCL_PARALLEL``): every worker searches the whole case
  from the same root bounds, with its own seed and its own start in the restart schedule of
  branching heuristics (``variant``); the first proof or counterexample wins.
- **phase cubes** (CDCL, ``CDCL_PARALLEL = "cubes"``): each case is split on the phases of its
  ``k`` unstable neurons with the largest BaBSR scores at the root (``2**k`` cubes,
  ``k = log2(CUBES_PER_WORKER * workers)``); workers pull cubes from the queue and run
  :func:`dpllnn.search.cdcl.search_case` with the cube's phases fixed; the case is ``unsat``
  when every cube is.  Cubes had replaced a seed portfolio in session 2 (0.98x on mnist_fc with
  plain CROWN roots); with the alpha-CROWN root bounds of session 4 the portfolio is faster
  (figures at ``CDCL_PARALLEL``).
  Learned clauses are not shared between workers.  The up-front falsification is split too:
  half in the parent, half as the first task of the pool (another seed) beside the first cubes.

Workers are forked when the platform allows it (the network and the numba code are inherited, no
re-import), else spawned.  The parent stops every worker as soon as the answer is known, on the
deadline, on an error and on Ctrl-C/SIGTERM (``finally`` terminates and joins them), so no child
outlives the call.  A worker's exception is reported back and turns the verdict into ``unknown``
(with the error in the reason), never into ``unsat``.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import time
import traceback

import numpy as np

from ..result import Verdict
from ..spec import Case, Spec

#: CDCL phase cubes per worker (rounded up to a power of two in total)
CUBES_PER_WORKER = 4
#: how parallel CDCL spreads a case: "portfolio" (every worker on the whole case, each with its
#: own seed and start of the heuristic schedule; the first proof wins) or "cubes" (phase cubes
#: from a queue).  Measured with the root alpha-CROWN bounds of the search (session 4, mnist_fc,
#: 2 workers, one instance at a time): 256x2 prop_10_0.05 / 256x4 prop_8_0.03 / 256x6
#: prop_7_0.03 / 256x4 prop_3_0.05 / 256x2 prop_6_0.03 take 18.9 / 20.2 / 6.2 / 3.7 / 4.0 s
#: with the portfolio, 9.3 / 63.8 / 11.9 / 5.8 / 4.6 s with cubes, 18.7 / 29.1 / 12.4 / 5.0 /
#: 5.2 s with one worker: each cube re-learns what the others learn (prop_8_0.03: 1,284 nodes
#: in 8 cubes against 447 in one search).
CDCL_PARALLEL = "portfolio"


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


def _context():
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


class _Share:
    """Work sharing for one input-splitting task (see the module docstring).

    ``wants()`` atomically takes one unit of the hungry counter; ``give(part)`` then posts the
    boxes as a new task, announcing it on the results queue first (``("spawn", tid)``: this
    worker's messages reach the parent in order, so a task's spawns are known before its own
    result)."""

    def __init__(self, hungry, next_tid, tasks, results, task):
        self.hungry, self.next_tid = hungry, next_tid
        self.tasks, self.results, self.task = tasks, results, task

    def wants(self) -> bool:
        if self.hungry.value <= 0:  # unlocked peek: cheap, checked every iteration
            return False
        with self.hungry.get_lock():
            if self.hungry.value <= 0:
                return False
            self.hungry.value -= 1
            return True

    def give(self, part) -> None:
        with self.next_tid.get_lock():
            tid = self.next_tid.value
            self.next_tid.value += 1
        _, ci, open_idx, lb, ub, tseed, _ = self.task
        self.results.put(("spawn", tid))
        self.tasks.put((tid, ci, open_idx, lb, ub, tseed, part))


#: task id of a falsification task (parallel CDCL: the second half of the up-front attack)
_FALSIFY = -1


def _worker(wid, network, spec, chosen, tasks, results, deadline, seed, hungry=None,
            next_tid=None, roots=None):
    """Pull (task_id, case_index, open_idx, lb, ub, seed, start_pool) tasks -- for CDCL ``lb``
    holds the cube's literals and ``start_pool`` the portfolio variant; push
    ("done", task_id, verdict, x, stats, err) and ("spawn", task_id) messages.  ``roots``: case
    index -> root LayerBounds of the whole case (CDCL: the search's first snapshot, which a
    cube's own root bounds are intersected with)."""
    import signal

    from ..bounds import pack
    from .verify import search_case_dispatch

    # A forked worker inherits the CLI's handlers, which raise in the main thread; here the parent
    # owns shutdown: SIGTERM (from terminate()) ends the worker at once, Ctrl-C is the parent's.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    packed = pack(network)
    idle = False
    while True:
        try:
            task = tasks.get(timeout=0.05)
        except queue_mod.Empty:
            if time.monotonic() >= deadline:
                return
            if hungry is not None and not idle:
                idle = True
                with hungry.get_lock():
                    hungry.value += 1
            continue
        if task is None:
            return
        if task[0] == _FALSIFY:  # (_FALSIFY, budget_s, starts, seed): attack, report, go on
            from ..attack import falsify
            try:
                cex = falsify(network, spec, time_limit_s=task[1], seed=task[3],
                              deadline=deadline, starts=task[2])
                results.put(("falsified", None if cex is None else np.asarray(cex.x), None))
            except Exception as e:  # reported: the parent then never answers unsat
                results.put(("falsified", None, f"worker {wid} (falsification): "
                             f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"))
            continue
        if idle:
            idle = False
            with hungry.get_lock():  # fed before anyone answered the request: withdraw it
                if hungry.value > 0:
                    hungry.value -= 1
        tid, ci, open_idx, lb, ub, tseed, start_pool = task
        cube = None
        if chosen == "cdcl":  # lb holds the cube's phase literals
            cube, lb, ub = lb, None, None
        stats: dict = {}
        extra = {}
        if chosen == "inputsplit" and hungry is not None:
            extra = {"share": _Share(hungry, next_tid, tasks, results, task),
                     "start_pool": start_pool}
        elif cube is not None:
            extra = {"cube": cube, "variant": int(start_pool or 0)}
        try:
            case = spec.cases[ci]
            if lb is not None:
                sub = Spec([Case(lb, ub, case.disjuncts)], spec.n_inputs, spec.n_outputs,
                           spec.source)
                sub_ci = 0
            else:
                sub, sub_ci = spec, ci
            root = (roots or {}).get(ci) if chosen == "cdcl" else None
            v, cex = search_case_dispatch(chosen, network, sub, sub_ci, open_idx, packed=packed,
                                          deadline=deadline, seed=tseed, stats=stats, root=root,
                                          **extra)
            x = None if cex is None else np.asarray(cex.x)
            results.put(("done", tid, v.value, x, stats, None))
        except Exception as e:  # reported to the parent, which answers unknown
            results.put(("done", tid, Verdict.UNKNOWN.value, None, stats,
                         f"worker {wid}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"))


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
                    stats, done, falsify_task=None, roots=None):
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
    falsify_task : (budget_s, starts) or None -- queue a falsification task first (seed + 1;
        ``starts`` as for :func:`dpllnn.attack.falsify`); a counterexample it finds is
        re-validated here like a search's
    """
    from ..validate import check_counterexample

    ctx = _context()
    tasks, results = ctx.Queue(), ctx.Queue()
    # task list
    plan = []
    if chosen == "inputsplit":
        for ci in todo:  # one task per case; work sharing splits it further
            plan.append((ci, open_per_case[ci], None, None, seed))
    else:
        from ..bounds import pack
        packed = pack(network)
        for ci in todo:
            if CDCL_PARALLEL == "portfolio":
                for w in range(workers):     # every member searches the whole case
                    plan.append((ci, open_per_case[ci], [], None, seed + w, w, ci))
                continue
            for cube in phase_cubes(packed, spec.cases[ci], open_per_case[ci],
                                    CUBES_PER_WORKER * workers):
                plan.append((ci, open_per_case[ci], cube, None, seed, None, None))
        stats["cubes" if CDCL_PARALLEL == "cubes" else "portfolio"] = len(plan)
    # every task (a whole case, a shared part of one, or a phase cube) must be unsat
    # (portfolio members of one case form one group: one unsat member proves the case)
    if chosen == "inputsplit":
        plan = [p + (None, None) for p in plan]
    group = {tid: (tid if plan[tid][6] is None else -1 - plan[tid][6]) for tid in range(len(plan))}
    groups = set(group.values())
    if falsify_task is not None:
        tasks.put((_FALSIFY, float(falsify_task[0]), falsify_task[1], seed + 1))
    for tid, (ci, oi, lb, ub, s, var, _) in enumerate(plan):
        tasks.put((tid, ci, oi, lb, ub, s, var))
    sharing = chosen == "inputsplit"
    hungry = ctx.Value("i", 0) if sharing else None
    next_tid = ctx.Value("i", len(plan)) if sharing else None
    if not sharing:  # CDCL cubes: a fixed task list, then stop
        for _ in range(workers):
            tasks.put(None)
    stats["workers"] = workers
    procs = [ctx.Process(target=_worker, args=(w, network, spec, chosen, tasks, results,
                                               deadline, seed, hungry, next_tid, roots),
                         daemon=True)
             for w in range(workers)]
    verdicts: dict = {}  # group -> Verdict (definitive or the best non-definitive)
    errors = []
    known, finished = set(range(len(plan))), set()
    try:
        for p in procs:
            p.start()
        while not known <= finished:
            try:
                msg = results.get(timeout=0.1)
            except queue_mod.Empty:
                if time.monotonic() >= deadline + 0.5 or not any(p.is_alive() for p in procs):
                    break
                continue
            if msg[0] == "falsified":
                _, x, err = msg
                if err:
                    errors.append(err)
                if x is not None:
                    cex = check_counterexample(network, spec, x)
                    if cex is not None:
                        return done(Verdict.SAT, cex, "falsification (sampling/PGD, in a worker)")
                    errors.append("a worker's counterexample failed re-validation")
                continue
            if msg[0] == "spawn":
                known.add(msg[1])
                group[msg[1]] = msg[1]
                groups.add(msg[1])
                stats["tasks_shared"] = stats.get("tasks_shared", 0) + 1
                continue
            _, tid, v, x, wstats, err = msg
            finished.add(tid)
            group.setdefault(tid, tid)
            groups.add(group[tid])
            _merge(stats, wstats)
            v = Verdict(v)
            if err:
                errors.append(err)
            if v is Verdict.SAT:
                cex = check_counterexample(network, spec, x)
                if cex is not None:
                    return done(Verdict.SAT, cex, f"{chosen} search ({workers} workers)")
                errors.append("a worker's counterexample failed re-validation")
                v = Verdict.UNKNOWN
            g = group[tid]
            if verdicts.get(g) is Verdict.UNSAT:
                continue
            if v is Verdict.UNSAT or g not in verdicts:
                verdicts[g] = v
            elif verdicts[g] is not Verdict.UNSAT and v is Verdict.TIMEOUT:
                verdicts[g] = v
            if len(verdicts) == len(groups) and all(u is Verdict.UNSAT for u in verdicts.values()):
                break
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=2)
            if p.is_alive():
                p.kill()
                p.join(timeout=1)
        tasks.cancel_join_thread()
        results.cancel_join_thread()
    missing = Verdict.TIMEOUT if time.monotonic() >= deadline else Verdict.UNKNOWN
    all_v = [verdicts.get(g, missing) for g in groups]
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
