"""Command-line interface: argument parsing and printing only.

Exit codes: 0 when a verdict (or the requested output) was produced, 2 for bad input or usage
(one line on stderr naming the file, and line or node), 1 for an internal error (never a verdict).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _workers
from .errors import DpllnnError






def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpllnn", description="Complete verifier for ReLU networks "
                                "(ONNX + VNN-LIB). sat = counterexample found; unsat = proved.")
    from . import __version__
    from .cli_query import SOLVER_NAME
    # the VNN-LIB 2.0 solver interface's global options: the bare version string, the name
    p.add_argument("--version", action="version", version=__version__)
    p.add_argument("--name", action="version", version=SOLVER_NAME,
                   help="show the solver's name and exit")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verify", help="decide a VNN-LIB property on an ONNX network, or a "
                       "VNN-LIB 2.0 query on the networks given with --network")
    v.add_argument("network", metavar="NET.onnx|QUERY.vnnlib",
                   help="ONNX file, or the VNN-LIB 2.0 query (with --network)")
    v.add_argument("spec", nargs="?", metavar="PROP.vnnlib",
                   help="VNN-LIB file (describes the unsafe set); 1.0, or 2.0 with one network")
    v.add_argument("--network", dest="network_map", action="append", metavar="NAME=MODEL.onnx",
                   help="the model of a network the VNN-LIB 2.0 query declares (repeat per "
                        "network; not for equal-to networks)")
    v.add_argument("--timeout", type=_positive_float, default=60.0, help="wall-clock limit, s")
    v.add_argument("--results-file", help="write the VNN-COMP results file here (atomically)")
    v.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    v.add_argument("--seed", type=int, default=0, help="random seed (runs are reproducible)")
    v.add_argument("--workers", type=_workers, default=None,
                   help="parallel worker processes (default: all cores)")
    v.add_argument("--mode", choices=["auto", "inputsplit", "cdcl"], default="auto",
                   help="search strategy (auto: input splitting for <= 20 inputs, handed to "
                        "CDCL after 10%% of the time when <= 12 ReLUs are unstable at the root; "
                        "else CDCL)")
    from .search.portfolio import SCHEMES
    v.add_argument("--parallel", choices=SCHEMES, default=None,
                   help="how CDCL workers share a case (default: hybrid -- one worker searches "
                        "the whole case and takes the phase cubes the others prove as lemmas)")
    v.add_argument("--memory-limit", type=_positive_float, default=None, metavar="MB",
                   help="resident memory of the run, all workers included; above it the "
                        "answer is unknown (default: 75%% of physical memory)")
    v.add_argument("-v", "--progress", action="store_true",
                   help="print a progress line on stderr every few seconds (elapsed, stage, "
                        "nodes, conflicts, learned clauses, proved cubes or input volume, "
                        "lowest open lower bound); stdout keeps only the answer")
    v.add_argument("--progress-interval", type=_positive_float, default=None, metavar="S",
                   help="seconds between progress lines (default 2; implies --progress)")

    i = sub.add_parser("info", help="print shapes, layers, ReLUs (and the property's cases)")
    i.add_argument("network")
    i.add_argument("spec", nargs="?")
    i.add_argument("--json", action="store_true")

    b = sub.add_parser("bounds", help="sound bounds on every layer and on each disjunct")
    b.add_argument("network")
    b.add_argument("spec")
    b.add_argument("--method", choices=["ibp", "symbolic", "crown", "alpha"], default="crown")
    b.add_argument("--json", action="store_true")

    from .cli_query import add_supports_parser
    add_supports_parser(sub)
    from .bench.cli_bench import add_bench_parser
    add_bench_parser(sub)
    from .reduce.cli_reduce import add_reduce_parsers
    add_reduce_parsers(sub)
    return p


# commands that import neither onnx nor the search
_LIGHT_COMMANDS = frozenset({"supports"})


def _preload() -> None:
    """Import the heavy modules before the signal handlers are installed.  Until then SIGTERM
    and SIGINT keep their default action, so the kernel ends the process at once (no worker and
    no file exist yet); a Python-level handler instead waits until the C code of an import
    returns, and ``import onnx`` held the GIL for over 1 s on a loaded machine (4 of 20 SIGTERMs
    took more than 1 s, each inside it)."""
    import importlib

    for name in ("numba", "onnx", "onnxruntime", "dpllnn.io.onnx_load", "dpllnn.search.verify"):
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: usage errors exit 2, --help/--version exit 0
        return int(e.code or 0)
    from . import limits
    if args.command not in _LIGHT_COMMANDS:
        _preload()
    limits.install_signal_handlers()   # SIGTERM/SIGINT -> limits.Interrupted in this thread
    try:
        return _COMMANDS[args.command](args)
    except DpllnnError as e:
        print(f"dpllnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:   # limits.Interrupted (SIGTERM/SIGINT) or a plain Ctrl-C
        limits.kill_descendants(wait_s=0.2)
        print(f"dpllnn: {e or 'interrupted'}", file=sys.stderr)
        code = getattr(e, "exit_code", 130)
        if argv is None:             # the command line, not a call from Python: end at once
            limits.exit_now(code)
        return code
    except Exception as e:  # internal error: report, never a verdict
        if os.environ.get("DPLLNN_DEBUG"):
            traceback.print_exc()
        print(f"dpllnn: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


def _load(args, need_spec=True):
    from .io.onnx_load import load_onnx
    from .io.vnnlib import parse_vnnlib   # also .vnnlib.gz

    net = load_onnx(args.network)
    spec = None
    if getattr(args, "spec", None):
        spec = parse_vnnlib(args.spec, n_inputs=net.n_inputs, n_outputs=net.n_outputs)
    elif need_spec:
        raise DpllnnError("a VNN-LIB property is required")
    return net, spec


def cmd_verify(args) -> int:
    from .cli_query import cmd_verify_query, network_mapping, progress_interval
    from .io.vnnlib2 import is_vnnlib2
    from .io.witness import write_results_file
    from .search.verify import verify

    if args.network_map or args.spec is None:      # the standard form: QUERY --network ...
        if args.spec is not None:
            raise DpllnnError("give either NET.onnx PROP.vnnlib or QUERY.vnnlib --network "
                              "NAME=MODEL.onnx, not both")
        if not is_vnnlib2(args.network):
            raise DpllnnError(f"{args.network}: not a VNN-LIB 2.0 query (no (vnnlib-version "
                              "<2.0>) header); a 1.0 property takes dpllnn verify NET.onnx "
                              "PROP.vnnlib")
        return cmd_verify_query(args, args.network, network_mapping(args.network_map))
    if is_vnnlib2(args.spec):
        return cmd_verify_query(args, args.spec, None)

    from . import START_MONOTONIC

    t0 = START_MONOTONIC  # the timeout covers start-up and loading too
    net, spec = _load(args)
    from .jitcache import kernels_cached
    if not kernels_cached():
        print("dpllnn: compiling the bound kernels (numba; once, then cached: `./run.sh setup` "
              "does it ahead), 20-60 s ...", file=sys.stderr)
    remaining = max(0.0, args.timeout - (time.monotonic() - t0))
    from .search.portfolio import default_workers
    workers = args.workers if args.workers is not None else default_workers()
    result = verify(net, spec, timeout_s=remaining, seed=args.seed, workers=workers,
                    mode=args.mode, memory_limit_mb=args.memory_limit, parallel=args.parallel,
                    progress_s=progress_interval(args))
    result.time_s = time.monotonic() - t0
    if args.results_file:
        write_results_file(args.results_file, result)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(result.verdict.value)
        st = result.stats
        bits = [f"time {result.time_s:.3f} s"]
        for key in ("mode", "nodes", "conflicts", "implied", "stable", "restarts", "lp_calls"):
            if key in st:
                bits.append(f"{key} {st[key]}")
        print(", ".join(bits))
        if result.reason:
            print(f"reason: {result.reason}")
        if result.counterexample is not None:
            cex = result.counterexample
            print("counterexample x = " + " ".join(f"{v:.9g}" for v in cex.x[:16])
                  + (" ..." if cex.x.size > 16 else ""))
            print("output y = " + " ".join(f"{v:.9g}" for v in cex.y))
    return 0


def cmd_info(args) -> int:
    net, spec = _load(args, need_spec=False)
    info = {"network": os.path.abspath(args.network), "input_shape": list(net.input_shape),
            "output_shape": list(net.output_shape), "n_inputs": net.n_inputs,
            "n_outputs": net.n_outputs, "n_relus": net.n_relus, "n_params": net.n_params}
    graph = getattr(net, "is_graph", False)
    if graph:
        info["nodes"] = [{"index": k, "op": type(nd.op).__name__.replace("InputOp", "Input"),
                          "inputs": list(nd.inputs), "shape": list(nd.shape),
                          "onnx_node": nd.name} for k, nd in enumerate(net.nodes)]
        info["relu_nodes"] = [{"node": k, "size": net.nodes[k].size} for k in net.relu_nodes]
    else:
        info["layers"] = [{"type": "affine", "in": a.n_in, "out": a.n_out} if k % 2 == 0 else
                          {"type": "relu", "size": a} for k, a in enumerate(_interleave(net))]
    if spec is not None:
        info["spec"] = {"path": os.path.abspath(args.spec), "cases": len(spec.cases),
                        "disjuncts": spec.n_disjuncts,
                        "disjuncts_per_case": [len(c.disjuncts) for c in spec.cases]}
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"network  {args.network}")
    print(f"  {net.summary()}")
    if graph:
        for nd in info["nodes"]:
            ins = ",".join(str(i) for i in nd["inputs"])
            print(f"  node {nd['index']:3d}  {nd['op']:<9s} {tuple(nd['shape'])!s:<18s}"
                  f"{'<- ' + ins if ins else '':<12s} {nd['onnx_node']}")
    else:
        print("  layers   " + " -> ".join(
            f"Affine({l['in']}->{l['out']})" if l["type"] == "affine" else "ReLU"
            for l in info["layers"]))
    if spec is not None:
        print(f"property {args.spec}")
        print(f"  {spec.summary()}")
    return 0


def _interleave(net):
    out = []
    for k, a in enumerate(net.affines):
        out.append(a)
        if k < len(net.affines) - 1:
            out.append(a.n_out)
    return out


def cmd_bounds(args) -> int:
    from .bounds.report import bounds_report

    net, spec = _load(args)
    rep = bounds_report(net, spec, method=args.method)
    if args.json:
        print(json.dumps(rep))
        return 0
    print(f"method {rep['method']}, time {rep['time_s']:.6f} s, unstable neurons {rep['unstable']}")
    for k, layer in enumerate(rep["layers"]):
        lo, hi = layer["lb"], layer["ub"]
        print(f"  layer {k}: {len(lo)} neurons, lb min {min(lo):.6g}, ub max {max(hi):.6g}")
    for ci, case in enumerate(rep["cases"]):
        for di, dj in enumerate(case["disjuncts"]):
            rows = ", ".join(f"[{l:.6g}, {u:.6g}]" for l, u in zip(dj["lower"], dj["upper"]))
            print(f"  case {ci} disjunct {di}: C@y-d in {rows}")
    return 0


def cmd_bench(args) -> int:
    from .bench.cli_bench import cmd_bench as _cmd_bench
    return _cmd_bench(args)


def cmd_reduce(args) -> int:
    from .reduce import cli_reduce as R
    return {"prune": R.cmd_prune, "slice": R.cmd_slice, "slice-eval": R.cmd_slice_eval,
            "equiv": R.cmd_equiv}[args.command](args)


def cmd_supports(args) -> int:
    from .cli_query import cmd_supports as _cmd_supports
    return _cmd_supports(args)


_COMMANDS = {"verify": cmd_verify, "supports": cmd_supports, "info": cmd_info, "bounds": cmd_bounds, "bench": cmd_bench,
             "prune": cmd_reduce, "slice": cmd_reduce, "slice-eval": cmd_reduce,
             "equiv": cmd_reduce}

if __name__ == "__main__":
    sys.exit(main())
