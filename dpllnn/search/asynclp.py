"""Relaxation LPs on a background thread, beside the search (CDCL with a spare core).

The theory's relaxation LP (``ReluTheory._relaxation_lp``: the triangle relaxation of a node on
the incremental ``LayeredLP``) costs ~0.1 s on mnist 256x4, twenty or more nodes' bounds, and
runs on the search's path.  When the search has a core to spare (parallel search, the idle
workers lend theirs: ``dpllnn.bounds.threads.lent_threads() >= 2``), the theory hands the LP of
a node to this thread instead and goes on searching; HiGHS releases the GIL while it solves.
The bound kernels give up one thread meanwhile (``reserve_core``), so the two never share one
core.

A finished job reports, per disjunct tried, whether the LP refuted it under the node's phases.
The theory turns a refutation into the clause "not all these phases, or not this disjunct"
(``-sel`` plus the negated phases of the node), valid whatever the search has done since; the
solver takes it as an external clause (it may conflict with, or propagate under, the current
assignment).  So the LP's verdicts stay sound when they arrive late: only their timing changes.

One job at a time: a node whose LP would have to wait is not queued (by the time the thread is
free the search is elsewhere).  The thread shares the ``LayeredLP`` with the theory's own
(synchronous) calls through ``lock``.  An exception in the thread is handed back with the
job (``LPJob.error``); the theory then stops the solver and the driver raises it
(``cdcl.search_case``), so it never turns into a verdict.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..bounds.threads import reserve_core


@dataclass
class LPJob:
    """One node's relaxation LPs.

    ``phase`` (int8, n_relus), ``lb``/``ub`` (float64, n_relus): the node's phases and sound
    pre-activation bounds; ``todo``: ``(disjunct index, (r0, r1) stacked rows)`` in the order to
    try; ``limit_s``: HiGHS time limit per LP (s); ``deadline``: ``time.monotonic()`` limit;
    ``stop_first``: stop at the first disjunct the LP does not refute; ``max_iterations``:
    simplex iterations per LP (None: no limit); ``neg``: the node's
    negated assigned phase literals (a refutation's clause body).  Filled by the thread:
    ``out`` -- ``(disjunct index, status, x or None, seconds, stopped by a limit)`` per LP run; ``error`` -- the
    exception text, or None."""

    phase: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    todo: list
    limit_s: float
    deadline: float
    stop_first: bool = True
    max_iterations: int | None = None
    neg: list = field(default_factory=list)
    out: list = field(default_factory=list)
    error: str | None = None


def refute_lp(llp, lock, phase, lb, ub, rows, limit_s, max_iterations):
    """One relaxation LP on ``llp`` under ``lock`` (``LayeredLP.solve`` in ``"refute"`` mode with
    a ``limit_s`` seconds time limit); returns ``(status, x or None, stopped by a limit)``.
    Used by the background thread and by the theory's inline path alike."""
    with lock:
        llp.set_time_limit(limit_s)
        st, x = llp.solve(phase, lb, ub, rows, mode="refute", max_iterations=max_iterations)
        return st, x, llp.limited


class AsyncRelaxationLP:
    """A background thread that runs :class:`LPJob` s on ``llp`` (a ``LayeredLP``).

    Parameters
    ----------
    llp : dpllnn.lp.layered.LayeredLP
    lock : threading.Lock -- held around every use of ``llp`` (the theory takes it too)
    """

    def __init__(self, llp, lock):
        self.llp, self.lock = llp, lock
        self._cv = threading.Condition()
        self._job: LPJob | None = None
        self._done: list[LPJob] = []
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def busy(self) -> bool:
        """True while a job is queued or running."""
        return self._busy

    def submit(self, job: LPJob) -> bool:
        """Start ``job`` if the thread is free; returns whether it was taken."""
        with self._cv:
            if self._busy or self._closed:
                return False
            self._busy = True
            self._job = job
            reserve_core(True)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="relaxation-lp",
                                                daemon=True)
                self._thread.start()
            self._cv.notify()
            return True

    def finished(self) -> list[LPJob]:
        """The jobs done since the last call (oldest first)."""
        if not self._done:
            return []
        with self._cv:
            out, self._done = self._done, []
        return out

    def close(self, wait_s: float = 2.0) -> None:
        """Stop the thread (after its current LP, which its time limit bounds)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=wait_s)
        reserve_core(False)

    def _run(self):
        while True:
            with self._cv:
                while self._job is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job, self._job = self._job, None
            try:
                self._solve(job)
            except Exception as e:   # handed back: the theory raises it
                job.error = f"{type(e).__name__}: {e}"
            with self._cv:
                self._done.append(job)
                self._busy = False
                reserve_core(False)

    def _solve(self, job: LPJob):
        for i, rows in job.todo:
            limit = min(job.limit_s, job.deadline - time.monotonic())
            if limit <= 0.0 or self._closed:
                return
            t = time.monotonic()
            st, x, limited = refute_lp(self.llp, self.lock, job.phase, job.lb, job.ub, rows,
                                       limit, job.max_iterations)
            job.out.append((i, st, x, time.monotonic() - t, limited))
            if st != "infeasible" and job.stop_first:
                return
