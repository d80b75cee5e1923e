"""Resource limits and clean shutdown: memory budget, signal handling, child-process cleanup.

Process readings (resident sets, the process tree) come from psutil, which is portable; the
cgroup v2 memory limit is read on Linux.  Nothing here is imported by the numba kernels.

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

import psutil

__all__ = [
    "Interrupted", "raise_if_interrupted", "exit_now", "MemoryLimitReached", "MemoryBudget",
    "memory_limit", "default_memory_limit_mb",
    "physical_memory_mb", "rss_mb", "tree_rss_mb", "descendants", "kill_descendants",
    "install_signal_handlers",
]

_MB = 1024.0 * 1024.0
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


# ---- readings (psutil) ----------------------------------------------------------------------
def physical_memory_mb() -> float:
    """Total physical memory of the machine, MB (the cgroup v2 limit if lower: psutil reports
    the host's memory inside a container)."""
    total = psutil.virtual_memory().total / _MB
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            v = fh.read().strip()
        if v.isdigit():
            total = min(total, int(v) / _MB)
    except OSError:
        pass
    return float(total) if total > 0 else 4096.0


def default_memory_limit_mb(fraction: float = 0.75) -> float:
    """A safe default budget for one run (all its processes together): ``fraction`` of the
    physical memory, MB.  Portfolio workers share it (see :meth:`MemoryBudget.share`)."""
    return fraction * physical_memory_mb()


def _rss(proc: psutil.Process) -> float:
    try:
        return proc.memory_info().rss / _MB
    except psutil.Error:            # gone, a zombie, or not ours to read
        return 0.0


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of ``pid`` (default: this process), MB; 0.0 when it is gone."""
    try:
        return _rss(psutil.Process(pid))
    except psutil.Error:
        return 0.0


def _tree(pid: int | None = None) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def descendants(pid: int | None = None) -> list[int]:
    """Process ids of all descendants of ``pid`` (default: this process)."""
    return [p.pid for p in _tree(pid)]


def tree_rss_mb() -> float:
    """Resident set of this process plus all its descendants, MB."""
    return rss_mb() + sum(_rss(p) for p in _tree())


def _alive(pid: int) -> bool:
    """Running and not a zombie (an exited child its parent has not reaped yet counts as gone:
    reaping it here would steal the exit status from its ``Popen`` / ``multiprocessing``)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def kill_descendants(sig: int = signal.SIGTERM, wait_s: float = 0.0,
                     pids: list[int] | None = None) -> int:
    """Send ``sig`` to every descendant; after ``wait_s`` seconds SIGKILL the survivors.

    Returns the number of processes signalled.  Exited children are not reaped here (their
    owners wait for them).
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
    tree_refresh_s : float -- how often the list of descendants is re-read, s.  Listing them
        reads every process's entry (psutil: 3.2 ms with 82 processes), their resident sets
        only their own (0.02 ms each), so the list is refreshed less often than the readings.
    """

    def __init__(self, limit_mb: float, include_children: bool = True, interval_s: float = 0.05,
                 tree_refresh_s: float = 0.5):
        self.limit_mb = float(limit_mb)
        self.include_children = include_children
        self.interval_s = float(interval_s)
        self.tree_refresh_s = float(tree_refresh_s)
        self.peak_mb = 0.0
        self.tripped = False
        self.used_mb = 0.0
        self._tree: list[psutil.Process] = []
        self._tree_at = -float("inf")

    @property
    def enabled(self) -> bool:
        return 0.0 < self.limit_mb < float("inf")

    def used(self) -> float:
        """Current reading, MB (also updates ``peak_mb``)."""
        u = rss_mb()
        if self.include_children:
            now = time.monotonic()
            if now - self._tree_at >= self.tree_refresh_s:
                self._tree, self._tree_at = _tree(), now
            u += sum(_rss(p) for p in self._tree)
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
            except Exception:   # never let a reading hiccup kill the watchdog
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
_SIGNUM: int | None = None          # the signal the handler took, once it ran
_HANDLED = threading.Event()        # the Python-level handler ran in the main thread
_DEVNULL = None
_WAKEUP: tuple[int, int] | None = None   # (read, write) ends of the signal wake-up pipe


def _hard_exit_later(grace_s: float) -> None:
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = open(os.devnull, "w")
    with contextlib.suppress(Exception):
        faulthandler.dump_traceback_later(grace_s, exit=True, file=_DEVNULL)


def exit_now(code: int) -> None:
    """Flush stdout/stderr and end the process at once (``os._exit``), skipping the
    interpreter's finalisation: after an interrupt there is nothing left to save, and tearing
    down numba, llvmlite and TBB took 0.3-0.9 s under load (measured on mnist_fc runs)."""
    for fh in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            fh.flush()
    os._exit(code)


def _forced_exit(signum: int) -> None:
    """End the process from the watcher thread: the main thread is stuck in native code."""
    from .io.atomic import remove_pending
    with contextlib.suppress(Exception):
        kill_descendants(signal.SIGKILL)
    with contextlib.suppress(Exception):
        remove_pending()
    with contextlib.suppress(Exception):
        os.write(2, f"dpllnn: {Interrupted(signum)}\n".encode())
    os._exit(128 + signum)


def _watch(read_fd: int, signals: frozenset, force_s: float) -> None:
    """Body of the watcher thread: wakes on the signal wake-up pipe (written by CPython's C-level
    handler at once, whatever the main thread is doing), stops the workers, and if the main
    thread has not run the Python-level handler within ``force_s`` -- it is inside a long
    ``nogil`` kernel, which holds no GIL but runs no bytecode either -- ends the process."""
    while True:
        try:
            data = os.read(read_fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:
            return
        hits = [b for b in data if b in signals]
        if not hits:
            continue                 # e.g. the memory watchdog's signal
        with contextlib.suppress(Exception):
            kill_descendants(signal.SIGTERM)
        if not _HANDLED.wait(force_s):
            _forced_exit(hits[0])
        return


def _before_fork() -> None:
    # A forked child inherits CPython's wake-up fd (the pipe shared with this process), not the
    # watcher thread: a signal reaching the child before its after-fork hook runs (a worker
    # terminated right after start) would wake this process's watcher.  Forks from the main
    # thread (multiprocessing, ProcessPoolExecutor) therefore happen with the wake-up fd off.
    if _WAKEUP is not None and threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)


def _after_fork_in_parent() -> None:
    if _WAKEUP is not None and threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(_WAKEUP[1], warn_on_full_buffer=False)


def _after_fork_in_child() -> None:
    if _WAKEUP is None:
        return
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:               # forked from a thread other than the main one
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, _WAKEUP[1])
        os.close(fd)


