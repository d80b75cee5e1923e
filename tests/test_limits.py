"""Resource limits and clean failure (dpllnn.limits, and its wiring into the CLI).

Two groups:

* unit tests of :mod:`dpllnn.limits` (memory budget, watchdog, signal handlers, process-tree
  cleanup) -- they run in subprocesses or small in-process loops and pass on their own;
* end-to-end CLI tests (``--memory-limit``, SIGTERM mid-search, timeouts under load) -- they skip
  until the search modules exist and the CLI has the ``--memory-limit`` option (the wiring patch
  of ``cli.py``/``verify.py``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from dpllnn import limits

REPO = Path(__file__).resolve().parent.parent


def _search_complete() -> bool:
    return all(importlib.util.find_spec(f"dpllnn.search.{m}") is not None
               for m in ("inputsplit", "cdcl"))


def _cli_has_memory_limit() -> bool:
    from dpllnn.cli import build_parser
    return "--memory-limit" in build_parser().format_help() or \
        "--memory-limit" in _verify_help()


def _verify_help() -> str:
    p = subprocess.run([sys.executable, "-m", "dpllnn.cli", "verify", "--help"],
                       capture_output=True, text=True, timeout=60)
    return p.stdout


needs_search = pytest.mark.skipif(not _search_complete(),
                                  reason="dpllnn.search.inputsplit / cdcl not written yet")


def _run_py(code: str, timeout=60, **kw):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _alive(pid: int) -> bool:
    return limits._alive(pid)


# ---- memory ---------------------------------------------------------------------------------
def test_defaults_are_sane():
    phys = limits.physical_memory_mb()
    assert 64 < phys < 1 << 26
    assert 0 < limits.default_memory_limit_mb() < phys
    assert 1 < limits.rss_mb() < phys
    assert limits.tree_rss_mb() >= limits.rss_mb() - 1


def test_memory_budget_interrupts_a_python_loop():
    junk = []
    t0 = time.monotonic()
    with pytest.raises(MemoryError) as ei:
        with limits.memory_limit(limits.rss_mb() + 40) as budget:
            while time.monotonic() - t0 < 20:
                junk.append(bytearray(1 << 20))
                time.sleep(0.001)  # paced (<= 1 MB/ms): a loaded machine once let an unpaced
                #                    loop grow 412 MB between two 50 ms polls
    dt = time.monotonic() - t0
    n = len(junk)
    del junk
    assert isinstance(ei.value, limits.MemoryLimitReached)
    assert dt < 5
    assert n < 1000                     # stopped near the limit, not at the 20 s guard (~20000)
    st = budget.stats()
    assert st["memory_limit_reached"] and st["memory_peak_mb"] > st["memory_limit_mb"]
    assert limits._ACTIVE is None


def test_memory_budget_disabled_and_nested():
    with limits.memory_limit(0) as b:
        assert not b.enabled
    with limits.memory_limit(1e9) as outer:
        with limits.memory_limit(1e9) as inner:
            assert limits._ACTIVE is inner
        assert limits._ACTIVE is outer
    assert limits._ACTIVE is None


def test_memory_budget_counts_children():
    code = """
        import subprocess, sys, time
        from dpllnn import limits
        child = subprocess.Popen([sys.executable, "-c",
            "import time; x = bytearray(150 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"])
        t0 = time.monotonic()
        try:
            with limits.memory_limit(limits.rss_mb() + 80):
                while time.monotonic() - t0 < 20:
                    time.sleep(0.01)
            print("no-trip")
        except MemoryError as e:
            print("tripped", round(time.monotonic() - t0, 2))
        finally:
            limits.kill_descendants(wait_s=1.0)
            child.wait()
    """
    p = _run_py(code)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.startswith("tripped"), out + err


def test_memory_budget_share():
    b = limits.MemoryBudget(1000.0)
    assert b.share(2, reserve_mb=200) == pytest.approx(400.0)
    assert b.share(4, reserve_mb=2000) == 1.0


# ---- signals and process trees --------------------------------------------------------------
_SIGNAL_SCRIPT = """
    import subprocess, sys, time
    from dpllnn import limits
    limits.install_signal_handlers()
    kids = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    kids.append(subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(0.1)"]))
    print(" ".join(str(k.pid) for k in kids), flush=True)
    try:
        x = 0
        while True:                 # a busy Python loop (the search)
            x += 1
    except limits.Interrupted as e:
        limits.kill_descendants(wait_s=0.3)
        print(f"interrupted {e.signum}", flush=True)
        sys.exit(e.exit_code)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_run_fast_and_kills_children(sig):
    p = _run_py(_SIGNAL_SCRIPT)
    pids = [int(v) for v in p.stdout.readline().split()]
    assert len(pids) == 3
    time.sleep(0.3)
    t0 = time.monotonic()
    p.send_signal(sig)
    out, err = p.communicate(timeout=10)
    dt = time.monotonic() - t0
    assert dt < 1.0, f"took {dt:.2f} s"
    assert p.returncode == 128 + sig, err
    assert f"interrupted {int(sig)}" in out
    time.sleep(0.1)
    assert not any(_alive(q) for q in pids), "orphan processes left"


def test_hard_exit_backstop_when_handler_cannot_finish():
    """If the code swallows the Interrupted and carries on, the armed hard exit still ends the
    process within the grace period (exit code 1)."""
    code = """
        import time
        from dpllnn import limits
        limits.install_signal_handlers(grace_s=0.5)
        print("ready", flush=True)
        while True:
            try:
                while True:
                    time.sleep(0.01)
            except KeyboardInterrupt:
                pass                # a careless handler
    """
    p = _run_py(code)
    assert p.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=10)
    assert time.monotonic() - t0 < 1.5
    assert p.returncode == 1


