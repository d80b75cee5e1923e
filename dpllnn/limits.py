"""Resource limits and clean shutdown: memory budget, signal handling, child-process cleanup.

Linux-first (``/proc``); on other systems the memory readings fall back to ``resource`` and the
process-tree helpers to no-ops.  Nothing here is imported by the numba kernels.

Memory
------
The limit covers the whole run: the resident set of this process plus all its descendants
(portfolio workers), in MB (2**20 bytes).  Inside ``with memory_limit(mb) as budget:`` a
daemon thread polls the resident sets every ``interval_s``; once the sum exceeds the limit it
marks the budget *tripped* and interrupts the main thread, which raises
:class:`MemoryLimitReached` (a :class:`MemoryError`) at its next Python bytecode, and again every
``refire_s`` while the context is still open (in case a callback swallowed it).  The caller
turns the exception into ``unknown`` with the reason in the stats (see
``dpllnn.search.verify``)::

    with limits.memory_limit(limit_mb) as budget:     # None: default_memory_limit_mb()
        try:
            result = search(...)
        except MemoryError as e:                      # MemoryLimitReached or a real one
            result = Result(Verdict.UNKNOWN, reason=f"memory limit: {e}")
    result.stats.update(budget.stats())

Signals
-------
:func:`install_signal_handlers` makes SIGTERM and SIGINT raise :class:`Interrupted` (a
:class:`KeyboardInterrupt` carrying ``signum``) in the main thread, after sending SIGTERM to every
descendant process; it also arms a hard exit (``os._exit`` through :mod:`faulthandler`'s
watchdog thread, which needs no GIL) ``grace_s`` later, in case the main thread is stuck in C
code.  Results files are written atomically (``dpllnn.io.witness``), so they are absent or
complete whichever way the process ends.
"""
from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time

__all__ = [
    "Interrupted", "MemoryLimitReached", "MemoryBudget", "memory_limit", "default_memory_limit_mb",
    "physical_memory_mb", "rss_mb", "tree_rss_mb", "descendants", "kill_descendants",
    "install_signal_handlers",
]