def _start_watcher(signals, force_s: float) -> None:
    global _WAKEUP
    if _WAKEUP is not None or force_s <= 0:
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except ValueError:
        os.close(r)
        os.close(w)
        return
    _WAKEUP = (r, w)
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
    threading.Thread(target=_watch, args=(r, frozenset(int(s) for s in signals), force_s),
                     name="dpllnn-signal-watcher", daemon=True).start()


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` again if the handler ran.  Its exception can be lost: raised
    while the main thread was inside a ``__del__`` or a weakref callback (multiprocessing's,
    logging's locks), Python prints it as "Exception ignored" and goes on.  Measured: 1 SIGTERM
    of 14 under load, the parent then saw its workers gone and printed ``unknown``.
    :func:`dpllnn.search.verify.verify` checks before it returns, so an interrupted run never
    gives a verdict."""
    if _SIGNUM is not None:
        raise Interrupted(_SIGNUM)


def install_signal_handlers(grace_s: float = 0.5, signals=(signal.SIGTERM, signal.SIGINT),
                            force_s: float = 0.3):
    """Make ``signals`` raise :class:`Interrupted` in the main thread.

    On the first signal: SIGTERM goes to every descendant process, a hard exit
    (``os._exit(1)``) is armed ``grace_s`` seconds later, and :class:`Interrupted` is raised.
    Later signals are ignored while the first is being handled.  Python runs that handler only
    between bytecodes of the main thread, so a watcher thread also wakes on the signal (through
    :func:`signal.set_wakeup_fd`); when the handler has not run ``force_s`` seconds later (a
    long ``nogil`` numba kernel: an alpha-CROWN pass on mnist_fc 256x6 runs for seconds), it
    SIGKILLs the descendants, removes half-written atomic files and exits with ``128 + signum``.
    ``force_s <= 0`` disables the watcher.  Call from the main thread (a no-op elsewhere).  Also
    installs the memory watchdog's handler.

    Returns
    -------
    callable -- restores the previous handlers (the watcher, once started, stays).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        global _INTERRUPTING, _SIGNUM
        _HANDLED.set()
        if _INTERRUPTING:
            return
        _INTERRUPTING = True
        _SIGNUM = int(signum)
        with contextlib.suppress(Exception):
            kill_descendants(signal.SIGTERM)
        _hard_exit_later(grace_s)
        raise Interrupted(signum)

    prev = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, handler)
    _install_watchdog_handler()
    _start_watcher(signals, force_s)

    def restore():
        for s, h in prev.items():
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(s, h if h is not None else signal.SIG_DFL)

    return restore
