"""End-to-end CLI behaviour: exit codes, one-line errors, JSON and results-file formats."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpllnn.cli import main
from dpllnn.io.witness import read_results_file

EX = Path(__file__).resolve().parent.parent / "dpllnn" / "examples"
NET = EX / "digits_mlp.onnx"
FRAGILE = EX / "digits_fragile.vnnlib"
ROBUST = EX / "digits_robust.vnnlib"


def run_cli(*args):
    """Run the CLI in a subprocess (what users see: stdout, stderr, exit code)."""
    p = subprocess.run([sys.executable, "-m", "dpllnn.cli", *map(str, args)],
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, f"expected a one-line message, got:\n{err}"
    assert "Traceback" not in err
    for n in needles:
        assert str(n) in lines[0], f"{n!r} not in {lines[0]!r}"


def test_verify_sat_json_and_results_file(tmp_path):
    out = tmp_path / "res.txt"
    code, stdout, err = run_cli("verify", NET, FRAGILE, "--json", "--timeout", "60",
                                "--results-file", out)
    assert code == 0, err
    obj = json.loads(stdout)
    assert obj["result"] == "sat"
    assert set(obj) >= {"result", "time_s", "counterexample", "stats"}
    x = np.array(obj["counterexample"]["x"])
    verdict, fx, fy = read_results_file(out)
    assert verdict == "sat" and np.array_equal(fx, x) and fy.shape == (10,)
    # the witness is really a counterexample: revalidate it from the file alone
    from dpllnn.io.onnx_load import load_onnx
    from dpllnn.io.vnnlib import parse_vnnlib
    from dpllnn.validate import check_counterexample
    net = load_onnx(NET)
    spec = parse_vnnlib(FRAGILE, n_inputs=64, n_outputs=10)
    assert check_counterexample(net, spec, fx) is not None


def test_verify_text_output_first_line_is_verdict():
    code, stdout, err = run_cli("verify", NET, FRAGILE, "--timeout", "30")
    assert code == 0, err
    assert stdout.splitlines()[0] in ("sat", "unsat", "unknown", "timeout")


def test_verify_cdcl_json_stdout_is_one_object():
    """A CDCL search builds HiGHS models: nothing of HiGHS (its banner) may reach stdout."""
    code, stdout, err = run_cli("verify", NET, ROBUST, "--json", "--timeout", "120",
                                "--mode", "cdcl", "--workers", "2")
    assert code == 0, err
    obj = json.loads(stdout)
    assert obj["result"] == "unsat", obj
    assert obj["stats"]["lp_calls"] > 0      # the LP really ran


@pytest.mark.parametrize("scheme", ["portfolio", "cubes", "hybrid"])
def test_verify_parallel_schemes(scheme):
    """``--parallel`` picks how CDCL workers share the case; each proves the bundled robust
    property, and the stats name the scheme (its number of tasks)."""
    code, stdout, err = run_cli("verify", NET, ROBUST, "--json", "--timeout", "120",
                                "--mode", "cdcl", "--workers", "2", "--parallel", scheme)
    assert code == 0, err
    obj = json.loads(stdout)
    assert obj["result"] == "unsat", obj
    assert obj["stats"].get(scheme, 0) >= 2, obj["stats"]


def test_verify_parallel_unknown_scheme_is_a_usage_error():
    code, stdout, err = run_cli("verify", NET, ROBUST, "--parallel", "magic")
    assert code == 2 and "magic" in err


def test_info_text_and_json():
    code, stdout, err = run_cli("info", NET, ROBUST, "--json")
    assert code == 0, err
    info = json.loads(stdout)
    assert info["n_inputs"] == 64 and info["n_outputs"] == 10 and info["n_relus"] == 32
    assert info["spec"]["cases"] == 1 and info["spec"]["disjuncts"] == 9
    code, stdout, _ = run_cli("info", NET)
    assert code == 0 and "32 ReLUs" in stdout


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "unknown_op"])
def test_bad_onnx(tmp_path, kind):
    bad = tmp_path / f"{kind}.onnx"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(NET.read_bytes()[:700])
    elif kind == "unknown_op":
        import onnx
        from onnx import helper
        m = onnx.load(str(NET))
        m.graph.node[2].op_type = "Sigmoid"
        onnx.save(m, str(bad))
    code, _, err = run_cli("verify", bad, ROBUST)
    needles = [bad.name] + (["Sigmoid", "relu0"] if kind == "unknown_op" else [])
    assert_one_line_error(code, err, *needles)


def test_bad_vnnlib_syntax_names_line(tmp_path):
    bad = tmp_path / "bad.vnnlib"
    lines = ROBUST.read_text().splitlines()
    lines[80] = "(assert (<= X_3 0.5)"  # unbalanced
    bad.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli("verify", NET, bad)
    assert_one_line_error(code, err, bad.name)


def test_undeclared_variable(tmp_path):
    bad = tmp_path / "undeclared.vnnlib"
    bad.write_text(ROBUST.read_text() + "(assert (<= X_99 0.5))\n")
    code, _, err = run_cli("verify", NET, bad)
    assert_one_line_error(code, err, bad.name, "X_99")


def test_input_count_mismatch(tmp_path):
    bad = tmp_path / "five_inputs.vnnlib"
    txt = "\n".join([f"(declare-const X_{i} Real)" for i in range(5)]
                    + [f"(declare-const Y_{j} Real)" for j in range(10)]
                    + [f"(assert (<= X_{i} 1))\n(assert (>= X_{i} 0))" for i in range(5)]
                    + ["(assert (>= Y_0 Y_1))"])
    bad.write_text(txt + "\n")
    code, _, err = run_cli("verify", NET, bad)
    assert_one_line_error(code, err, bad.name)


def test_empty_vnnlib(tmp_path):
    bad = tmp_path / "empty.vnnlib"
    bad.write_text("")
    code, _, err = run_cli("verify", NET, bad)
    assert_one_line_error(code, err, bad.name)


def test_usage_errors_exit_2():
    assert main(["verify"]) == 2
    assert main(["verify", str(NET), str(ROBUST), "--timeout", "-1"]) == 2
    assert main(["frobnicate"]) == 2


def test_no_results_file_on_bad_input(tmp_path):
    out = tmp_path / "res.txt"
    code, _, _ = run_cli("verify", tmp_path / "nope.onnx", ROBUST, "--results-file", out)
    assert code == 2 and not out.exists()
