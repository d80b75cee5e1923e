"""``dpllnn prune | slice | slice-eval | equiv``: argument parsing and printing for dpllnn.reduce.

Wired into :mod:`dpllnn.cli` with ``add_reduce_parsers(sub)`` and the four ``cmd_*`` functions.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from ..errors import DpllnnError, InputFileError

from ..argtypes import nonneg_float as _nonneg_float
from ..argtypes import positive_float as _pos_float
from ..argtypes import positive_int as _pos_int

__all__ = ["add_reduce_parsers", "cmd_prune", "cmd_slice", "cmd_slice_eval", "cmd_equiv"]








def add_reduce_parsers(subparsers) -> None:
    """Register ``prune``, ``slice``, ``slice-eval`` and ``equiv`` on an argparse subparsers."""
    p = subparsers.add_parser("prune", help="smaller network, equivalent on a region")
    p.add_argument("network", help="ONNX file")
    p.add_argument("--region", required=True, help="VNN-LIB property (its input boxes) or JSON box")
    p.add_argument("-o", "--output", required=True, help="pruned ONNX file")
    p.add_argument("--certificate", help="write the stable sets, steps and equivalence proof here")
    p.add_argument("--budget", type=_nonneg_float, default=10.0,
                   help="MILP time for near-stable neurons, s (default 10)")
    p.add_argument("--refine", type=_pos_int, default=1,
                   help="certify stability on up to R sub-boxes of each region box (default 1)")
    p.add_argument("--eps", type=_pos_float, default=None,
                   help="also remove/linearise neurons while max |N - N'| <= EPS is proved")
    p.add_argument("--eps-budget", type=_nonneg_float, default=30.0, help="time for --eps, s")
    p.add_argument("--equiv-timeout", type=_nonneg_float, default=60.0,
                   help="time for the final equivalence proof, s (0: skip it)")
    p.add_argument("--dtype", choices=["float64", "float32"], default=None,
                   help="ONNX tensor type (default: the source model's, so the output is a "
                        "drop-in replacement; float64 keeps the folded weights exact)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    s = subparsers.add_parser("slice", help="cover a region with boxes, prune on each")
    s.add_argument("network")
    s.add_argument("--region", required=True, help="VNN-LIB property or JSON box")
    s.add_argument("--max-regions", type=_pos_int, default=16)
    s.add_argument("-o", "--output", required=True, help="output directory (manifest.json + ONNX)")
    s.add_argument("--budget", type=_nonneg_float, default=1.0, help="MILP time per slice, s")
    s.add_argument("--refine", type=_pos_int, default=1,
                   help="certify each slice on up to R sub-boxes (default 1)")
    s.add_argument("--refine-until", type=_nonneg_float, default=None,
                   help="re-certify a slice keeping > F x the ReLUs with 4x the sub-boxes (to 256)")
    s.add_argument("--equiv-timeout", type=_nonneg_float, default=30.0,
                   help="time to prove each slice equivalent, s (0: skip; proved=false)")
    s.add_argument("--seed-boxes", help="JSON list of boxes tiling the region (e.g. from verify)")
    s.add_argument("--dtype", choices=["float64", "float32"], default=None,
                   help="ONNX tensor type of the slices (default: the source model's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true")

    e = subparsers.add_parser("slice-eval", help="evaluate a sliced family at a point")
    e.add_argument("directory", help="directory written by `dpllnn slice`")
    e.add_argument("x", help="comma/space separated values, or a .json/.npy/.txt file")
    e.add_argument("--onnxruntime", action="store_true", help="run the slice in onnxruntime")
    e.add_argument("--json", action="store_true")

    q = subparsers.add_parser("equiv", help="prove two networks equivalent on a region")
    q.add_argument("network_a")
    q.add_argument("network_b")
    q.add_argument("--region", required=True, help="VNN-LIB property or JSON box")
    q.add_argument("--eps", type=_pos_float, default=None,
                   help="tolerance (default 1e-6 * (1 + max |N_A| on sampled points))")
    q.add_argument("--timeout", type=_pos_float, default=60.0)
    q.add_argument("--budget", type=_nonneg_float, default=5.0,
                   help="MILP time for N_A's stable sets (used by the proof), s")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--emit-query", metavar="Q.vnnlib",
                   help="also write the question as a VNN-LIB 2.0 query over networks A and B "
                        "(dpllnn verify Q.vnnlib --network A=... --network B=...: unsat iff "
                        "equivalent)")
    q.add_argument("--json", action="store_true")


def _load_net(path):
    from ..errors import OnnxError
    from ..io.onnx_load import load_onnx
    net = load_onnx(path)
    if getattr(net, "is_graph", False):
        # the reductions rewrite dense layers (fold / lump / slice); a graph has none to rewrite
        raise OnnxError(path, "prune, slice and equiv take only chains of dense layers; this "
                        "network is a graph (conv / residual)")
    return net


def _region(path, net):
    from .stable import load_region
    if not os.path.exists(path):
        raise InputFileError(path, "no such file")
    return load_region(path, net)


def cmd_prune(args) -> int:
    from .equiv import check_equivalence, default_eps
    from .export import interface_of, write_like, write_reduced
    from .prune import prune_network
    from .stable import certify_stable

    net = _load_net(args.network)
    boxes = _region(args.region, net)
    st = certify_stable(net, boxes, budget_s=args.budget, seed=args.seed, refine=args.refine)
    changes = []
    if args.eps:
        from .tolerance import prune_with_tolerance
        small, rep, changes = prune_with_tolerance(net, st, boxes, args.eps,
                                                   budget_s=args.eps_budget, seed=args.seed)
    else:
        small, rep = prune_network(net, st)
    eq = None
    tiling = st.cert_boxes if args.refine > 1 else None
    eps = args.eps or default_eps(net, boxes, seed=args.seed)
    # the proof is made on the file as written (float32 rounds folded weights)
    if args.eps or args.equiv_timeout <= 0:
        small = write_like(small, interface_of(args.network), args.output, dtype=args.dtype)
    else:
        small, again = write_reduced(net, st, small, interface_of(args.network), args.output,
                                     boxes, args.dtype, eps, tiling, args.seed)
        rep = again or rep
    if args.equiv_timeout > 0:
        eq = check_equivalence(net, small, boxes, eps, timeout_s=args.equiv_timeout,
                               seed=args.seed, phases=[st.phase] * len(boxes),
                               tiling=tiling)
    doc = {"source": os.path.abspath(args.network), "region": os.path.abspath(args.region),
           "output": os.path.abspath(args.output), "prune": rep.to_json(),
           "eps_changes": changes, "equivalence": None if eq is None else eq.to_json(),
           "stable": st.to_json()}
    if args.certificate:
        with open(args.certificate, "w") as f:
            json.dump(doc, f, indent=1)
    if args.json:
        doc.pop("stable")
        doc["stable_summary"] = st.counts()
        print(json.dumps(doc))
        return 0
    print(f"pruned {args.network} -> {args.output} ({rep.time_s + st.time_s:.2f} s)")
    for line in rep.lines():
        print("  " + line)
    c = st.counts()
    print(f"  stable     {c['active']} active, {c['inactive']} inactive, {c['unstable']} unstable, "
          f"{c['unknown']} undecided; proofs {c['by']}")
    if eq is not None:
        print(f"  equivalence {eq.verdict} (eps {eq.eps:.3g}, by {eq.how}, {eq.time_s:.2f} s)")
    return 0


def cmd_slice(args) -> int:
    from .export import interface_of
    from .slice import slice_network

    net = _load_net(args.network)
    boxes = _region(args.region, net)
    seed_boxes = None
    if args.seed_boxes:
        from .stable import load_region
        seed_boxes = load_region(args.seed_boxes, net)
    man = slice_network(net, boxes, args.max_regions, args.output, budget_s=args.budget,
                        equiv=args.equiv_timeout > 0, equiv_timeout_s=args.equiv_timeout,
                        seed_boxes=seed_boxes, source=os.path.abspath(args.network), seed=args.seed,
                        refine=args.refine, refine_until=args.refine_until,
                        interface=interface_of(args.network), dtype=args.dtype)
    rel = [r["relus"] for r in man["regions"]]
    proved = sum(bool(r["proved"]) for r in man["regions"])
    summary = {"directory": os.path.abspath(args.output), "regions": len(rel),
               "relus_source": net.n_relus, "relus_mean": float(np.mean(rel)),
               "relus_max": int(max(rel)), "proved": proved, "time_s": man["time_s"]}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{len(rel)} slices in {args.output} ({man['time_s']:.2f} s)")
    print(f"  ReLUs per slice: mean {np.mean(rel):.1f}, max {max(rel)} of {net.n_relus} "
          f"({100 * np.mean(rel) / max(net.n_relus, 1):.1f}% on average)")
    print(f"  proved equivalent: {proved}/{len(rel)}")
    return 0


def _parse_point(text: str) -> np.ndarray:
    if os.path.exists(text):
        try:
            if text.endswith(".npy"):
                return np.load(text).astype(np.float64).reshape(-1)
            if text.endswith(".json"):
                with open(text) as f:
                    return np.asarray(json.load(f), dtype=np.float64).reshape(-1)
            with open(text) as f:
                text = f.read()
        except (OSError, ValueError) as e:
            raise InputFileError(text, f"cannot read the point: {e}") from None
    try:
        return np.array([float(v) for v in text.replace(",", " ").split()], dtype=np.float64)
    except ValueError:
        raise DpllnnError(f"not a list of numbers: {text[:60]!r}") from None


def cmd_slice_eval(args) -> int:
    from .slice import SliceFamily

    fam = SliceFamily(args.directory)
    x = _parse_point(args.x)
    i, y = fam.evaluate(x, "onnxruntime" if args.onnxruntime else "float64")
    if args.json:
        print(json.dumps({"region": i, "onnx": fam.regions[i]["onnx"], "y": [float(v) for v in y]}))
    else:
        print(" ".join(f"{v:.17g}" for v in y))
        print(f"region {i} ({fam.regions[i]['onnx']})")
    return 0


def cmd_equiv(args) -> int:
    from .equiv import check_equivalence
    from .stable import certify_stable

    a, b = _load_net(args.network_a), _load_net(args.network_b)
    if (a.n_inputs, a.n_outputs) != (b.n_inputs, b.n_outputs):
        from ..errors import ShapeMismatch
        raise ShapeMismatch(f"{args.network_a} is {a.n_inputs}->{a.n_outputs}, "
                            f"{args.network_b} is {b.n_inputs}->{b.n_outputs}")
    boxes = _region(args.region, a)
    eps = args.eps
    if args.emit_query:
        from ..io.atomic import atomic_write_text
        from ..query import model_types
        from .equiv import default_eps
        from .equiv_query import equivalence_query

        if eps is None:      # the value check_equivalence would choose, so both agree
            eps = default_eps(a, boxes, seed=args.seed)
        types = model_types(args.network_a) + model_types(args.network_b)
        atomic_write_text(args.emit_query, equivalence_query(
            boxes, eps, a.input_shape, a.output_shape, types))
        print(f"dpllnn: wrote {args.emit_query}; decide it with: dpllnn verify "
              f"{args.emit_query} --network A={args.network_a} --network B={args.network_b}",
              file=sys.stderr)
    phases = [certify_stable(a, [bx], budget_s=args.budget / len(boxes), seed=args.seed).phase
              for bx in boxes]
    res = check_equivalence(a, b, boxes, eps, timeout_s=args.timeout, seed=args.seed,
                            phases=phases)
    if args.json:
        print(json.dumps(res.to_json()))
        return 0
    print(res.verdict)
    print(f"eps {res.eps:.6g}, proof/search {res.how}, max |diff| seen {res.max_diff_seen:.3g}, "
          f"time {res.time_s:.2f} s")
    if res.x is not None:
        print("counterexample x = " + " ".join(f"{v:.17g}" for v in res.x))
        print("difference = " + " ".join(f"{v:.6g}" for v in res.diff))
    return 0