def test_signal_ends_run_while_main_thread_is_in_a_nogil_kernel(tmp_path):
    """The main thread inside a long ``nogil`` numba kernel runs no bytecode, so the Python-level
    handler cannot run: the watcher thread ends the process (128 + signum), kills the children
    and removes the temporary file of an atomic write that was in progress."""
    code = f"""
        import subprocess, sys, tempfile, time
        import numba
        from dpllnn import limits
        from dpllnn.io import atomic

        @numba.njit(nogil=True)
        def spin(n):
            s = 0.0
            for i in range(n):
                s += (i % 7) * 1e-9
            return s

        spin(10)                                   # compile before the signal
        limits.install_signal_handlers()
        kid = subprocess.Popen(["sleep", "60"])
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir={str(tmp_path)!r})
        atomic._PENDING.add(tmp)                   # as if inside atomic_write_bytes
        print(kid.pid, flush=True)
        spin(10 ** 12)                             # minutes: only a forced exit ends it
        print("kernel returned", flush=True)
    """
    p = _run_py(code)
    kid = int(p.stdout.readline())
    time.sleep(0.3)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    dt = time.monotonic() - t0
    assert p.returncode == 128 + signal.SIGTERM, err
    assert dt < 1.0, f"took {dt:.2f} s"
    assert "kernel returned" not in out
    assert "interrupted by SIGTERM" in err
    time.sleep(0.1)
    assert not _alive(kid), "orphan child left"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")], "temp file left"


def test_signals_to_newborn_children_do_not_stop_the_parent():
    """A forked child shares the parent's signal wake-up pipe until its after-fork hook runs: a
    worker terminated right after start must not wake the parent's watcher (which would end
    the parent)."""
    code = """
        import multiprocessing as mp, time
        from dpllnn import limits
        limits.install_signal_handlers()
        ctx = mp.get_context("fork")
        for _ in range(12):
            p = ctx.Process(target=time.sleep, args=(30,), daemon=True)
            p.start()
            p.terminate()
            p.join(1)
            if p.is_alive():            # the inherited handler may have caught it: a real
                p.kill()                # worker resets SIGTERM first (search.portfolio)
                p.join()
        time.sleep(0.5)                 # past the watcher's force_s
        print("parent alive", flush=True)
    """
    p = _run_py(code)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "parent alive" in out, err


