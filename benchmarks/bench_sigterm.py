"""SIGTERM-to-exit latency of ``dpllnn verify`` (issue: clean stop within 1 s, also under load).

    python benchmarks/bench_sigterm.py NET.onnx PROP.vnnlib [--tries 20] [--load]

Each try starts ``dpllnn verify NET PROP --timeout 120``, sends SIGTERM after a random delay of
0.1-4 s (so some land during start-up imports, some in the search), and times the exit from the
signal.  ``--load`` keeps every core busy with a spinning process meanwhile.  Prints each time,
the median, the maximum, how many took over 1 s, and whether any process of the run survived.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time


def _spin():
    while True:
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network")
    ap.add_argument("prop")
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--load", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    load = []
    if a.load:
        import multiprocessing as mp
        load = [mp.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 1)]
        for p in load:
            p.start()
    times, survivors = [], 0
    try:
        for k in range(a.tries):
            p = subprocess.Popen([sys.executable, "-m", "dpllnn.cli", "verify", a.network, a.prop,
                                  "--timeout", "120"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            delay = rng.uniform(0.1, 4.0)
            time.sleep(delay)
            if p.poll() is not None:
                print(f"try {k}: ended before the signal ({delay:.2f} s)")
                continue
            t = time.monotonic()
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
            dt = time.monotonic() - t
            times.append(dt)
            time.sleep(0.2)
            try:                        # anything left in the run's process group?
                os.killpg(p.pid, 0)
                survivors += 1
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            print(f"try {k}: signal after {delay:.2f} s, exit {p.returncode} in {dt:.3f} s",
                  flush=True)
    finally:
        for p in load:
            p.terminate()
    if times:
        print(f"{len(times)} signals: median {statistics.median(times):.3f} s, max "
              f"{max(times):.3f} s, {sum(t > 1.0 for t in times)} over 1 s; "
              f"process groups with survivors: {survivors}" + (" (under load)" if a.load else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
