"""VNN-LIB 1.0 against its VNN-LIB 2.0 conversion (issue: VNN-LIB 2.0 front end).

    python benchmarks/vnnlib2_agreement.py conversions [--root DIR]
    python benchmarks/vnnlib2_agreement.py verdicts LIST.csv [--root DIR] [--timeout S]
                                                   [--skip N] [--limit N] [--workers N]

``conversions``: every ``.vnnlib`` under the benchmarks root, converted to a single-network
2.0 query (``tests/vnnlib_convert.py``), must give the same cases and disjuncts through
``dpllnn.io.vnnlib2.parse_query`` as through the 1.0 parser; prints the counts.

``verdicts``: each instance of a list (``benchmarks/vnncomp/instances/*.csv``) is verified twice
in this process, as ``NET.onnx PROP.vnnlib`` (1.0) and as the converted query with
``--network N=NET.onnx`` (the 2.0 path: parse, bind, lower, search); prints both verdicts and
times per instance (each from reading the files to the verdict), the disagreements (a decided answer against a different decided answer
is a bug) and the time ratio.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))   # the converter and the canonical forms


def _root(arg):
    return Path(arg) if arg else HERE.parent.parent / "shared" / "benchmarks"


def conversions(root: Path) -> int:
    from dpllnn.io.vnnlib import parse_vnnlib
    from dpllnn.io.vnnlib2 import parse_query
    from test_vnnlib import canon, canon_query
    from vnnlib_convert import convert

    files = sorted(root.rglob("*.vnnlib"))
    agree, bad, t0 = 0, [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        q2 = Path(tmp) / "q.vnnlib"
        for f in files:
            spec = parse_vnnlib(f)
            q2.write_text(convert(f.read_text(), spec.n_inputs, spec.n_outputs))
            if canon_query(parse_query(q2)) == canon(spec):
                agree += 1
            else:
                bad.append(str(f))
    print(f"{agree} of {len(files)} properties agree ({len(bad)} disagree) "
          f"in {time.perf_counter() - t0:.1f} s")
    for b in bad[:20]:
        print("  disagree:", b)
    return 1 if bad else 0


def _io_shapes(path):
    """The model's declared input and output shapes (a 2.0 declaration must match them)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}

    def dims(v):
        return [d.dim_value if d.dim_value > 0 else 1 for d in v.type.tensor_type.shape.dim]

    real_in = [v for v in g.input if v.name not in inits]
    return dims(real_in[0]), dims(g.output[0])


def verdicts(listing: Path, root: Path, timeout_s: float, limit: int | None,
             workers: int, skip: int = 0) -> int:
    from dpllnn.io.onnx_load import load_onnx
    from dpllnn.io.vnnlib import parse_vnnlib
    from dpllnn.io.vnnlib2 import parse_query
    from dpllnn.query import solve_query
    from dpllnn.search.verify import verify
    from vnnlib_convert import convert

    rows = list(csv.DictReader(listing.open()))[skip:]
    rows = rows[:limit]
    decided = {"1.0": 0, "2.0": 0}
    clash, ratios, t1s, t2s = [], [], [], []
    print(f"{'instance':58s} {'1.0':>8s} {'t1 s':>7s} {'2.0':>8s} {'t2 s':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        q2 = Path(tmp) / "q.vnnlib"
        for r in rows:
            onnx_p, prop = root / r["onnx"], root / r["vnnlib"]
            t = time.monotonic()      # both times include reading the model and the property
            net = load_onnx(str(onnx_p))
            spec = parse_vnnlib(prop, net.n_inputs, net.n_outputs)
            v1 = verify(net, spec, timeout_s=timeout_s, workers=workers, seed=0).verdict.value
            t1 = time.monotonic() - t
            ishape, oshape = _io_shapes(onnx_p)
            q2.write_text(convert(prop.read_text(), spec.n_inputs, spec.n_outputs,
                                  input_shape=ishape, output_shape=oshape))
            t = time.monotonic()      # (the conversion itself is not timed)
            v2 = solve_query(parse_query(q2), {"N": str(onnx_p)}, timeout_s=timeout_s,
                             workers=workers, seed=0).result.verdict.value
            t2 = time.monotonic() - t
            name = f"{Path(r['onnx']).stem[:30]} {Path(r['vnnlib']).stem}"
            print(f"{name:58s} {v1:>8s} {t1:7.2f} {v2:>8s} {t2:7.2f}", flush=True)
            for key, v in (("1.0", v1), ("2.0", v2)):
                decided[key] += v in ("sat", "unsat")
            if v1 in ("sat", "unsat") and v2 in ("sat", "unsat") and v1 != v2:
                clash.append(name)
            if v1 in ("sat", "unsat") and v1 == v2:
                ratios.append(t2 / max(t1, 1e-3))
                t1s.append(t1)
                t2s.append(t2)
    print(f"\n{len(rows)} instances, timeout {timeout_s} s, {workers} worker(s): decided "
          f"1.0 {decided['1.0']}, 2.0 {decided['2.0']}; contradictions {len(clash)} {clash}")
    if ratios:
        print(f"on the {len(ratios)} decided by both the same: total 1.0 {sum(t1s):.1f} s, "
              f"2.0 {sum(t2s):.1f} s; time ratio 2.0/1.0 median {statistics.median(ratios):.3f}"
              f" (min {min(ratios):.3f}, max {max(ratios):.3f})")
    return 1 if clash else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("conversions")
    c.add_argument("--root")
    v = sub.add_parser("verdicts")
    v.add_argument("listing", type=Path)
    v.add_argument("--root")
    v.add_argument("--timeout", type=float, default=10.0)
    v.add_argument("--limit", type=int, default=None)
    v.add_argument("--skip", type=int, default=0, help="leave out the first N instances")
    v.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)
    if a.what == "conversions":
        return conversions(_root(a.root))
    return verdicts(a.listing, _root(a.root), a.timeout, a.limit, a.workers, a.skip)


if __name__ == "__main__":
    sys.exit(main())