_MB = 1024.0 * 1024.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: signal used by the memory watchdog thread to interrupt the main thread
WATCHDOG_SIGNAL = getattr(signal, "SIGUSR2", None)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGINT arrives.

    Attributes
    ----------
    signum : int -- the signal; the conventional exit code is ``128 + signum``
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        super().__init__(f"interrupted by {name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class MemoryLimitReached(MemoryError):
    """The run's resident memory exceeded its budget.

    Attributes
    ----------
    limit_mb, used_mb : float -- the budget and the reading that exceeded it (MB)
    """

    def __init__(self, limit_mb: float, used_mb: float):
        self.limit_mb = float(limit_mb)
        self.used_mb = float(used_mb)
        super().__init__(f"resident memory {used_mb:.0f} MB exceeds the limit of "
                         f"{limit_mb:.0f} MB")


# ---- readings -------------------------------------------------------------------------------
def physical_memory_mb() -> float:
    """Total physical memory of the machine, MB (cgroup v2 limit if lower)."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / _MB
    except (ValueError, OSError, AttributeError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            v = fh.read().strip()
        if v.isdigit():
            total = min(total or float("inf"), int(v) / _MB)
    except OSError:
        pass
    return float(total) if total else 4096.0


def default_memory_limit_mb(fraction: float = 0.75) -> float:
    """A safe default budget for one run (all its processes together): ``fraction`` of the
    physical memory, MB.  Portfolio workers share it (see :meth:`MemoryBudget.share`)."""
    return fraction * physical_memory_mb()


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of ``pid`` (default: this process), MB; 0.0 when it is gone."""
    path = f"/proc/{'self' if pid is None else int(pid)}/statm"
    try:
        with open(path, "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE / _MB
    except (OSError, IndexError, ValueError):
        if pid is None:
            import resource
            r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return r / 1024.0 if sys.platform != "darwin" else r / _MB
        return 0.0


def _children(pid: int) -> list[int]:
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def descendants(pid: int | None = None) -> list[int]:
    """Process ids of all descendants of ``pid`` (default: this process), parents first."""
    root = os.getpid() if pid is None else int(pid)
    out, stack, seen = [], [root], {root}
    while stack:
        for c in _children(stack.pop()):
            if c not in seen:
                seen.add(c)
                out.append(c)
                stack.append(c)
    return out


def tree_rss_mb() -> float:
    """Resident set of this process plus all its descendants, MB."""
    return rss_mb() + sum(rss_mb(p) for p in descendants())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def kill_descendants(sig: int = signal.SIGTERM, wait_s: float = 0.0,
                     pids: list[int] | None = None) -> int:
    """Send ``sig`` to every descendant; after ``wait_s`` seconds SIGKILL the survivors.

    Returns the number of processes signalled.  Direct children that exited are reaped when they
    are not managed by someone else (``os.waitpid`` with ``WNOHANG``).
    """
    pids = descendants() if pids is None else list(pids)
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, sig)
    if wait_s > 0 and pids:
        end = time.monotonic() + wait_s
        while time.monotonic() < end and any(_alive(p) for p in pids):
            time.sleep(0.01)
        for p in pids:
            if _alive(p):
                with contextlib.suppress(OSError):
                    os.kill(p, signal.SIGKILL)
    return len(pids)


# ---- memory budget --------------------------------------------------------------------------
class MemoryBudget:
    """A resident-memory budget for this process and its descendants.

    Parameters
    ----------
    limit_mb : float -- the budget, MB; ``<= 0`` or ``inf`` disables it
    include_children : bool -- count descendants' resident sets too
    interval_s : float -- polling period of the watchdog thread, s
    """

    def __init__(self, limit_mb: float, include_children: bool = True, interval_s: float = 0.05):
        self.limit_mb = float(limit_mb)
        self.include_children = include_children
        self.interval_s = float(interval_s)
        self.peak_mb = 0.0
        self.tripped = False
        self.used_mb = 0.0

    @property
    def enabled(self) -> bool:
        return 0.0 < self.limit_mb < float("inf")

    def used(self) -> float:
        """Current reading, MB (also updates ``peak_mb``)."""
        u = tree_rss_mb() if self.include_children else rss_mb()
        self.peak_mb = max(self.peak_mb, u)
        return u

    def over(self) -> bool:
        """Read now; True (and ``tripped`` set) when over the limit."""
        if not self.enabled:
            return False
        u = self.used()
        if u > self.limit_mb:
            self.tripped, self.used_mb = True, u
        return self.tripped

    def share(self, n_workers: int, reserve_mb: float | None = None) -> float:
        """Budget of each of ``n_workers`` worker processes: what is left after this process's
        current use (or ``reserve_mb``), split evenly, MB."""
        base = rss_mb() if reserve_mb is None else reserve_mb
        return max(1.0, (self.limit_mb - base) / max(1, int(n_workers)))

    def stats(self) -> dict:
        """Entries for ``Result.stats``."""
        d = {"memory_limit_mb": round(self.limit_mb, 1) if self.enabled else None,
             "memory_peak_mb": round(self.peak_mb, 1)}
        if self.tripped:
            d["memory_limit_reached"] = True
        return d


_ACTIVE: MemoryBudget | None = None
_LOCK = threading.Lock()


def _on_watchdog_signal(signum, frame):
    b = _ACTIVE
    if b is not None and b.tripped:
        raise MemoryLimitReached(b.limit_mb, b.used_mb)


def _install_watchdog_handler() -> bool:
    """Install the (permanent) handler of WATCHDOG_SIGNAL; only possible in the main thread."""
    if WATCHDOG_SIGNAL is None or threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(WATCHDOG_SIGNAL) is not _on_watchdog_signal:
        signal.signal(WATCHDOG_SIGNAL, _on_watchdog_signal)
    return True


class _Watchdog(threading.Thread):
    def __init__(self, budget: MemoryBudget, target_ident: int | None, refire_s: float):
        super().__init__(name="dpllnn-memory-watchdog", daemon=True)
        self.budget, self.target, self.refire_s = budget, target_ident, refire_s
        self.stop = threading.Event()

    def run(self):
        b = self.budget
        while not self.stop.wait(b.interval_s if not b.tripped else self.refire_s):
            try:
                over = b.over()
            except Exception:   # never let a /proc hiccup kill the watchdog
                continue
            if over and self.target is not None and not self.stop.is_set():
                with contextlib.suppress(OSError, ValueError):
                    signal.pthread_kill(self.target, WATCHDOG_SIGNAL)


@contextlib.contextmanager
def memory_limit(limit_mb: float | None = None, *, include_children: bool = True,
                 interval_s: float = 0.05, refire_s: float = 0.25):
    """Enforce a resident-memory budget inside the block (see the module docstring).

    Parameters
    ----------
    limit_mb : float or None -- MB for this process and its descendants; None: the default
        (:func:`default_memory_limit_mb`); ``<= 0`` or ``inf``: no limit (still reports the peak)
    include_children : bool -- count descendant processes
    interval_s : float -- polling period of the watchdog thread, s
    refire_s : float -- period of repeated interruptions once tripped, s

    Yields
    ------
    MemoryBudget -- with ``stats()`` for the result.  Only the main thread is interrupted
    (outside it the budget is only measured: ``tripped`` and ``stats()``).
    """
    global _ACTIVE
    if limit_mb is None:
        limit_mb = default_memory_limit_mb()
    budget = MemoryBudget(limit_mb, include_children=include_children, interval_s=interval_s)
    in_main = _install_watchdog_handler()
    with _LOCK:
        prev, _ACTIVE = _ACTIVE, budget
    dog = None
    if budget.enabled:
        dog = _Watchdog(budget, threading.main_thread().ident if in_main else None, refire_s)
        dog.start()
    try:
        yield budget
    finally:
        if dog is not None:
            dog.stop.set()
            dog.join()
        with _LOCK:
            _ACTIVE = prev
        with contextlib.suppress(Exception):
            budget.used()


# ---- signals --------------------------------------------------------------------------------
_INTERRUPTING = False
_DEVNULL = None


def _hard_exit_later(grace_s: float) -> None:
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = open(os.devnull, "w")
    with contextlib.suppress(Exception):
        faulthandler.dump_traceback_later(grace_s, exit=True, file=_DEVNULL)


def install_signal_handlers(grace_s: float = 0.8, signals=(signal.SIGTERM, signal.SIGINT)):
    """Make ``signals`` raise :class:`Interrupted` in the main thread.

    On the first signal: SIGTERM goes to every descendant process, a hard exit
    (``os._exit(1)``) is armed ``grace_s`` seconds later, and :class:`Interrupted` is raised.
    Later signals are ignored while the first is being handled.  Call from the main thread (a
    no-op elsewhere).  Also installs the memory watchdog's handler.

    Returns
    -------
    callable -- restores the previous handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        global _INTERRUPTING
        if _INTERRUPTING:
            return
        _INTERRUPTING = True
        with contextlib.suppress(Exception):
            kill_descendants(signal.SIGTERM)
        _hard_exit_later(grace_s)
        raise Interrupted(signum)

    prev = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, handler)
    _install_watchdog_handler()

    def restore():
        for s, h in prev.items():
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(s, h if h is not None else signal.SIG_DFL)

    return restore
