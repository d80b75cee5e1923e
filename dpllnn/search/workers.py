"""The worker side of the parallel search (:mod:`dpllnn.search.portfolio`).

Parent and workers talk through two queues of frozen dataclasses (plain values: the queues
pickle them):

- ``tasks`` (parent -> workers): :class:`CaseTask` (search a case, a phase cube of it, or boxes
  another worker handed over), :class:`FalsifyTask` (the second half of the up-front attack),
  None (stop);
- ``results`` (workers -> parent): :class:`Done` (a task's verdict), :class:`Spawned` (work
  sharing posted a new task), :class:`Skipped` (the task's case was settled before it started),
  :class:`Falsified` (the attack task's answer).

Everything the workers of one search share -- the queues, the shared counters, the root bounds,
the settings -- travels as one :class:`WorkerPool` (inherited when forked, pickled when spawned).
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue as queue_mod
import time
import traceback
from dataclasses import dataclass, replace

import numpy as np

from ..result import Verdict
from ..settings import DEFAULT

__all__ = ["CaseTask", "FalsifyTask", "Done", "Spawned", "Skipped", "Falsified", "WorkerPool",
           "worker_loop", "run_task", "Lender", "Share", "context", "attack_process",
           "stop_processes"]


@dataclass(frozen=True)
class CaseTask:
    """One search task: case ``case`` (its disjuncts ``open_idx``), or a part of it."""

    tid: int                         # task id (the parent's plan index; shared parts get new ones)
    case: int                        # case index in the spec
    open_idx: list                   # the case's disjuncts still open after the root
    seed: int
    cube: list | None = None         # CDCL: phase literals fixed in this task ([]: whole case)
    variant: int = 0                 # CDCL: start in the restart schedule of heuristics
    stop_at: float | None = None     # CDCL, hybrid first phase: time.monotonic() the task ends
    start_pool: dict | None = None   # input splitting: open boxes handed over (a ``give`` part)
    listen: bool = False             # CDCL: takes the lemmas other workers prove (``lemma_qs``)


@dataclass(frozen=True)
class FalsifyTask:
    """Attack the whole spec (:func:`dpllnn.attack.falsify`) for ``budget_s`` seconds."""

    budget_s: float
    starts: dict | None              # as for :func:`dpllnn.attack.falsify`
    seed: int


@dataclass(frozen=True)
class Done:
    """A task's answer: ``verdict`` a :class:`Verdict` value, ``x`` the counterexample's input
    (``sat``; the parent re-validates it), ``error`` the exception text of a failed task."""

    tid: int
    verdict: str
    x: np.ndarray | None
    stats: dict
    error: str | None = None


@dataclass(frozen=True)
class Spawned:
    """Work sharing posted task ``tid``; sent before the donor's own :class:`Done`."""

    tid: int


@dataclass(frozen=True)
class Skipped:
    """Task ``tid`` was not run: its case was settled before it started."""

    tid: int


@dataclass(frozen=True)
class Falsified:
    """The answer of a :class:`FalsifyTask`: a candidate input or None, and the error text."""

    x: np.ndarray | None
    error: str | None


@dataclass
class WorkerPool:
    """What every worker of one parallel search shares.

    ``roots``: case index -> root LayerBounds of the whole case (CDCL: the search's first
    snapshot, which a cube's own root bounds are intersected with).  ``hungry``/``next_tid``
    (input splitting): shared count of idle workers asking for work, and the next free task id
    (:class:`Share`).  ``closed``: shared bytes, ``closed[ci]`` set once case ``ci`` is settled
    (its queued tasks are skipped, its running CDCL searches stop).  ``lemma_qs``: task id ->
    queue of lemma clauses for each task with ``listen`` set (hybrid CDCL: the negated cubes
    proved by other workers).  ``busy``: shared count of workers running a task, for lending
    idle cores (:class:`Lender`).  ``settings``: the SearchSettings of every search (None: the
    defaults).  ``slots``: the shared progress counters, one row per worker (None: no progress
    lines)."""

    network: object
    spec: object
    chosen: str                      # "inputsplit" or "cdcl"
    tasks: object
    results: object
    deadline: float                  # time.monotonic() limit
    settings: object = None
    roots: dict | None = None
    hungry: object = None
    next_tid: object = None
    closed: object = None
    lemma_qs: dict | None = None
    busy: object = None
    workers: int = 1
    slots: object = None             # progress.WorkerSlots (``verify -v``) or None


class Lender:
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


def context():
    """The multiprocessing context: fork where the platform has it (the network and the numba
    code are inherited, no re-import), else spawn."""
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


class Share:
    """Work sharing for one input-splitting task (see the portfolio module's docstring).

    ``wants()`` atomically takes one unit of the hungry counter; ``give(part)`` then posts the
    boxes as a new task, announcing it on the results queue first (:class:`Spawned`: this
    worker's messages reach the parent in order, so a task's spawns are known before its own
    result)."""

    def __init__(self, pool: WorkerPool, task: CaseTask):
        self.hungry, self.next_tid = pool.hungry, pool.next_tid
        self.tasks, self.results, self.task = pool.tasks, pool.results, task

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
        self.results.put(Spawned(tid))
        self.tasks.put(replace(self.task, tid=tid, start_pool=part, listen=False))