def test_memory_budget_refreshes_the_process_tree():
    """The budget re-lists descendants every ``tree_refresh_s`` and reads their resident sets in
    between: a child started after the first reading is counted once the list is refreshed."""
    b = limits.MemoryBudget(1e9, tree_refresh_s=0.2)
    base = b.used()
    child = subprocess.Popen([sys.executable, "-c",
                              "x = bytearray(120 << 20); x[::4096] = b'1' * len(x[::4096]); "
                              "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and b.used() < base + 100:
            time.sleep(0.05)
        assert b.used() >= base + 100, "the child's 120 MB were never counted"
    finally:
        child.kill()
        child.wait()


def test_descendants_and_kill_descendants_tree():
    code = """
        import subprocess, sys, time
        inner = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
        subprocess.Popen([sys.executable, "-c", inner])
        time.sleep(60)
    """
    p = _run_py(code)
    try:
        deadline = time.monotonic() + 20
        tree = []
        while time.monotonic() < deadline and len(tree) < 2:
            time.sleep(0.1)
            tree = limits.descendants(p.pid)
        assert len(tree) == 2
        assert limits.kill_descendants(signal.SIGTERM, wait_s=1.0, pids=tree) == 2
        time.sleep(0.1)
        assert not any(_alive(q) for q in tree)
    finally:
        p.kill()
        p.communicate()


# ---- end to end (needs the search modules and the CLI wiring) -------------------------------
def _hard_instance(folder: Path, n_in=6, hidden=(48, 48, 48), seed=3):
    """A random network and a property just below the sampled minimum of output 0: falsification
    fails, root bounds are far too loose, so the search runs for a long time."""
    from dpllnn.io.onnx_export import to_onnx
    from dpllnn.network import Affine, Network

    rng = np.random.default_rng(seed)
    sizes = [n_in, *hidden, 2]
    net = Network([Affine(rng.normal(size=(sizes[k + 1], sizes[k])) / np.sqrt(sizes[k]),
                          rng.normal(size=sizes[k + 1]) * 0.1) for k in range(len(sizes) - 1)])
    corners = np.where((np.arange(2 ** n_in)[:, None] >> np.arange(n_in)) & 1, 1.0, -1.0)
    X = np.vstack([rng.uniform(-1, 1, (20000, n_in)), corners,
                   np.clip(rng.normal(size=(20000, n_in)) * 2, -1, 1)])
    y = net.forward(X)[:, 0]
    thr = float(y.min() - 0.02 * (y.max() - y.min()))
    onnx_path, spec_path = folder / "hard.onnx", folder / "hard.vnnlib"
    to_onnx(net, onnx_path, dtype="float64")
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(2)]
    for i in range(n_in):
        lines += [f"(assert (>= X_{i} -1.0))", f"(assert (<= X_{i} 1.0))"]
    lines.append(f"(assert (<= Y_0 {thr!r}))")
    spec_path.write_text("\n".join(lines) + "\n")
    return onnx_path, spec_path


def _cli(*args):
    return subprocess.Popen([sys.executable, "-m", "dpllnn.cli", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@needs_search
@pytest.mark.skipif(not _cli_has_memory_limit(), reason="CLI not wired to dpllnn.limits yet")
def test_cli_sigterm_mid_search(tmp_path):
    onnx_path, spec_path = _hard_instance(tmp_path)
    res = tmp_path / "out.txt"
    p = _cli("verify", onnx_path, spec_path, "--timeout", "60", "--workers", "2",
             "--results-file", res)
    time.sleep(4.0)                           # imports, falsification, into the search
    tree = limits.descendants(p.pid)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    dt = time.monotonic() - t0
    if p.returncode == 0:
        pytest.skip(f"instance was decided before the signal: {out.splitlines()[:1]}")
    assert dt < 1.0, f"exit took {dt:.2f} s"
    assert p.returncode in (128 + signal.SIGTERM, 1, -signal.SIGTERM), err
    assert out.strip() == "", "no verdict may be printed after an interrupt"
    if res.exists():                          # absent or complete
        lines = res.read_text().splitlines()
        assert lines and lines[0] in ("sat", "unsat", "unknown", "timeout")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")], "temp file left"
    time.sleep(0.2)
    assert not [q for q in tree if _alive(q)], "orphan worker processes"


@needs_search
@pytest.mark.skipif(not _cli_has_memory_limit(), reason="CLI has no --memory-limit yet")
def test_cli_memory_limit_tiny_is_unknown(tmp_path):
    """A limit below the interpreter's own footprint trips at once: unknown, reason in stats."""
    onnx_path, spec_path = _hard_instance(tmp_path)
    p = _cli("verify", onnx_path, spec_path, "--timeout", "30", "--json", "--workers", "1",
             "--memory-limit", "10")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    obj = json.loads(out)
    assert obj["result"] == "unknown"
    assert "memory" in obj["reason"]
    assert obj["stats"].get("memory_limit_reached") is True


@needs_search
@pytest.mark.skipif(not _cli_has_memory_limit(), reason="CLI has no --memory-limit yet")
def test_cli_memory_limit_hard_instance_ends_within_timeout(tmp_path):
    """A small budget above the baseline on a hard instance: the run ends by its timeout with
    unknown (memory) or timeout -- never killed, never an internal error."""
    onnx_path, spec_path = _hard_instance(tmp_path, hidden=(64, 64, 64))
    timeout = 20
    t0 = time.monotonic()
    p = _cli("verify", onnx_path, spec_path, "--timeout", timeout, "--json", "--workers", "2",
             "--memory-limit", "400")
    out, err = p.communicate(timeout=timeout + 30)
    dt = time.monotonic() - t0
    assert p.returncode == 0, err
    obj = json.loads(out)
    assert obj["result"] in ("unknown", "timeout"), obj
    if obj["result"] == "unknown":
        assert "memory" in obj["reason"]
    assert dt < timeout + 5


@needs_search
@pytest.mark.skipif(not _cli_has_memory_limit(), reason="CLI not wired to dpllnn.limits yet")
def test_timeout_holds_under_load(tmp_path):
    """Both cores busy with other processes: the verify run still ends near its timeout."""
    onnx_path, spec_path = _hard_instance(tmp_path)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        timeout = 8
        t0 = time.monotonic()
        p = _cli("verify", onnx_path, spec_path, "--timeout", timeout, "--workers", "2")
        out, err = p.communicate(timeout=timeout + 60)
        dt = time.monotonic() - t0
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert p.returncode == 0, err
    assert out.splitlines()[0] in ("timeout", "unknown", "sat", "unsat")
    assert dt < timeout + 4, f"took {dt:.1f} s for a {timeout} s timeout"


def test_internal_error_exits_1_without_verdict(tmp_path, monkeypatch):
    """An exception inside verify is an internal error: exit 1, one message, no verdict, no
    results file."""
    import dpllnn.search.verify as sv
    from dpllnn.cli import main

    def boom(*a, **k):
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(sv, "verify", boom)
    ex = REPO / "dpllnn" / "examples"
    res = tmp_path / "res.txt"
    code = main(["verify", str(ex / "digits_mlp.onnx"), str(ex / "digits_robust.vnnlib"),
                 "--results-file", str(res)])
    assert code == 1
    assert not res.exists()


def test_an_interrupt_lost_in_a_destructor_is_raised_again():
    """The handler's exception raised inside ``__del__`` is printed and dropped by Python; the
    verify commands call ``raise_if_interrupted`` before answering, so no verdict follows."""
    code = r"""
import os, signal, sys, time
from dpllnn import limits
limits.install_signal_handlers(force_s=0)
class Drop:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)                     # the handler runs here; Python drops its exception
Drop()
print("survived the destructor", flush=True)
try:
    limits.raise_if_interrupted()
except limits.Interrupted as e:
    print("raised again", e.signum, flush=True)
    os._exit(0)
os._exit(3)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "survived the destructor" in r.stdout, r.stderr
    assert f"raised again {int(signal.SIGTERM)}" in r.stdout and r.returncode == 0, (r.stdout,
                                                                                  r.stderr)
