"""The VNN-COMP tool scripts in benchmarks/vnncomp/ (install_tool, prepare_instance, run_instance)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpllnn.io.witness import read_results_file

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "benchmarks" / "vnncomp"
NAMES = ("install_tool.sh", "prepare_instance.sh", "run_instance.sh")


def _env() -> dict:
    env = dict(os.environ)
    here = Path(sys.executable).parent / "dpllnn"  # the dpllnn installed beside this python
    if "DPLLNN_BIN" not in env and here.exists() and not (REPO / ".venv/bin/dpllnn").exists():
        env["DPLLNN_BIN"] = str(here)
    # the scripts run this checkout's dpllnn, also from a git worktree beside the installed one
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(name: str, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True,
                          env=_env(), cwd="/", timeout=timeout)


@pytest.mark.parametrize("name", NAMES)
def test_scripts_are_strict_executable_bash(name):
    p = SCRIPTS / name
    assert os.access(p, os.X_OK)
    text = p.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text


@pytest.mark.parametrize("name", NAMES)
def test_scripts_reject_a_wrong_version(name):
    r = _run(name, "v2", "a", "b", "c", "d", "e")
    assert r.returncode != 0 and "v1" in r.stderr


def _has_loaders() -> bool:
    try:
        import dpllnn.io.onnx_import  # noqa: F401
        import dpllnn.io.vnnlib  # noqa: F401
    except ImportError:
        return False
    return True


needs_loaders = pytest.mark.skipif(not _has_loaders(), reason="loaders not available yet")


@needs_loaders
def test_prepare_instance_loads_the_instance(bench_root):
    t = bench_root / "vnncomp2021" / "test"
    r = _run("prepare_instance.sh", "v1", "test", t / "test_sat.onnx", t / "test_prop.vnnlib")
    assert r.returncode == 0, r.stderr
    bad = _run("prepare_instance.sh", "v1", "test", t / "missing.onnx", t / "test_prop.vnnlib")
    assert bad.returncode != 0


def _ort_output(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    dtype = np.float64 if inp.type == "tensor(double)" else np.float32
    return np.asarray(sess.run(None, {inp.name: x.astype(dtype).reshape(shape)})[0],
                      dtype=np.float64).reshape(-1)


@needs_loaders
def test_run_instance_sat_writes_a_valid_witness(bench_root, tmp_path):
    from dpllnn.io.vnnlib import parse_vnnlib

    t = bench_root / "vnncomp2021" / "test"
    onnx, prop = t / "test_sat.onnx", t / "test_prop.vnnlib"
    out = tmp_path / "out.txt"
    r = _run("run_instance.sh", "v1", "test", onnx, prop, out, 60)
    assert r.returncode == 0, r.stderr
    verdict, x, y = read_results_file(out)
    assert verdict == "sat" and out.read_text().splitlines()[0] == "sat"
    spec = parse_vnnlib(str(prop), n_inputs=x.size, n_outputs=y.size)
    assert x.shape == (spec.n_inputs,) and y.shape == (spec.n_outputs,)
    y_ort = _ort_output(onnx, x)  # an independent replay, as the VNN-COMP checker does
    np.testing.assert_allclose(y, y_ort, rtol=1e-5, atol=1e-6)
    assert any(case.contains(x) and any(dj.holds(y_ort) for dj in case.disjuncts)
               for case in spec.cases)


@needs_loaders
def test_run_instance_unsat(bench_root, tmp_path):
    t = bench_root / "vnncomp2021" / "test"
    out = tmp_path / "out.txt"
    r = _run("run_instance.sh", "v1", "test", t / "test_unsat.onnx", t / "test_prop.vnnlib",
             out, 60)
    assert r.returncode == 0, r.stderr
    verdict, x, _ = read_results_file(out)
    assert verdict == "unsat" and x is None


def test_run_instance_failure_leaves_no_verdict(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("unsat\n")  # a stale file from an earlier run must not survive
    r = _run("run_instance.sh", "v1", "test", tmp_path / "missing.onnx",
             tmp_path / "missing.vnnlib", out, 10)
    assert r.returncode == 2 and not out.exists()


@needs_loaders
def test_run_instance_reads_gzipped_network_and_property(bench_root, tmp_path):
    """VNN-COMP benchmark repositories store .onnx.gz / .vnnlib.gz: the scripts take them as they
    are and give the same answer as on the plain files."""
    import gzip
    t = bench_root / "vnncomp2021" / "test"
    onnx_gz, prop_gz = tmp_path / "test_sat.onnx.gz", tmp_path / "test_prop.vnnlib.gz"
    onnx_gz.write_bytes(gzip.compress((t / "test_sat.onnx").read_bytes()))
    prop_gz.write_bytes(gzip.compress((t / "test_prop.vnnlib").read_bytes()))
    r = _run("prepare_instance.sh", "v1", "test", onnx_gz, prop_gz)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out.txt"
    r = _run("run_instance.sh", "v1", "test", onnx_gz, prop_gz, out, 60)
    assert r.returncode == 0, r.stderr
    verdict, x, y = read_results_file(out)
    assert verdict == "sat"
    np.testing.assert_allclose(y, _ort_output(t / "test_sat.onnx", x), rtol=1e-5, atol=1e-6)
