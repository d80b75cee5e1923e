"""Parallel search on all cores: worker processes, cubes and a portfolio.

PySAT holds the GIL during ``solve`` and the propagator callbacks are Python, so threads do not
help (DESIGN.md §3): workers are processes.  The ways of spreading the work:

- **work sharing** (input splitting): each case starts as one task; a worker that finds the task
  queue empty raises a shared *hungry* counter, and a busy worker's
  :func:`dpllnn.search.inputsplit.search_case` then hands over half of its open boxes (with
  their bounds) as a new task (``_Share``).  Every task answers only for its own boxes, so the
  case is ``unsat`` when every task is.  (This replaced static cubes -- the box bisected into
  4 sub-boxes per worker up front -- which balanced badly: on ACAS Xu one cube often held all
  the hard boxes.)
- **hybrid** (CDCL, the default ``ParallelSettings.scheme``), in two phases.  First
  (``hybrid_cube_s`` seconds) one worker searches the whole case (starting at ``hybrid_variant``
  in the heuristic schedule) while the others work through phase cubes (below); every cube proved unsat is sent
  to the whole-case workers as a lemma -- the clause of its negated phases, valid for the whole
  case -- which they add at level 0 at their next restart (``ReluTheory.poll``).  Then the
  *focus* member searches the whole case at variant 0, with the lemmas, on every core: the
  workers left idle lend it their cores (``_Lender``: each backward pass split over threads).
  The case is unsat when a whole-case search is, or when every cube is.
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
from ..settings import DEFAULT, PARALLEL_SCHEMES
from ..spec import Case, Spec

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


class _Lender:
    """Lends idle cores to the bound kernels of the running searches.

    Every worker process starts with one thread (``dpllnn/__init__.py``).  ``busy`` counts the
    workers that run a task; a running CDCL search calls :meth:`update` at its polls and takes
    ``workers // busy`` kernel threads (:func:`dpllnn.bounds.threads.set_kernel_threads`: the
    rows of each backward pass split over numba threads), so a single long search left running
    uses every core.  mnist 256x4, one node's CROWN bounds: 15.0 ms on one thread, 9.4 ms on two
    (11.2 ms with two BLAS threads instead); re-bounding with the root's slopes 27.9 -> 15.6 ms.
    The bounds stay sound at any thread count (``dpllnn.bounds.kernels``)."""

    def __init__(self, busy, workers):
        self.busy, self.workers, self.threads = busy, int(workers), 1

    def update(self) -> None:
        want = max(1, self.workers // max(1, self.busy.value))
        if want != self.threads:
            self.set(want)

    def set(self, n: int) -> None:
        from ..bounds.threads import set_kernel_threads
        set_kernel_threads(n)
        self.threads = int(n)


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
        _, ci, open_idx, lb, ub, tseed, _, _ = self.task
        self.results.put(("spawn", tid))
        self.tasks.put((tid, ci, open_idx, lb, ub, tseed, part, False))


#: task id of a falsification task (parallel CDCL: the second half of the up-front attack)
_FALSIFY = -1


def _worker(wid, network, spec, chosen, tasks, results, deadline, seed, hungry=None,
            next_tid=None, roots=None, lemma_qs=None, closed=None, busy=None, workers=1,
            settings=None):
    """Pull (task_id, case_index, open_idx, lb, ub, seed, start_pool, listen) tasks -- for CDCL
    ``lb`` holds the cube's literals and ``start_pool`` the portfolio variant or (hybrid tasks) a
    dict of ``search_case`` settings, with ``"deadline"`` the first phase's time limit; push
    ("done", task_id, verdict, x, stats, err), ("spawn", task_id) and ("skipped", task_id)
    messages.  ``roots``: case index -> root LayerBounds of the whole case (CDCL: the search's
    first snapshot, which a cube's own root bounds are intersected with).  ``closed``: shared
    bytes, ``closed[ci]`` set once case ``ci`` is settled (its queued tasks are skipped, its
    running CDCL searches stop); ``lemma_qs``: task id -> queue of lemma clauses for each task
    with ``listen`` set (hybrid CDCL: the negated cubes proved by other workers).
    ``busy``: shared count of workers running a task, for lending idle cores (``_Lender``).
    ``settings``: the SearchSettings of every search this worker runs (None: the defaults)."""
    import signal

    from ..bounds import pack

    # A forked worker inherits the CLI's handlers, which raise in the main thread; here the parent
    # owns shutdown: SIGTERM (from terminate()) ends the worker at once, Ctrl-C is the parent's.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    packed = pack(network)
    lender = _Lender(busy, workers) if busy is not None else None
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
        if idle and task[0] != _FALSIFY:
            idle = False
            with hungry.get_lock():  # fed before anyone answered the request: withdraw it
                if hungry.value > 0:
                    hungry.value -= 1
        if busy is not None:
            with busy.get_lock():
                busy.value += 1
        try:
            _run_task(wid, network, spec, chosen, task, tasks, results, deadline, packed, hungry,
                      next_tid, roots, lemma_qs, closed, lender, settings)
        finally:
            if busy is not None:
                with busy.get_lock():
                    busy.value -= 1
            if lender is not None and lender.threads != 1:
                lender.set(1)


def _run_task(wid, network, spec, chosen, task, tasks, results, deadline, packed, hungry,
              next_tid, roots, lemma_qs, closed, lender, settings):
    """One task of :func:`_worker` (arguments as there); reports on ``results``."""
    from .dispatch import search_case_dispatch

    if task[0] == _FALSIFY:  # (_FALSIFY, budget_s, starts, seed): attack, report
        results.put(("falsified",) + _falsify_report(network, spec, task[1], task[3], deadline,
                                                     task[2], f"worker {wid} (falsification)"))
        return
    tid, ci, open_idx, lb, ub, tseed, start_pool, listen = task
    if closed is not None and closed[ci]:
        results.put(("skipped", tid))
        return
    cube = None
    if chosen == "cdcl":  # lb holds the cube's phase literals
        cube, lb, ub = lb, None, None
    stats: dict = {}
    extra = {}
    task_deadline = deadline
    if chosen == "inputsplit" and hungry is not None:
        extra = {"share": _Share(hungry, next_tid, tasks, results, task),
                 "start_pool": start_pool}
    elif cube is not None:
        q = (lemma_qs or {}).get(tid) if listen else None
        extra = {"cube": cube, "poll": _poller(ci, closed, q, lender)}
        if isinstance(start_pool, dict):   # hybrid tasks: their settings
            extra.update(start_pool)
            task_deadline = min(deadline, extra.pop("deadline", deadline))
        else:
            extra["variant"] = int(start_pool or 0)
    if time.monotonic() >= task_deadline:    # (a first-phase hybrid task after that phase)
        results.put(("done", tid, Verdict.TIMEOUT.value, None, stats, None))
        return
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
                                      deadline=task_deadline, seed=tseed, stats=stats, root=root,
                                      settings=settings, **extra)
        x = None if cex is None else np.asarray(cex.x)
        results.put(("done", tid, v.value, x, stats, None))
    except Exception as e:  # reported to the parent, which answers unknown
        results.put(("done", tid, Verdict.UNKNOWN.value, None, stats,
                     f"worker {wid}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"))


def _falsify_report(network, spec, budget_s, seed, deadline, starts, who):
    """Run :func:`dpllnn.attack.falsify`; returns ``(x or None, error text or None)`` for the
    parent, which re-validates ``x`` and never answers unsat after an error."""
    from ..attack import falsify
    try:
        cex = falsify(network, spec, time_limit_s=budget_s, seed=seed, deadline=deadline,
                      starts=starts)
        return None if cex is None else np.asarray(cex.x), None
    except Exception as e:  # reported, never a verdict
        return None, f"{who}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


def _attack_process(network, spec, budget_s, seed, deadline, q):
    """Process target: :func:`_falsify_report` for ``budget_s`` seconds, its pair put on ``q``."""
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    q.put(_falsify_report(network, spec, budget_s, seed, deadline, None, "attack process"))


def stop_processes(procs):
    """Terminate and join ``procs`` (kill what ignores SIGTERM): no child outlives the caller.
    Processes never started are skipped: an exception (the memory limit, Ctrl-C) can interrupt
    the loop that starts them."""
    procs = [p for p in procs if p.pid is not None]
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=2)
        if p.is_alive():
            p.kill()
            p.join(timeout=1)


def _poller(ci, closed, q, lender=None):
    """``ReluTheory.poll`` for a CDCL task of case ``ci``: None once the case is closed, else
    the lemma clauses queued for it on ``q`` (none when ``q`` is None); each call first takes the
    kernel threads ``lender`` grants (idle cores)."""
    if closed is None and q is None and lender is None:
        return None

    def poll():
        if lender is not None:
            lender.update()
        if closed is not None and closed[ci]:
            return None
        out = []
        while q is not None:
            try:
                out.append(q.get_nowait())
            except queue_mod.Empty:
                break
        return out
    return poll


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
                    stats, done, falsify_task=None, roots=None, parallel=None, settings=None):
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
    """
    from ..validate import check_counterexample

    ctx = _context()
    tasks, results = ctx.Queue(), ctx.Queue()
    # task list: (case, open disjuncts, lb or cube, ub, seed, variant, key, alt, listen).
    # Task ``t`` belongs to alternative ``alt`` of ``key``: ``key`` is settled when every task of
    # one of its alternatives is unsat, and the search when every key is.
    settings = settings or DEFAULT
    par = settings.parallel
    how = parallel or par.scheme
    if how not in SCHEMES:
        raise ValueError(f"unknown parallel CDCL scheme {how!r}")
    plan = []
    n_cases = len(spec.cases)
    if chosen == "inputsplit":
        for ci in todo:  # one task per case; work sharing splits it further; every task (and
            # every part handed over) is its own key: all must be unsat
            plan.append((ci, open_per_case[ci], None, None, seed, None, ("task", len(plan)), 0,
                         False))
    else:
        from ..bounds import pack
        packed = pack(network)
        for ci in todo:
            if how == "portfolio":
                for w in range(workers):     # every member searches the whole case
                    plan.append((ci, open_per_case[ci], [], None, seed + w, w, ci, w, False))
                continue
            n_cubes = par.cubes_per_worker * workers
            opts = None
            if how == "hybrid":    # a whole-case member that takes the cubes' lemmas, for
                # hybrid_cube_s seconds like the cubes (the first phase)
                opts = {"variant": 0, "deadline": time.monotonic() + par.hybrid_cube_s}
                plan.append((ci, open_per_case[ci], [], None, seed,
                             {"variant": par.hybrid_variant, "deadline": opts["deadline"]},
                             ci, 0, True))
                n_cubes = par.hybrid_cubes_per_worker * (workers - 1)
            for cube in phase_cubes(packed, spec.cases[ci], open_per_case[ci], n_cubes):
                plan.append((ci, open_per_case[ci], cube, None, seed, opts, ci, 1, False))
            if how == "hybrid":    # the focus member: the whole case at schedule variant 0 (as
                # one worker), taken by the first worker done with the first phase; it gets
                # every proved cube as a lemma and, once the others are idle, their cores
                plan.append((ci, open_per_case[ci], [], None, seed, {"variant": 0}, ci, 2, True))
        stats[how] = len(plan)
    alts: dict = {}                          # key -> alt -> set of task ids
    owner = {}                               # task id -> (key, alt)
    for tid, p in enumerate(plan):
        owner[tid] = (p[6], p[7])
        alts.setdefault(p[6], {}).setdefault(p[7], set()).add(tid)
    if falsify_task is not None:
        tasks.put((_FALSIFY, float(falsify_task[0]), falsify_task[1], seed + 1))
    for tid, p in enumerate(plan):
        tasks.put((tid, p[0], p[1], p[2], p[3], p[4], p[5], p[8]))
    sharing = chosen == "inputsplit"
    hungry = ctx.Value("i", 0) if sharing else None
    next_tid = ctx.Value("i", len(plan)) if sharing else None
    closed = lemma_qs = None
    if not sharing:  # CDCL: a fixed task list, then stop
        for _ in range(workers):
            tasks.put(None)
        closed = ctx.Array("b", n_cases, lock=False)
        if any(p[8] for p in plan):
            lemma_qs = {tid: ctx.Queue() for tid, p in enumerate(plan) if p[8]}
    stats["workers"] = workers
    busy = ctx.Value("i", 0)
    procs = [ctx.Process(target=_worker, args=(w, network, spec, chosen, tasks, results,
                                               deadline, seed, hungry, next_tid, roots, lemma_qs,
                                               closed, busy, workers, settings),
                         daemon=True)
             for w in range(workers)]
    verdict_of: dict = {}  # task id -> Verdict
    unsat: set = set()
    settled: set = set()   # keys with an alternative whose tasks are all unsat
    errors = []
    known, finished = set(range(len(plan))), set()

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
                owner[msg[1]] = (("task", msg[1]), 0)
                alts[("task", msg[1])] = {0: {msg[1]}}
                stats["tasks_shared"] = stats.get("tasks_shared", 0) + 1
                continue
            if msg[0] == "skipped":           # its case was settled before it started
                finished.add(msg[1])
                continue
            _, tid, v, x, wstats, err = msg
            finished.add(tid)
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
            elif lemma_qs is not None and plan[tid][2]:
                # hybrid: a proved cube, negated, is a lemma for the whole-case members
                for t, q in lemma_qs.items():
                    if plan[t][0] == key and t not in finished:
                        q.put([-int(l) for l in plan[tid][2]])
                        stats["lemmas_shared"] = stats.get("lemmas_shared", 0) + 1
    finally:
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
