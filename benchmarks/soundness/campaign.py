"""Soundness campaign: random tiny networks and properties, dpllnn against an exact oracle.

Each instance is a random ReLU network (written as a float64 ONNX file) and a random VNN-LIB
property, both read back through dpllnn's own front ends; the ground truth comes from the
exhaustive oracle of ``tests/naive.py`` (every phase pattern, one LP each) or, for the
boundary families, from the construction itself.  dpllnn then runs in each requested mode and
every answer is judged:

* ``agree``      -- the verdict matches the truth (``sat`` needs a valid counterexample);
* ``DISAGREE``   -- ``unsat`` where a counterexample exists, ``sat`` where the oracle proves
                    ``unsat``, or ``sat`` with a counterexample that fails re-validation
                    (these are the bugs; the ONNX + VNN-LIB files are kept for reproduction);
* ``undecided``  -- ``timeout`` / ``unknown`` (never wrong, but counted);
* ``boundary``   -- the oracle's margin is within LP tolerance of 0: any definitive verdict with a
                    valid witness is accepted;
* ``oracle_wrong`` -- ``sat`` with a witness that is exact in rational arithmetic where the LP
                    oracle claimed ``unsat`` (badly scaled LPs): an oracle failure;
* ``unjudged``   -- the LP oracle failed numerically: only ``sat`` witnesses are checked;
* ``overtime``   -- the call outlived its timeout by more than ``--slack`` seconds;
* ``ERROR``      -- an exception (kept for reproduction).

Usage (from the repository root; on demand, not in CI -- the CI version is
``tests/test_soundness_campaign.py``)::

    .venv/bin/python benchmarks/soundness/campaign.py --n 2000 --seed 1 --jobs 2
    .venv/bin/python benchmarks/soundness/campaign.py --n 300 --modes cdcl --max-relus 10
    .venv/bin/python benchmarks/soundness/campaign.py --n 200 --peer auto   # differential

``--peer auto`` runs nnenum when it is importable; ``--peer-cmd 'tool {onnx} {vnnlib} {out}
{timeout}'`` runs any tool that writes a VNN-COMP results file.  Peer answers are judged
against the same oracle and listed beside dpllnn's.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
for p in (str(REPO), str(REPO / "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

FAMILIES = ["random", "dup", "zero_rows", "huge", "tiny", "mixed_scale", "zero_width", "point",
            "empty", "boundary_sat", "boundary_unsat", "multi_case", "wide_input"]
MODES = ["inputsplit", "cdcl", "auto"]


# ---- instance generation ------------------------------------------------------------------------
def _hidden(rng, max_relus):
    depth = int(rng.integers(1, 4))
    sizes = []
    for _ in range(depth):
        left = max_relus - sum(sizes)
        if left < 1:
            break
        sizes.append(int(rng.integers(1, min(4, left) + 1)))
    return tuple(sizes)


def _net(rng, n_in, hidden, n_out, scale=1.0):
    from naive import random_network
    return random_network(rng, n_in=n_in, hidden=hidden, n_out=n_out, scale=scale)


def _int_net(rng, n_in, hidden, n_out):
    from dpllnn.network import Affine, Network
    sizes = [n_in, *hidden, n_out]
    return Network([Affine(rng.integers(-2, 3, (sizes[k + 1], sizes[k])).astype(float),
                           rng.integers(-2, 3, sizes[k + 1]).astype(float))
                    for k in range(len(sizes) - 1)])


def _duplicate_neuron(rng, net):
    """Duplicate one hidden neuron (function-preserving: the outgoing weight is halved)."""
    from dpllnn.network import Affine, Network
    affs = list(net.affines)
    k = int(rng.integers(0, len(affs) - 1))
    A, B = affs[k], affs[k + 1]
    j = int(rng.integers(0, A.n_out))
    W = np.vstack([A.W, A.W[j:j + 1]])
    b = np.concatenate([A.b, A.b[j:j + 1]])
    W2 = np.hstack([B.W, B.W[:, j:j + 1] * 0.5])
    W2[:, j] *= 0.5
    affs[k], affs[k + 1] = Affine(W, b), Affine(W2, B.b)
    return Network(affs)


def _zero_rows(rng, net):
    from dpllnn.network import Affine, Network
    affs = []
    for k, a in enumerate(net.affines):
        W, b = a.W.copy(), a.b.copy()
        if k < len(net.affines) - 1:
            rows = rng.random(a.n_out) < 0.4
            W[rows] = 0.0
            b[rows & (rng.random(a.n_out) < 0.5)] = 0.0   # z == 0 everywhere: on the kink
        affs.append(Affine(W, b))
    return Network(affs)


def _rescale(net, factors):
    """Layer k's weights times ``factors[k]``, its bias times the running product: by positive
    homogeneity of ReLU the output is the original one times ``prod(factors)``."""
    from dpllnn.network import Affine, Network
    P, affs = 1.0, []
    for a, f in zip(net.affines, factors):
        P *= f
        affs.append(Affine(a.W * f, a.b * P))
    return Network(affs)


def _hostile_scales(rng, n_layers, exps):
    """Per-layer factors 10**e (e drawn from ``exps``), the last one making the product 1."""
    f = [10.0 ** float(rng.choice(exps)) for _ in range(n_layers - 1)]
    return f + [1.0 / float(np.prod(f))]


def make_instance(rng, family: str, max_relus: int = 6):
    """(network, spec, truth) -- truth is ``"sat"`` when known by construction, else None."""
    from naive import random_spec
    from dpllnn.spec import Case, Disjunct, Spec

    n_in = int(rng.integers(1, 5))
    n_out = int(rng.integers(1, 4))
    hidden = _hidden(rng, max_relus)
    truth = None
    if family == "wide_input":
        n_in = int(rng.integers(21, 26))
        hidden = _hidden(rng, min(max_relus, 4))
    if family in ("boundary_sat", "boundary_unsat"):
        net = _int_net(rng, n_in, hidden, n_out)
        lb = rng.integers(-2, 2, n_in).astype(float)
        ub = lb + rng.integers(0, 3, n_in)
        corners = np.array([np.where((c >> np.arange(n_in)) & 1, ub, lb)
                            for c in range(2 ** n_in)])
        c = rng.integers(-2, 3, (1, n_out)).astype(float)
        if not c.any():
            c[0, 0] = 1.0
        vals = (net.forward(corners) @ c.T)[:, 0]
        if family == "boundary_sat":
            d = np.array([vals[int(rng.integers(0, len(vals)))]])
            truth = "sat"                       # that corner is an exact witness
        else:
            d = np.array([vals.min() - 2.0 ** -10])
        return net, Spec([Case(lb, ub, [Disjunct(c, d)])], n_in, n_out), truth
    if family == "dup" and sum(hidden) < max_relus:
        net = _duplicate_neuron(rng, _net(rng, n_in, hidden, n_out))
    elif family == "zero_rows":
        net = _zero_rows(rng, _net(rng, n_in, hidden, n_out))
    elif family in ("huge", "tiny", "mixed_scale"):
        net = _net(rng, n_in, hidden, n_out)
        exps = {"huge": [6], "tiny": [-6], "mixed_scale": [-4, -2, 0, 2, 4]}[family]
        net = _rescale(net, _hostile_scales(rng, len(net.affines), exps))
    else:
        net = _net(rng, n_in, hidden, n_out)
    n_cases = int(rng.integers(2, 4)) if family in ("multi_case", "empty") else 1
    spec = random_spec(rng, net, n_cases=n_cases, n_disjuncts=int(rng.integers(1, 4)),
                       max_rows=int(rng.integers(1, 3)))
    if family == "zero_width":
        for case in spec.cases:
            dims = rng.random(n_in) < 0.5
            case.ub[dims] = case.lb[dims]
    elif family == "point":
        for case in spec.cases:
            case.ub[:] = case.lb
    elif family == "empty":
        case = spec.cases[int(rng.integers(0, len(spec.cases)))]
        i = int(rng.integers(0, n_in))
        case.lb[i], case.ub[i] = case.ub[i] + 0.1, case.lb[i]
    return net, spec, truth


# ---- files ------------------------------------------------------------------------------------
def spec_to_vnnlib(spec) -> str:
    """VNN-LIB 1.0 text for ``spec`` (numbers with ``repr``: exact round trip)."""
    n_in, n_out = spec.n_inputs, spec.n_outputs
    out = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    out += [f"(declare-const Y_{j} Real)" for j in range(n_out)]

    def row(c, d):
        terms = " ".join(f"(* {float(v)!r} Y_{j})" for j, v in enumerate(c) if v != 0.0)
        return f"(<= (+ {terms or '0.0'}) {float(d)!r})"

    def disj(dj):
        rows = [row(dj.C[r], dj.d[r]) for r in range(dj.C.shape[0])] or ["(<= 0.0 0.0)"]
        return "(and " + " ".join(rows) + ")"

    def box(case):
        return " ".join(f"(>= X_{i} {float(case.lb[i])!r}) (<= X_{i} {float(case.ub[i])!r})"
                        for i in range(n_in))

    if len(spec.cases) == 1:
        case = spec.cases[0]
        out += [f"(assert (>= X_{i} {float(case.lb[i])!r}))\n(assert (<= X_{i} "
                f"{float(case.ub[i])!r}))" for i in range(n_in)]
        out.append("(assert (or " + " ".join(disj(dj) for dj in case.disjuncts) + "))")
    else:
        out.append("(assert (or " + " ".join(
            f"(and {box(c)} (or " + " ".join(disj(dj) for dj in c.disjuncts) + "))"
            for c in spec.cases) + "))")
    return "\n".join(out) + "\n"


def write_instance(folder: Path, net, spec, stem="inst"):
    from dpllnn.io.onnx_export import to_onnx
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, spec_path = folder / f"{stem}.onnx", folder / f"{stem}.vnnlib"
    to_onnx(net, onnx_path, dtype="float64")
    spec_path.write_text(spec_to_vnnlib(spec))
    return onnx_path, spec_path


# ---- oracle and judging ------------------------------------------------------------------------
def oracle(net, spec, truth=None):
    """("sat" | "unsat" | "boundary", min margin, tolerance, point or None).

    ``sat`` is returned only when a point is certified in exact rational arithmetic (the LP's
    minimiser, or the construction's witness); a negative LP margin whose point fails the exact
    check gives ``no-oracle`` (badly scaled LPs can be wrong by far more than their tolerance:
    only dpllnn's witnesses are then judged)."""
    from naive import exhaustive_margin
    best, best_x = float("inf"), None
    scale = 1.0
    for case in spec.cases:
        if case.is_empty:
            continue
        for dj in case.disjuncts:
            scale = max(scale, float(np.abs(dj.d).max(initial=0.0)),
                        float(np.abs(dj.C).sum(axis=1).max(initial=0.0)))
    tol = 1e-7 * scale
    for case in spec.cases:
        if case.is_empty:
            continue
        for dj in case.disjuncts:
            t, x = exhaustive_margin(net, case, dj, return_point=True)
            if t < best:
                best, best_x = t, x
            if best < -tol and truth is None and exact_witness(net, spec, best_x):
                return "sat", best, tol, best_x
    if truth == "sat":
        return "sat", best, tol, None
    if best > tol:
        return "unsat", best, tol, None
    if best < -tol:      # the LP's point failed the exact check: LP numerics, not the truth
        return ("sat" if exact_witness(net, spec, best_x) else "no-oracle"), best, tol, best_x
    return "boundary", best, tol, None


def exact_witness(net, spec, x) -> bool:
    """``x`` is a counterexample in exact rational arithmetic on the float64 weights."""
    from fractions import Fraction as F
    if x is None:
        return False
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape != (spec.n_inputs,) or not np.all(np.isfinite(x)):
        return False
    a = [F(float(v)) for v in x]
    for k, aff in enumerate(net.affines):
        Wf = [[F(float(w)) for w in row] for row in aff.W]
        a = [sum((w * v for w, v in zip(Wf[j], a)), F(float(aff.b[j])))
             for j in range(aff.n_out)]
        if k < len(net.affines) - 1:
            a = [v if v > 0 else F(0) for v in a]
    for case in spec.cases:
        if np.all(case.lb <= x) and np.all(x <= case.ub):
            for dj in case.disjuncts:
                if all(sum((F(float(c)) * v for c, v in zip(dj.C[r], a)), F(0))
                       <= F(float(dj.d[r])) for r in range(dj.C.shape[0])):
                    return True
    return False


def valid_witness(net, spec, x) -> bool:
    """Independent re-check: inside a case's box and one disjunct holds (float64, exact)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape != (spec.n_inputs,) or not np.all(np.isfinite(x)):
        return False
    a = x
    for k, aff in enumerate(net.affines):              # own forward pass, layer by layer
        a = aff.W @ a + aff.b
        if k < len(net.affines) - 1:
            a = np.maximum(a, 0.0)
    for case in spec.cases:
        if np.all(case.lb <= x) and np.all(x <= case.ub):
            if any(np.all(dj.C @ a <= dj.d) for dj in case.disjuncts):
                return True
    return False


def judge(verdict: str, x, truth: str, net, spec) -> tuple[str, str]:
    if verdict == "sat":
        if x is None or not valid_witness(net, spec, x):
            return "DISAGREE", "sat with an invalid counterexample"
        if truth == "unsat":
            if exact_witness(net, spec, x):
                return "oracle_wrong", "the LP oracle said unsat; the witness is exact"
            return "DISAGREE", "sat (valid float64 witness) but the oracle proves unsat"
        return {"boundary": "boundary", "no-oracle": "unjudged"}.get(truth, "agree"), ""
    if verdict == "unsat":
        if truth == "sat":
            return "DISAGREE", "unsat but a counterexample exists"
        return {"boundary": "boundary", "no-oracle": "unjudged"}.get(truth, "agree"), ""
    return "undecided", verdict


@dataclass
class Outcome:
    index: int
    family: str
    tool: str
    mode: str
    truth: str
    margin: float
    verdict: str
    status: str
    detail: str = ""
    time_s: float = 0.0
    files: list = field(default_factory=list)


def _search_available(mode):
    if mode == "auto":
        return all(_search_available(m) for m in ("inputsplit", "cdcl"))
    return importlib.util.find_spec(f"dpllnn.search.{mode}") is not None


# ---- peers --------------------------------------------------------------------------------------
def peer_command(peer: str | None, peer_cmd: str | None):
    """A command template with {onnx} {vnnlib} {out} {timeout}, or None."""
    if peer_cmd:
        return peer_cmd
    if peer == "auto":
        if importlib.util.find_spec("nnenum") is not None:
            return f"{shlex.quote(sys.executable)} -m nnenum.nnenum {{onnx}} {{vnnlib}} " \
                   f"{{timeout}} {{out}}"
        return None
    return None


def run_peer(template, onnx_path, spec_path, timeout):
    from dpllnn.io.witness import read_results_file
    out = Path(tempfile.mkdtemp(prefix="peer-")) / "out.txt"
    cmd = template.format(onnx=shlex.quote(str(onnx_path)), vnnlib=shlex.quote(str(spec_path)),
                          out=shlex.quote(str(out)), timeout=timeout)
    t0 = time.monotonic()
    try:
        subprocess.run(cmd, shell=True, capture_output=True, timeout=timeout + 30)
        verdict, x, _ = read_results_file(out)
    except Exception as e:                               # a failing peer is just "unknown"
        verdict, x = f"unknown ({type(e).__name__})", None
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return verdict, x, time.monotonic() - t0


# ---- one instance ------------------------------------------------------------------------------
def run_instance(index: int, seed: int, family: str, modes, timeout: float, max_relus: int,
                 keep_dir: str, slack: float = 3.0, peer_template=None, falsify_s=None):
    from dpllnn import verify
    from dpllnn.io.onnx_load import load_onnx
    from dpllnn.io.vnnlib import parse_vnnlib

    rng = np.random.default_rng([seed, index])
    work = Path(tempfile.mkdtemp(prefix=f"soundness-{index}-"))
    outcomes = []
    keep = False
    try:
        net0, spec0, truth0 = make_instance(rng, family, max_relus)
        onnx_path, spec_path = write_instance(work, net0, spec0)
        net = load_onnx(onnx_path)
        spec = parse_vnnlib(spec_path, n_inputs=net.n_inputs, n_outputs=net.n_outputs)
        try:
            truth, margin, _, _ = oracle(net, spec, truth0)
        except RuntimeError:          # the LP oracle gave up (numerics): judge witnesses only
            truth, margin = "no-oracle", float("nan")
        for mode in modes:
            if not _search_available(mode):
                outcomes.append(Outcome(index, family, "dpllnn", mode, truth, margin, "-",
                                        "unavailable", "search module missing"))
                continue
            t0 = time.monotonic()
            try:
                res = verify(net, spec, timeout_s=timeout, seed=index, workers=1, mode=mode,
                             **({} if falsify_s is None else {"falsify_s": falsify_s}))
                dt = time.monotonic() - t0
                x = res.counterexample.x if res.counterexample is not None else None
                status, detail = judge(res.verdict.value, x, truth, net, spec)
                if dt > timeout + slack and status != "DISAGREE":
                    status, detail = "overtime", f"{dt:.1f} s for a {timeout} s timeout"
                o = Outcome(index, family, "dpllnn", mode, truth, margin, res.verdict.value,
                            status, detail or res.reason, dt)
            except Exception as e:
                o = Outcome(index, family, "dpllnn", mode, truth, margin, "error", "ERROR",
                            f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}",
                            time.monotonic() - t0)
            keep |= o.status in ("DISAGREE", "ERROR", "overtime")
            outcomes.append(o)
        if peer_template:
            verdict, x, dt = run_peer(peer_template, onnx_path, spec_path, timeout)
            status, detail = judge(verdict if verdict in ("sat", "unsat") else "unknown", x,
                                   truth, net, spec)
            outcomes.append(Outcome(index, family, "peer", "-", truth, margin, verdict, status,
                                    detail, dt))
    except Exception as e:       # generation/front-end/oracle failure: an error of the campaign
        keep = True
        outcomes.append(Outcome(index, family, "campaign", "-", "?", float("nan"), "error",
                                "ERROR", f"{type(e).__name__}: {e}\n"
                                f"{traceback.format_exc(limit=8)}"))
    if keep:
        dest = Path(keep_dir) / f"instance_{seed}_{index}_{family}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(work, dest)
        (dest / "outcomes.json").write_text(json.dumps([asdict(o) for o in outcomes], indent=1,
                                                       default=str))
        for o in outcomes:
            o.files = [str(dest / "inst.onnx"), str(dest / "inst.vnnlib")]
    shutil.rmtree(work, ignore_errors=True)
    return outcomes


def _star(args):
    return run_instance(*args[0], **args[1])


def run_campaign(n: int, seed: int = 0, modes=("auto",), timeout: float = 5.0, jobs: int = 1,
                 max_relus: int = 6, families=None, keep_dir=None, slack: float = 3.0,
                 peer_template=None, falsify_s=None, cycle_modes: bool = False, log=None):
    """Run ``n`` instances; returns the list of :class:`Outcome`.

    ``cycle_modes``: instance ``i`` runs only ``modes[i % len(modes)]`` (cheaper), instead of
    every mode."""
    families = list(families or FAMILIES)
    keep_dir = keep_dir or str(Path(tempfile.gettempdir()) / "dpllnn-soundness")
    tasks = []
    for i in range(n):
        fam = families[i % len(families)]
        ms = [modes[i % len(modes)]] if cycle_modes else list(modes)
        tasks.append(((i, seed, fam, ms, timeout, max_relus, keep_dir),
                      {"slack": slack, "peer_template": peer_template, "falsify_s": falsify_s}))
    out = []
    if jobs <= 1:
        for t in tasks:
            res = _star(t)
            out.extend(res)
            if log:
                log(res)
    else:
        with ProcessPoolExecutor(jobs) as ex:
            for res in ex.map(_star, tasks, chunksize=4):
                out.extend(res)
                if log:
                    log(res)
    return out


def summarize(outcomes) -> dict:
    s = {}
    for o in outcomes:
        key = f"{o.tool}:{o.mode}"
        d = s.setdefault(key, {})
        d[o.status] = d.get(o.status, 0) + 1
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="number of instances")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="inputsplit,cdcl,auto")
    ap.add_argument("--cycle-modes", action="store_true",
                    help="one mode per instance (round robin) instead of all modes")
    ap.add_argument("--timeout", type=float, default=10.0, help="per verify call, s")
    ap.add_argument("--falsify-s", type=float, default=None, help="falsification budget, s")
    ap.add_argument("--jobs", type=int, default=1, help="parallel instances (processes)")
    ap.add_argument("--max-relus", type=int, default=8, help="oracle cost is 2**max_relus LPs")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--keep-dir", default="soundness-failures",
                    help="where the files of disagreements/errors are copied")
    ap.add_argument("--slack", type=float, default=3.0, help="allowed overrun of the timeout, s")
    ap.add_argument("--peer", choices=["none", "auto"], default="none",
                    help="differential mode: also run a peer verifier (auto: nnenum if installed)")
    ap.add_argument("--peer-cmd", default=None,
                    help="peer command template with {onnx} {vnnlib} {out} {timeout}")
    ap.add_argument("--json", help="write all outcomes to this JSON file")
    a = ap.parse_args(argv)
    template = peer_command(a.peer, a.peer_cmd)
    if a.peer != "none" and template is None:
        print("no peer verifier installed (tried: nnenum); running dpllnn alone")
    t0 = time.monotonic()
    done = [0]

    def log(res):
        done[0] += 1
        for o in res:
            if o.status in ("DISAGREE", "ERROR", "overtime"):
                print(f"[{o.index} {o.family} {o.tool}:{o.mode}] {o.status}: truth {o.truth} "
                      f"(margin {o.margin:.3g}), answer {o.verdict}; "
                      f"{o.detail.splitlines()[0] if o.detail else ''}\n    files: {o.files}",
                      flush=True)
        if done[0] % 50 == 0:
            print(f"... {done[0]}/{a.n} instances, {time.monotonic() - t0:.0f} s", flush=True)

    outs = run_campaign(a.n, a.seed, a.modes.split(","), a.timeout, a.jobs, a.max_relus,
                        a.families.split(","), os.path.abspath(a.keep_dir), a.slack, template,
                        a.falsify_s, a.cycle_modes, log)
    summ = summarize(outs)
    print(f"\n{a.n} instances, seed {a.seed}, {time.monotonic() - t0:.0f} s")
    cols = ["agree", "boundary", "oracle_wrong", "unjudged", "undecided", "DISAGREE", "overtime", "ERROR",
            "unavailable"]
    print(f"{'tool:mode':<18}" + "".join(f"{c:>13}" for c in cols))
    for key, d in sorted(summ.items()):
        print(f"{key:<18}" + "".join(f"{d.get(c, 0):>13}" for c in cols))
    undecided = {}
    for o in outs:
        if o.status == "undecided":
            undecided[o.verdict] = undecided.get(o.verdict, 0) + 1
    if undecided:
        print("undecided by verdict: " + ", ".join(f"{k} {v}" for k, v in undecided.items()))
    if a.json:
        Path(a.json).write_text(json.dumps([asdict(o) for o in outs], default=str))
    bad = sum(d.get("DISAGREE", 0) + d.get("ERROR", 0) for k, d in summ.items()
              if not k.startswith("peer"))
    if bad:
        print(f"reproduction files in {os.path.abspath(a.keep_dir)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
