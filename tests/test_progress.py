"""``verify -v/--progress``: progress lines on stderr, live counters from one process and from
the workers, stdout unchanged."""
from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest

import dpllnn
from dpllnn.bounds import compute_bounds, pack
from dpllnn.io.onnx_export import to_onnx
from dpllnn.search.progress import LiveCounters, combine, format_line, from_stats
from dpllnn.spec import Case, Disjunct, Spec
from naive import random_network, small_margin_problem

_LINE = re.compile(r"^dpllnn: +(\d+\.\d) s  (.+?)(  |$)")


def _lines(text):
    out = []
    for ln in text.splitlines():
        m = _LINE.match(ln)
        if m:
            nodes = re.search(r"nodes ([\d,]+)", ln)
            bound = re.search(r"lower bound (\S+)", ln)
            out.append({"t": float(m.group(1)), "stage": m.group(2),
                        "nodes": int(nodes.group(1).replace(",", "")) if nodes else None,
                        "bound": float(bound.group(1)) if bound else None, "text": ln})
    return out


def _hard_cdcl_problem():
    """A property CDCL does not settle in a few seconds today: 90 ReLUs, threshold between the
    sampled minimum and the CROWN bound."""
    rng = np.random.default_rng(0)
    net = random_network(rng, 8, (30, 30, 30), 2)
    lb, ub = -0.5 * np.ones(8), 0.5 * np.ones(8)
    C = np.array([[1.0, -1.0]])
    m = float((net.forward(lb + rng.random((4000, 8)) * (ub - lb)) @ C.T).min())
    lo = float(compute_bounds(pack(net), lb, ub, None, "crown", C=C, d=np.zeros(1)).obj_lower[0])
    return net, Spec([Case(lb, ub, [Disjunct(C, np.array([m - 0.2 * (m - lo)]))])], 8, 2)


def test_combine_sums_counters_and_takes_the_lowest_bound():
    c = combine([{"nodes": 3, "lower_bound": -1.0}, {"nodes": 4, "lower_bound": -2.5,
                                                      "learned": 1}, {"lower_bound": float("nan")}])
    assert c == {"nodes": 7, "learned": 1, "lower_bound": -2.5}
    assert from_stats({"nodes": 5, "theory_conflicts": 2, "conflicts": 99}) == \
        {"nodes": 5, "conflicts": 2}
    line = format_line(12.04, "cdcl search", {"nodes": 1204, "conflicts": 3,
                                              "lower_bound": -0.0132})
    assert line.startswith("dpllnn:   12.0 s  cdcl search  nodes 1,204  conflicts 3")
    assert line.endswith("lower bound -0.0132")


def test_sources_count_only_while_registered():
    live = LiveCounters()
    live.stats = {"nodes": 2}
    with live.source(lambda: {"nodes": 5}):
        assert live.snapshot() == {"nodes": 7}
    assert live.snapshot() == {"nodes": 2}


def test_inputsplit_progress_lines():
    net, spec, _ = small_margin_problem(3)
    buf = io.StringIO()
    res = dpllnn.verify(net, spec, mode="inputsplit", timeout_s=2.0, workers=1,
                        progress_s=0.25, progress_stream=buf)
    ls = [x for x in _lines(buf.getvalue()) if x["stage"] == "inputsplit search"]
    assert len(ls) >= 3, buf.getvalue()
    assert all(x["nodes"] is not None for x in ls)
    # live counts never exceed what the search reports at the end
    assert max(x["nodes"] for x in ls) <= res.stats["nodes"]
    # the property is not proved while the lines come: the open boxes' lowest bound is <= 0
    assert all(x["bound"] is None or x["bound"] <= 0 for x in ls)
    assert "volume proved" in ls[-1]["text"]


def test_cdcl_progress_lines_single_and_parallel():
    net, spec = _hard_cdcl_problem()
    for workers in (1, 2):
        buf = io.StringIO()
        res = dpllnn.verify(net, spec, mode="cdcl", timeout_s=3.0, workers=workers,
                            progress_s=0.25, progress_stream=buf)
        if res.time_s < 2.0:
            pytest.skip(f"decided in {res.time_s:.1f} s: too fast to show progress")
        ls = [x for x in _lines(buf.getvalue()) if x["stage"] == "cdcl search"]
        assert ls and max(x["nodes"] or 0 for x in ls) > 0, buf.getvalue()
        assert any("learned" in x["text"] for x in ls)
        if workers == 1:
            assert max(x["nodes"] or 0 for x in ls) <= res.stats["nodes"]
            assert all(x["bound"] is not None and x["bound"] <= 0 for x in ls[1:])


def test_cli_progress_on_stderr_stdout_unchanged(tmp_path):
    net, spec, _ = small_margin_problem(3)
    onnx_path = tmp_path / "net.onnx"
    to_onnx(net, onnx_path, dtype="float64")
    case_lines = []
    for c in spec.cases:
        box = " ".join(f"(<= X_{i} {float(c.ub[i])!r}) (>= X_{i} {float(c.lb[i])!r})"
                       for i in range(5))
        C, d = c.disjuncts[0].C.tolist(), c.disjuncts[0].d.tolist()
        row = f"(<= (+ (* {C[0][0]!r} Y_0) (* {C[0][1]!r} Y_1)) {d[0]!r})"
        case_lines.append(f"(and {box} {row})")
    prop = tmp_path / "p.vnnlib"
    prop.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(5)) +
                    "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
                    f"(assert (or {' '.join(case_lines)}))\n")
    base = [sys.executable, "-m", "dpllnn.cli", "verify", str(onnx_path), str(prop), "--timeout",
            "5", "--workers", "1", "--mode", "inputsplit"]
    quiet = subprocess.run(base, capture_output=True, text=True, timeout=120)
    loud = subprocess.run(base + ["-v", "--progress-interval", "0.3"], capture_output=True,
                          text=True, timeout=120)
    assert quiet.returncode == loud.returncode == 0, (quiet.stderr, loud.stderr)
    assert quiet.stdout.splitlines()[0] == loud.stdout.splitlines()[0] == "timeout"
    assert len(quiet.stdout.splitlines()) == len(loud.stdout.splitlines())
    assert not _lines(quiet.stderr) and not _lines(loud.stdout)
    assert len(_lines(loud.stderr)) >= 2, loud.stderr


def test_bad_interval_is_a_usage_error():
    r = subprocess.run([sys.executable, "-m", "dpllnn.cli", "verify", "a.onnx", "b.vnnlib",
                        "--progress-interval", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "progress-interval" in r.stderr
