"""``dpllnn bench``: run a suite of instances, resumably, and compare with reference tools.

Wired into :mod:`dpllnn.cli` with ``add_bench_parser(sub)`` and ``_COMMANDS["bench"] = cmd_bench``;
also runnable as ``python -m dpllnn.bench ...``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from ..errors import DpllnnError





from ..argtypes import positive_float as _pos_float
from ..argtypes import positive_int as _pos_int


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an argparse ``subparsers`` object."""
    b = subparsers.add_parser(
        "bench", help="run a suite of instances (resumable csv, summary, cactus plot)",
        description="Run every instance of INSTANCES.csv in its own `dpllnn verify` process. "
        "Rows already in the results csv are skipped, so an interrupted run resumes.")
    b.add_argument("instances", help="instances csv: onnx,vnnlib,timeout_s rows "
                   "(VNN-COMP form, no header) or with a header (may add a category column)")
    b.add_argument("--benchmarks-root", help="folder the csv paths are relative to "
                   "(default: the csv's own folder)")
    b.add_argument("-o", "--output", required=True, help="results csv (created or resumed)")
    b.add_argument("--reference", action="append", default=[], metavar="REF.csv",
                   help="refdata csv with the expected answers and tool times (repeatable)")
    b.add_argument("--timeout-scale", type=_pos_float, default=1.0,
                   help="multiply every instance's timeout by this factor")
    b.add_argument("--shard", help="i/N: run only instances i, i+N, ... (0 <= i < N)")
    b.add_argument("--executor", default="local",
                   help="local (process pool, default), dask-local (LocalCluster) or "
                   "dask://HOST:PORT (a running dask scheduler)")
    b.add_argument("--workers", type=_pos_int, default=1,
                   help="instances run at the same time (default 1: a verify may itself "
                   "use every core, and parallel runs distort the times)")
    b.add_argument("--verify-workers", type=_pos_int, default=None,
                   help="--workers passed to each `dpllnn verify` (default: its own default)")
    b.add_argument("--mode", choices=["auto", "inputsplit", "cdcl"], default="auto")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--limit", type=_pos_int, help="only the first N instances of the csv")
    b.add_argument("--plot", help="cactus plot PNG (default: next to the results csv)")
    b.add_argument("--no-plot", action="store_true", help="do not draw the cactus plot")
    b.add_argument("--results-dir", help="also keep each instance's VNN-COMP results file here")
    b.add_argument("--retry-errors", action="store_true",
                   help="rerun instances whose row says 'error'")
    b.add_argument("--merge", action="append", default=[], metavar="RESULTS.csv",
                   help="import the rows of another results csv first (e.g. the shards of a "
                   "distributed run); repeatable")
    b.add_argument("--report-only", action="store_true",
                   help="run nothing: summarize and plot the results csv")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--worker", help=argparse.SUPPRESS)  # MODULE:FUNC replacing the worker (tests)
    return b


def _paths(output: str) -> tuple[str, str]:
    stem = output[:-4] if output.endswith(".csv") else output
    return stem + ".summary.json", stem + ".png"


def cmd_bench(args) -> int:
    """Run the ``bench`` subcommand; return the exit code (0 when the run completed)."""
    from .compare import format_summary, summarize
    from .executors import make_executor
    from .reference import Reference, judge
    from .runner import (read_instances, read_results, run_suite, run_verify_process,
                         select_shard, write_results)

    instances = read_instances(args.instances, args.benchmarks_root)
    if args.limit:
        instances = instances[:args.limit]
    instances = select_shard(instances, args.shard)
    reference = Reference.load(args.reference) if args.reference else None
    out = args.output
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    if args.merge:
        rows = read_results(out)
        have = {(r["onnx"], r["vnnlib"]) for r in rows}
        for path in args.merge:
            if not os.path.exists(path):
                raise DpllnnError(f"{path}: no such results csv")
            for r in read_results(path):
                if (r["onnx"], r["vnnlib"]) not in have:
                    have.add((r["onnx"], r["vnnlib"]))
                    rows.append(r)
        write_results(out, rows)
    worker = run_verify_process
    if args.worker:
        mod, _, fn = args.worker.partition(":")
        worker = getattr(importlib.import_module(mod), fn)
    if not args.report_only:
        with make_executor(args.executor, args.workers) as ex:
            run_suite(instances, out, ex, worker=worker, reference=reference,
                      timeout_scale=args.timeout_scale, seed=args.seed, mode=args.mode,
                      verify_workers=args.verify_workers, retry_errors=args.retry_errors,
                      results_dir=args.results_dir, progress=not args.quiet)
    all_rows = read_results(out)
    if reference is not None:  # (re)judge every row, also those of earlier runs
        for r in all_rows:
            ref = reference.lookup(r["onnx"], r["vnnlib"])
            r["expected"] = ref.expected if ref is not None else ""
            r["correct"] = judge(r.get("result", ""), r["expected"])
        write_results(out, all_rows)
    keys = {inst.key for inst in instances}
    rows = [r for r in all_rows if (r["onnx"], r["vnnlib"]) in keys]
    summary = summarize(rows, reference)
    summary["instances_csv"] = os.path.abspath(args.instances)
    summary["missing"] = len(keys) - len({(r["onnx"], r["vnnlib"]) for r in rows})
    summary_path, plot_default = _paths(out)
    if not args.no_plot:
        try:
            from .plot import cactus_plot
            summary["plot"] = cactus_plot(rows, args.plot or plot_default, reference,
                                          title=os.path.basename(args.instances))
        except ImportError:
            print("dpllnn bench: matplotlib missing, no cactus plot "
                  "(pip install 'dpllnn[bench]')", file=sys.stderr)
    from ..io.witness import atomic_write_text
    atomic_write_text(summary_path, json.dumps(summary, indent=1) + "\n")
    print(format_summary(summary))
    if summary["missing"]:
        print(f"missing: {summary['missing']} instance(s) without a row", file=sys.stderr)
    print(f"results {out}; summary {summary_path}" +
          (f"; plot {summary['plot']}" if "plot" in summary else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m dpllnn.bench``), same exit codes as ``dpllnn``."""
    parser = argparse.ArgumentParser(prog="dpllnn")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bench_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "bench":
        argv = ["bench"] + argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        return cmd_bench(args)
    except DpllnnError as e:
        print(f"dpllnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dpllnn: interrupted", file=sys.stderr)
        return 130
