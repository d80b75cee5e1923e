"""Time the VNN-LIB parser: synthetic 150,000-bound files and the largest benchmark properties.

Usage: python benchmarks/bench_vnnlib_parse.py [--benchmarks-root DIR] [--repeat 3]

Prints one row per file: size, inputs, cases, disjuncts, best-of-N parse time.  The synthetic
files have 75,000 inputs with a ``<=`` and a ``>=`` bound each, written in the two shapes seen in
practice: one ``(assert (op X_i c))`` per line, and one big ``(assert (and ...))``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dpllnn.io.vnnlib import parse_vnnlib

N_INPUTS = 75_000


def write_synthetic(folder: Path, n: int = N_INPUTS) -> list[Path]:
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(n))
    decl += "".join(f"(declare-const Y_{j} Real)\n" for j in range(10))
    out = "(assert (or\n" + "".join(f"    (and (>= Y_{j} Y_0))\n" for j in range(1, 10)) + "))\n"
    lines = "".join(f"(assert (<= X_{i} {0.5 + i * 1e-6!r}))\n(assert (>= X_{i} {-0.25 - i * 1e-7!r}))\n"
                    for i in range(n))
    atoms = "".join(f"  (<= X_{i} {0.5 + i * 1e-6!r}) (>= X_{i} {-0.25 - i * 1e-7!r})\n" for i in range(n))
    a, b = folder / "bounds_per_line.vnnlib", folder / "bounds_one_and.vnnlib"
    a.write_text("; synthetic: one assert per bound\n" + decl + lines + out)
    b.write_text("; synthetic: every bound in one and\n" + decl + "(assert (and\n" + atoms + "))\n" + out)
    return [a, b]


def best_of(path: Path, repeat: int):
    best, spec = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        spec = parse_vnnlib(path)
        best = min(best, time.perf_counter() - t0)
    return best, spec


def default_root() -> Path | None:
    env = os.environ.get("DPLLNN_BENCHMARKS")
    cand = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks"
    return cand if cand.is_dir() else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmarks-root", type=Path, default=default_root())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--largest", type=int, default=3, help="how many of the largest benchmark files")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in write_synthetic(Path(tmp)):
            rows.append((f.name, f.stat().st_size, *best_of(f, args.repeat)))
    if args.benchmarks_root is not None:
        files = sorted(args.benchmarks_root.rglob("*.vnnlib"), key=lambda f: f.stat().st_size)
        for f in files[::-1][: args.largest]:
            rows.append((str(f.relative_to(args.benchmarks_root)), f.stat().st_size,
                         *best_of(f, args.repeat)))
        t0 = time.perf_counter()
        for f in files:
            parse_vnnlib(f)
        total = time.perf_counter() - t0
    print(f"{'file':<48} {'MB':>6} {'inputs':>7} {'cases':>5} {'disj':>5} {'best s':>8}")
    for name, size, t, spec in rows:
        print(f"{name[-48:]:<48} {size / 1e6:6.2f} {spec.n_inputs:7d} {len(spec.cases):5d} "
              f"{spec.n_disjuncts:5d} {t:8.3f}")
    if args.benchmarks_root is not None:
        print(f"all {len(files)} benchmark properties parsed once: {total:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
