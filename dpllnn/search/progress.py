"""Progress lines on stderr during a long search (``dpllnn verify -v/--progress``).

A search's counters mostly reach the ``stats`` dict only when it ends (CDCL adds the theory's
counts in its ``finish``), and in a parallel search they live in the worker processes.  So the
running searches register *sources* here -- zero-argument callables returning their live
counters -- and a reporter thread sums them every few seconds:

- in one process, :class:`LiveCounters` holds the sources of the searches running there;
- each worker process copies its sum (tasks it finished + the task it runs) into its own slot
  of a shared array (:class:`WorkerSlots`), which the parent's reporter adds up;
- :class:`ProgressReporter` prints one line per interval on stderr: elapsed time, the stage,
  nodes, conflicts (branches the bounds refuted), learned clauses, proved phase cubes or proved
  boxes and input volume, and the lowest lower bound of the property's margin still open.

stdout is never written: it carries the verdict (the VNN-COMP and VNN-LIB solver contracts).
Counts may lag a search by one interval and never decide anything.
"""
from __future__ import annotations

import contextlib
import math
import sys
import threading
import time

__all__ = ["KEYS", "LiveCounters", "ProgressReporter", "WorkerSlots", "combine", "format_line",
           "from_stats"]

# summed over searches and workers, except "lower_bound": the minimum
KEYS = ("nodes", "conflicts", "learned", "boxes_proved", "volume_proved", "cubes_proved",
        "lower_bound")
_MIN_KEYS = frozenset({"lower_bound"})


# stats keys of finished searches -> progress keys (CDCL's "conflicts" in stats are CaDiCaL's;
# the progress line counts the theory's, which a running search can report)
_FROM_STATS = {"nodes": "nodes", "theory_conflicts": "conflicts", "learned": "learned",
               "boxes_proved": "boxes_proved", "volume_proved": "volume_proved"}


def from_stats(stats: dict) -> dict:
    """The progress counters already in a ``stats`` dict (searches that ended, and the input
    splitting search, which keeps its counters there as it runs)."""
    return {k: stats[s] for s, k in _FROM_STATS.items() if s in stats}


def combine(parts) -> dict:
    """Sum the counters of ``parts`` (dicts), the minimum for ``lower_bound``; missing and
    non-finite values are left out."""
    out: dict = {}
    for p in parts:
        for k in KEYS:
            v = p.get(k)
            if v is None or not math.isfinite(float(v)):
                continue
            if k in _MIN_KEYS:
                out[k] = min(out.get(k, math.inf), float(v))
            else:
                out[k] = out.get(k, 0) + v
    return out


class LiveCounters:
    """The live counters of the searches running in one process (module docstring).

    ``stage`` names what the run is doing ("attack", "root bounds", "cdcl search", ...);
    ``stats``, when set, is the run's stats dict, whose counters (:func:`from_stats`) count too.
    Sources are read from the reporter's thread: they must only read plain attributes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sources: dict = {}
        self._next = 0
        self.stage = "start"
        self.stats: dict | None = None

    @contextlib.contextmanager
    def source(self, fn):
        """Register ``fn() -> dict`` (keys of :data:`KEYS`) while the ``with`` block runs."""
        with self._lock:
            key, self._next = self._next, self._next + 1
            self._sources[key] = fn
        try:
            yield
        finally:
            with self._lock:
                del self._sources[key]

    def snapshot(self) -> dict:
        with self._lock:
            fns = list(self._sources.values())
        parts = [from_stats(self.stats)] if self.stats is not None else []
        for fn in fns:
            try:
                parts.append(fn())
            except Exception:  # a source read mid-update: skip it this once (display only)
                continue
        return combine(parts)


class WorkerSlots:
    """One row of doubles per worker in a shared array (``ctx.Array("d", ...)``, no lock): the
    worker's counters, written by a thread in the worker every ``period_s`` seconds."""

    def __init__(self, ctx, workers: int):
        self.width = len(KEYS)
        self.array = ctx.Array("d", [math.nan] * (workers * self.width), lock=False)
        self.workers = workers

    def write(self, wid: int, counters: dict) -> None:
        row = wid * self.width
        for j, k in enumerate(KEYS):
            self.array[row + j] = float(counters.get(k, math.nan))

    def read(self) -> dict:
        vals = list(self.array)
        return combine({k: vals[w * self.width + j] for j, k in enumerate(KEYS)}
                       for w in range(self.workers))

    @contextlib.contextmanager
    def writer(self, wid: int, read, period_s: float = 0.5):
        """While the block runs, a daemon thread writes ``read()`` into row ``wid``."""
        stop = threading.Event()

        def loop():
            while True:    # a first row at once, then one per period
                try:
                    self.write(wid, read())
                except Exception:  # display only: never let progress end a worker
                    pass
                if stop.wait(period_s):
                    return

        t = threading.Thread(target=loop, name="dpllnn-progress-slot", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=1.0)


def format_line(elapsed_s: float, stage: str, c: dict, n_cases: int = 1) -> str:
    """One progress line, e.g. ``dpllnn: 12.0 s  cdcl search  nodes 1,204  conflicts 310
    learned 322  cubes 3  lower bound -0.0132``."""
    parts = [f"dpllnn: {elapsed_s:6.1f} s", stage]
    for key, label in (("nodes", "nodes"), ("conflicts", "conflicts"), ("learned", "learned"),
                       ("cubes_proved", "cubes proved"), ("boxes_proved", "boxes proved")):
        if key in c:
            parts.append(f"{label} {int(c[key]):,}")
    if "volume_proved" in c:
        parts.append(f"volume proved {100.0 * c['volume_proved'] / max(n_cases, 1):.2f} %")
    if "lower_bound" in c:
        parts.append(f"lower bound {c['lower_bound']:.4g}")
    return "  ".join(parts)


class ProgressReporter:
    """A daemon thread printing :func:`format_line` on ``stream`` (stderr) every ``interval_s``
    seconds from ``read() -> (stage, counters)`` until :meth:`stop`."""

    def __init__(self, read, interval_s: float = 2.0, stream=None, n_cases: int = 1):
        if not interval_s > 0:
            raise ValueError(f"progress interval must be > 0 s, got {interval_s}")
        self.read, self.interval_s, self.n_cases = read, float(interval_s), n_cases
        self.stream = stream
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dpllnn-progress", daemon=True)

    def start(self) -> "ProgressReporter":
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval_s):
            try:
                stage, counters = self.read()
                line = format_line(time.monotonic() - self.t0, stage, counters, self.n_cases)
            except Exception:  # display only
                continue
            stream = self.stream or sys.stderr
            print(line, file=stream, flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)