def worker_loop(wid: int, pool: WorkerPool) -> None:
    """Process target: pull tasks from ``pool.tasks`` until None or the deadline, run each
    (:func:`run_task`) and report on ``pool.results`` (the module docstring)."""
    import signal

    from ..bounds import pack

    # A forked worker inherits the CLI's handlers, which raise in the main thread; here the parent
    # owns shutdown: SIGTERM (from terminate()) ends the worker at once, Ctrl-C is the parent's.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    packed = pack(pool.network, (pool.settings or DEFAULT).graph_row_chunk_bytes)
    hungry, busy = pool.hungry, pool.busy
    lender = Lender(busy, pool.workers) if busy is not None else None
    idle = False
    while True:
        try:
            task = pool.tasks.get(timeout=0.05)
        except queue_mod.Empty:
            if time.monotonic() >= pool.deadline:
                return
            if hungry is not None and not idle:
                idle = True
                with hungry.get_lock():
                    hungry.value += 1
            continue
        if task is None:
            return
        if idle and not isinstance(task, FalsifyTask):
            idle = False
            with hungry.get_lock():  # fed before anyone answered the request: withdraw it
                if hungry.value > 0:
                    hungry.value -= 1
        if busy is not None:
            with busy.get_lock():
                busy.value += 1
        try:
            run_task(wid, pool, task, packed, lender)
        finally:
            if busy is not None:
                with busy.get_lock():
                    busy.value -= 1
            if lender is not None and lender.threads != 1:
                lender.set(1)


def run_task(wid: int, pool: WorkerPool, task, packed, lender) -> None:
    """One task of :func:`worker_loop`; reports on ``pool.results``."""
    from .dispatch import search_case_dispatch

    network, spec, results = pool.network, pool.spec, pool.results
    if isinstance(task, FalsifyTask):
        results.put(Falsified(*falsify_report(network, spec, task.budget_s, task.seed,
                                              pool.deadline, task.starts,
                                              f"worker {wid} (falsification)")))
        return
    ci, closed = task.case, pool.closed
    if closed is not None and closed[ci]:
        results.put(Skipped(task.tid))
        return
    cube = list(task.cube or []) if pool.chosen == "cdcl" else None
    stats: dict = {}
    extra = {}
    task_deadline = pool.deadline
    if pool.chosen == "inputsplit" and pool.hungry is not None:
        extra = {"share": Share(pool, task), "start_pool": task.start_pool}
    elif cube is not None:
        q = (pool.lemma_qs or {}).get(task.tid) if task.listen else None
        extra = {"cube": cube, "poll": poller(ci, closed, q, lender), "variant": task.variant}
        if task.stop_at is not None:       # a hybrid first-phase task
            task_deadline = min(task_deadline, task.stop_at)
    if time.monotonic() >= task_deadline:    # (a first-phase hybrid task after that phase)
        results.put(Done(task.tid, Verdict.TIMEOUT.value, None, stats))
        return
    try:
        root = (pool.roots or {}).get(ci) if pool.chosen == "cdcl" else None
        with _progress_slot(pool.slots, wid, stats) as live:
            v, cex = search_case_dispatch(pool.chosen, network, spec, ci, task.open_idx,
                                          packed=packed, deadline=task_deadline, seed=task.seed,
                                          stats=stats, root=root, settings=pool.settings,
                                          live=live, **extra)
        x = None if cex is None else np.asarray(cex.x)
        results.put(Done(task.tid, v.value, x, stats))
    except Exception as e:  # reported to the parent, which answers unknown
        results.put(Done(task.tid, Verdict.UNKNOWN.value, None, stats,
                         f"worker {wid}: {type(e).__name__}: {e}\n"
                         f"{traceback.format_exc(limit=3)}"))


@contextlib.contextmanager
def _progress_slot(slots, wid, stats):
    """The task's live counters (its ``stats`` and what its search registers) in the worker's
    progress row while the task runs; the row is cleared before the parent gets the task's
    ``Done`` (whose stats it then counts itself), so nothing is counted twice."""
    if slots is None:
        yield None
        return
    from .progress import LiveCounters

    live = LiveCounters()
    live.stats = stats
    try:
        with slots.writer(wid, live.snapshot):
            yield live
    finally:
        slots.write(wid, {})


def falsify_report(network, spec, budget_s, seed, deadline, starts, who):
    """Run :func:`dpllnn.attack.falsify`; returns ``(x or None, error text or None)`` for the
    parent, which re-validates ``x`` and never answers unsat after an error."""
    from ..attack import falsify
    try:
        cex = falsify(network, spec, time_limit_s=budget_s, seed=seed, deadline=deadline,
                      starts=starts)
        return None if cex is None else np.asarray(cex.x), None
    except Exception as e:  # reported, never a verdict
        return None, f"{who}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


def attack_process(network, spec, budget_s, seed, deadline, q):
    """Process target: :func:`falsify_report` for ``budget_s`` seconds, its pair put on ``q``."""
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    q.put(falsify_report(network, spec, budget_s, seed, deadline, None, "attack process"))


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


def poller(ci, closed, q, lender=None):
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
