"""Gzipped networks and properties (``.onnx.gz``, ``.vnnlib.gz``) are read wherever a path is."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpllnn.bench.reference import Reference, RefEntry
from dpllnn.cli import main
from dpllnn.io.gz import load_model, read_bytes
from dpllnn.io.onnx_load import load_onnx
from dpllnn.io.vnnlib import parse_vnnlib

EX = Path(__file__).resolve().parent.parent / "dpllnn" / "examples"
NET, FRAGILE, ROBUST = EX / "digits_mlp.onnx", EX / "digits_fragile.vnnlib", EX / "digits_robust.vnnlib"


def _gz(src: Path, folder: Path) -> Path:
    out = folder / (src.name + ".gz")
    out.write_bytes(gzip.compress(src.read_bytes()))
    return out


def _cli(*args):
    p = subprocess.run([sys.executable, "-m", "dpllnn.cli", *map(str, args)],
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_loaders_read_gz_like_the_plain_files(tmp_path):
    assert read_bytes(_gz(NET, tmp_path)) == NET.read_bytes()
    assert load_model(tmp_path / "digits_mlp.onnx.gz") == load_model(NET)
    a, b = load_onnx(NET), load_onnx(tmp_path / "digits_mlp.onnx.gz")
    assert len(a.affines) == len(b.affines)
    for la, lb in zip(a.affines, b.affines):
        np.testing.assert_array_equal(la.W, lb.W)
        np.testing.assert_array_equal(la.b, lb.b)
    s, t = parse_vnnlib(ROBUST), parse_vnnlib(_gz(ROBUST, tmp_path))
    assert len(s.cases) == len(t.cases) and s.n_disjuncts == t.n_disjuncts
    for c, d in zip(s.cases, t.cases):
        np.testing.assert_array_equal(c.lb, d.lb)
        np.testing.assert_array_equal(c.ub, d.ub)
        for x, y in zip(c.disjuncts, d.disjuncts):
            np.testing.assert_array_equal(x.C, y.C)
            np.testing.assert_array_equal(x.d, y.d)


@pytest.mark.parametrize("prop", [FRAGILE, ROBUST], ids=["sat", "unsat"])
def test_verify_gz_gives_the_same_answer(tmp_path, prop):
    net_gz, prop_gz = _gz(NET, tmp_path), _gz(prop, tmp_path)
    res = tmp_path / "res.txt"
    answers = []
    for n, p in ((NET, prop), (net_gz, prop_gz)):   # a process each: the timeout counts
        code, out, err = _cli("verify", n, p, "--json", "--timeout", "60", "--workers", "1",
                              "--results-file", res)        # from the process start
        assert code == 0, err
        answers.append(json.loads(out))
    assert answers[0]["result"] == answers[1]["result"] == ("sat" if prop == FRAGILE else "unsat")
    if prop == FRAGILE:      # the witness was replayed in onnxruntime on the gzipped model
        assert res.read_text().splitlines()[0] == "sat"
        np.testing.assert_allclose(answers[0]["counterexample"]["y"],
                                   answers[1]["counterexample"]["y"], rtol=1e-6, atol=1e-9)


def test_info_bounds_and_prune_take_gz(tmp_path, capsys):
    net_gz, prop_gz = _gz(NET, tmp_path), _gz(ROBUST, tmp_path)
    outs = []
    for n, p in ((NET, ROBUST), (net_gz, prop_gz)):
        assert main(["bounds", str(n), str(p), "--json"]) == 0
        rep = json.loads(capsys.readouterr().out)
        outs.append((rep["layers"], rep["cases"], rep["unstable"]))
    assert outs[0] == outs[1]
    assert main(["info", str(net_gz), str(prop_gz), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_relus"] == 32 and info["spec"]["cases"] == 1
    small = tmp_path / "small.onnx"
    assert main(["prune", str(net_gz), "--region", str(prop_gz), "-o", str(small),
                 "--budget", "1"]) == 0
    assert small.exists()


@pytest.mark.parametrize("kind", ["onnx", "vnnlib"])
@pytest.mark.parametrize("damage", ["not-gzip", "truncated"])
def test_corrupt_gz_is_a_one_line_error(tmp_path, kind, damage):
    src = NET if kind == "onnx" else ROBUST
    bad = tmp_path / (src.name + ".gz")
    data = gzip.compress(src.read_bytes())
    bad.write_bytes(b"plain bytes, not gzip" if damage == "not-gzip" else data[: len(data) // 2])
    args = (bad, ROBUST) if kind == "onnx" else (NET, bad)
    code, out, err = _cli("verify", *args, "--timeout", "10")
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert code == 2 and out == "", err
    assert len(lines) == 1 and str(bad) in lines[0] and "gzip" in lines[0], err


def test_missing_gz_file_is_a_one_line_error(tmp_path):
    code, out, err = _cli("verify", NET, tmp_path / "nope.vnnlib.gz")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "nope.vnnlib.gz" in err and "no such file" in err


def test_bench_reference_matches_gz_paths():
    ref = Reference([RefEntry("onnx/a.onnx", "vnnlib/p.vnnlib", "unsat", 60.0)])
    assert ref.lookup("bench/onnx/a.onnx.gz", "bench/vnnlib/p.vnnlib.gz") is not None
    assert ref.lookup("bench/onnx/b.onnx.gz", "bench/vnnlib/p.vnnlib.gz") is None
