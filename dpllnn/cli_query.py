"""The VNN-LIB 2.0 standard's solver interface: ``verify QUERY --network NAME=MODEL``,
``supports --CAPABILITY``, ``--name``.  Parsing and printing only (chapter "Command-line
Interface" of the VNN-LIB 2.0 standard); the work is in :mod:`dpllnn.query`.
"""
from __future__ import annotations

import json
import sys
import time

from .errors import DpllnnError

__all__ = ["add_supports_parser", "cmd_supports", "cmd_verify_query", "network_mapping",
           "CAPABILITIES", "SOLVER_NAME"]

SOLVER_NAME = "dpllnn"

#: the opset onnxruntime starts at: every ``sat`` is replayed in onnxruntime
_MIN_OPSET = 7


def _onnx_opsets():
    import onnx
    return [str(_MIN_OPSET), str(onnx.defs.onnx_opset_version())]


def _onnx_operators():
    from .io.onnx_graph import GRAPH_OPS
    return sorted(GRAPH_OPS)


# Answers of ``supports``: what dpllnn does, not what it might.  Element types: the search
# reasons over the reals (float64 with an outward rounding margin on the model's weights), and
# float rounding inside the network is not modelled, so only ``real`` is sound to claim.
CAPABILITIES = {
    "onnx-opset-versions": _onnx_opsets,
    "onnx-element-types": lambda: ["real"],
    "onnx-operators": _onnx_operators,
    "vnnlib-versions": lambda: ["1.0", "2.0"],
    "hidden-node-theories": lambda: ["NH"],
    "multiple-input-output-theories": lambda: ["SIO"],
    "multiple-network-theories": lambda: ["SNET", "MENET", "MINET", "MNET"],
    "multiple-node-comparison-theories": lambda: ["SNC", "MNC"],
    "arithmetic-complexity-theories": lambda: ["BND", "OUTC", "LIN"],
    "optimised-disjunctive-reasoning": lambda: ["false"],   # properties become DNF cases
    "serialise-assignments": lambda: ["false"],
}


def add_supports_parser(sub) -> None:
    """Register ``supports`` (one capability flag, answered on stdout one item a line)."""
    s = sub.add_parser("supports", help="report a capability (VNN-LIB 2.0 solver interface)")
    g = s.add_mutually_exclusive_group(required=True)
    for cap in CAPABILITIES:
        g.add_argument(f"--{cap}", dest="capability", action="store_const", const=cap)


def cmd_supports(args) -> int:
    for line in CAPABILITIES[args.capability]():
        print(line)
    return 0


def network_mapping(items) -> dict:
    """``["f=a.onnx", ...]`` -> ``{"f": "a.onnx"}``; DpllnnError on a malformed or repeated
    name."""
    out = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise DpllnnError(f"--network {item}: expected NAME=MODEL.onnx")
        if name in out:
            raise DpllnnError(f"--network {name} given twice")
        out[name] = path
    return out


def progress_interval(args) -> float | None:
    """Seconds between ``verify`` progress lines (``--progress-interval``, else 2 s with
    ``-v``/``--progress``), or None for none."""
    if args.progress_interval is not None:
        return args.progress_interval
    return 2.0 if args.progress else None


def cmd_verify_query(args, query_path: str, mapping: dict) -> int:
    """``verify`` on a VNN-LIB 2.0 query: first stdout line ``sat`` / ``unsat`` / ``unknown`` /
    ``timed-out``, then for ``sat`` the assignment; a summary goes to stderr."""
    from . import START_MONOTONIC
    from .io.atomic import atomic_write_text
    from .io.vnnlib2 import parse_query
    from .query import STANDARD_VERDICTS, format_assignment, solve_query
    from .search.portfolio import default_workers

    t0 = START_MONOTONIC
    query = parse_query(query_path)
    if mapping is None:          # NET.onnx QUERY.vnnlib: the query's only network
        if len(query.networks) != 1:
            raise DpllnnError(f"{query_path} declares {len(query.networks)} networks: give "
                              "each model with --network NAME=MODEL.onnx")
        mapping = {query.networks[0].name: args.network}
    workers = args.workers if args.workers is not None else default_workers()
    remaining = max(0.0, args.timeout - (time.monotonic() - t0))
    qres = solve_query(query, mapping, timeout_s=remaining, seed=args.seed, workers=workers,
                       mode=args.mode, memory_limit_mb=args.memory_limit,
                       parallel=args.parallel, progress_s=progress_interval(args))
    res = qres.result
    res.time_s = time.monotonic() - t0
    lines = [STANDARD_VERDICTS[res.verdict]]
    if qres.assignment is not None:
        lines += format_assignment(query, qres.assignment)
    text = "\n".join(lines) + "\n"
    if args.results_file:
        atomic_write_text(args.results_file, text)
    if args.json:
        out = res.to_json()
        out["result"] = lines[0]
        out["assignment"] = (None if qres.assignment is None else
                             {k: [float(x) for x in v] for k, v in qres.assignment.items()})
        print(json.dumps(out))
    else:
        sys.stdout.write(text)
    st = res.stats
    bits = [f"time {res.time_s:.3f} s"] + [f"{k} {st[k]}" for k in
                                            ("mode", "networks", "shared_inputs", "nodes",
                                             "conflicts") if k in st]
    if any(v.dtype != "real" for v in query.variables):
        bits.append("element types analysed over the reals (rounding inside the networks is "
                    "not modelled; sat is replayed in onnxruntime)")
    print("dpllnn: " + ", ".join(bits) + (f"; {res.reason}" if res.reason else ""),
          file=sys.stderr)
    return 0
