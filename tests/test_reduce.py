"""Tests of dpllnn.reduce: stable sets, exact pruning, lumping, slicing, equivalence, CLI."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

from dpllnn.errors import DpllnnError
from dpllnn.network import Affine, Network
from dpllnn.reduce.equiv import (check_equivalence, pad_to_depth, product_network,
                                 tiled_upper_bounds)
from dpllnn.reduce.forms import form_difference_bound
from dpllnn.reduce.lump import lump_layer, proportional
from dpllnn.reduce.prune import active_basis, prune_network
from dpllnn.reduce.slice import SliceFamily, slice_network, split_region, tiles_region
from dpllnn.reduce.stable import StableSets, certify_stable, sample_box
from dpllnn.reduce.tolerance import prune_with_tolerance


def rnet(rng, sizes, bias=0.5):
    return Network([Affine(rng.normal(size=(sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]),
                           rng.normal(size=sizes[i + 1]) * bias) for i in range(len(sizes) - 1)])


def rbox(rng, n, w=0.3):
    c = rng.normal(size=n)
    r = rng.random(n) * w + 0.01
    return c - r, c + r


def assert_agree(A, B, lb, ub, rng, rel=1e-9):
    X = sample_box(lb, ub, 2000, rng)            # random points, centre and all corners
    YA, YB = A.forward(X), B.forward(X)
    scale = 1.0 + np.max(np.abs(YA))
    assert np.max(np.abs(YA - YB)) <= rel * scale


CASES = [(s, sizes) for s, sizes in enumerate([[3, 20, 20, 15, 4], [2, 12, 12, 3], [4, 30, 30, 2],
                                                [3, 8, 8, 8, 8, 2], [5, 25, 25, 25, 5]])]


@pytest.mark.parametrize("seed,sizes", CASES)
def test_prune_exact_and_proved(seed, sizes):
    rng = np.random.default_rng(seed)
    net = rnet(rng, sizes)
    lb, ub = rbox(rng, sizes[0])
    st = certify_stable(net, [(lb, ub)], budget_s=2.0, seed=seed)
    # certified phases are never contradicted by samples
    Z = np.hstack(net.pre_activations(sample_box(lb, ub, 3000, rng)))
    assert not np.any(Z[:, st.phase == 1] < 0) and not np.any(Z[:, st.phase == -1] > 0)
    small, rep = prune_network(net, st)
    assert small.n_relus <= net.n_relus - int(np.sum(st.phase == -1)) or small.n_relus == 0
    assert_agree(net, small, lb, ub, rng)
    res = check_equivalence(net, small, [(lb, ub)], timeout_s=30, phases=[st.phase])
    assert res.verdict == "equivalent", res


@pytest.mark.parametrize("seed,sizes", CASES[:3])
def test_wrong_pruning_caught(seed, sizes):
    rng = np.random.default_rng(100 + seed)
    net = rnet(rng, sizes)
    lb, ub = rbox(rng, sizes[0], w=0.6)
    st = certify_stable(net, [(lb, ub)], budget_s=1.0)
    un = np.nonzero(st.phase == 0)[0]
    assert un.size
    # remove the unstable neuron with the largest sampled effect
    X = sample_box(lb, ub, 500, rng)
    Z = np.hstack(net.pre_activations(X))
    j = un[int(np.argmax(np.max(np.maximum(Z[:, un], 0), axis=0)))]
    bad = StableSets(st.phase.copy(), st.how, st.hidden_sizes)
    bad.phase[j] = -1
    wrong, _ = prune_network(net, bad)
    for kw in ({}, {"n_samples": 0, "pgd": False}):   # with falsification, and formal only
        res = check_equivalence(net, wrong, [(lb, ub)], eps=1e-6, timeout_s=30,
                                phases=[st.phase], **kw)
        assert res.verdict == "different", (kw, res)
        assert np.all(res.x >= lb) and np.all(res.x <= ub)
        assert np.max(np.abs(net.forward(res.x) - wrong.forward(res.x))) >= 1e-6


def test_fold_dependent_active_rows():
    # layer 0: 5 active neurons over 2 inputs (rank 2), one unstable; all exact
    W0 = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0], [-1.0, 4.0], [0.5, 0.5], [1.0, -1.0]])
    b0 = np.array([10.0, 10.0, 50.0, 40.0, 10.0, 0.0])
    W1 = np.arange(12.0).reshape(2, 6) - 5
    net = Network([Affine(W0, b0), Affine(W1, np.array([1.0, -2.0]))])
    lb, ub = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    st = certify_stable(net, [(lb, ub)], budget_s=0.0)
    assert list(st.phase) == [1, 1, 1, 1, 1, 0]
    small, rep = prune_network(net, st)
    assert rep.steps["active_folded"] == 3 and small.hidden_sizes == [3]
    assert_agree(net, small, lb, ub, np.random.default_rng(0), rel=1e-12)
    basis, combos = active_basis(W0[:5])
    assert len(basis) == 2 and len(combos) == 3


def test_collapse_fully_active_layer():
    rng = np.random.default_rng(3)
    W0 = rng.normal(size=(4, 3))
    net = Network([Affine(W0, np.full(4, 100.0)), Affine(rng.normal(size=(6, 4)), np.zeros(6)),
                   Affine(rng.normal(size=(2, 6)), np.zeros(2))])
    lb, ub = -np.ones(3), np.ones(3)
    st = certify_stable(net, [(lb, ub)], budget_s=0.0)
    small, rep = prune_network(net, st)
    assert rep.steps["layers_collapsed"] >= 1 and small.n_hidden_layers <= 1
    assert_agree(net, small, lb, ub, rng, rel=1e-12)


def test_lumping_positive_and_negative():
    r = np.array([1.0, -2.0, 0.5])
    assert proportional(r, 3 * r) == pytest.approx(3.0)
    assert proportional(r, -2 * r) == pytest.approx(-2.0)
    assert proportional(r, r + np.array([0, 0, 1e-3])) is None
    W = np.array([[1.0, -2.0], [3.0, -6.0], [-2.0, 4.0], [0.0, 1.0]])
    b = np.array([0.5, 1.5, -1.0, 0.0])
    Wn = np.array([[1.0, 2.0, 3.0, 4.0]])
    net = Network([Affine(W, b), Affine(Wn, np.array([0.25]))])
    W2, b2, Wn2, bn2, ph2, lumped, refused = lump_layer(W, b, Wn, np.array([0.25]),
                                                        np.zeros(4, np.int8))
    assert lumped == 1 and refused == 1 and W2.shape[0] == 3     # neuron 2 (factor -2) kept
    small, rep = prune_network(net, None)                         # region-free
    assert small.n_relus == 3 and rep.steps["lump_refused_negative"] >= 1
    X = np.random.default_rng(0).normal(size=(1000, 2)) * 5      # exact everywhere
    assert np.max(np.abs(net.forward(X) - small.forward(X))) <= 1e-12


def test_zero_outgoing_and_constant_neurons():
    W0 = np.array([[1.0, 1.0], [0.0, 0.0], [1.0, -1.0]])
    net = Network([Affine(W0, np.array([0.0, 2.0, 0.0])),
                   Affine(np.array([[1.0, 3.0, 0.0]]), np.zeros(1))])
    small, rep = prune_network(net, None)
    assert small.n_relus == 1 and rep.steps["constant_folded"] == 1
    assert rep.steps["zero_outgoing_removed"] == 1
    X = np.random.default_rng(1).normal(size=(100, 2))
    assert np.allclose(net.forward(X), small.forward(X), rtol=0, atol=1e-14)


def test_product_network_and_padding():
    rng = np.random.default_rng(7)
    A, B = rnet(rng, [3, 6, 6, 6, 2]), rnet(rng, [3, 5, 2])
    X = rng.normal(size=(200, 3))
    assert np.allclose(pad_to_depth(B, 3).forward(X), B.forward(X), atol=1e-13)
    P = product_network(A, B)
    assert P.n_hidden_layers == 3
    assert np.allclose(P.forward(X), A.forward(X) - B.forward(X), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_slices_agree_and_cover(seed, tmp_path):
    rng = np.random.default_rng(200 + seed)
    net = rnet(rng, [3, 16, 16, 3])
    lb, ub = rbox(rng, 3, w=1.0)
    man = slice_network(net, [(lb, ub)], 8, str(tmp_path), budget_s=0.5, equiv_timeout_s=20)
    assert len(man["regions"]) <= 8
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert set(doc["regions"][0]) >= {"lb", "ub", "onnx", "relus", "proved"}
    for reg in man["regions"]:
        assert reg["proved"] is True
        assert_agree(net, reg["network"], np.array(reg["lb"]), np.array(reg["ub"]), rng)
    fam = SliceFamily(str(tmp_path))
    X = sample_box(lb, ub, 300, rng)
    for x in X[:60]:
        i, y = fam.evaluate(x)
        assert np.allclose(y, net.forward(x), rtol=1e-9, atol=1e-9 * (1 + np.abs(y).max()))
        i2, y2 = fam.evaluate(x, "onnxruntime")                # float64 ONNX round trip
        assert i2 == i and np.allclose(y2, y, rtol=1e-12, atol=1e-12)
    with pytest.raises(DpllnnError):
        fam.evaluate(ub + 1.0)


def test_split_region_is_partition():
    rng = np.random.default_rng(5)
    net = rnet(rng, [2, 20, 20, 2])
    lb, ub = -np.ones(2), np.ones(2)
    leaves = split_region(net, [(lb, ub)], 16)
    vol = sum(np.prod(u - l) for l, u in leaves)
    assert vol == pytest.approx(4.0) and 1 < len(leaves) <= 16


@pytest.mark.parametrize("seed,sizes", CASES[:2] + CASES[4:])
def test_refined_stable_sets_sound_and_exact(seed, sizes):
    """refine=R: phases certified on a k-d tiling of the box hold on the whole box, the pruned
    network agrees with the original on it and is proved equivalent with those phases."""
    rng = np.random.default_rng(300 + seed)
    net = rnet(rng, sizes)
    lb, ub = rbox(rng, sizes[0], w=1.0)
    st = certify_stable(net, [(lb, ub)], budget_s=0.0, use_milp=False, use_alpha=False,
                        use_pgd=False, n_samples=16, refine=16)
    assert 1 < len(st.cert_boxes) <= 16 and tiles_region(st.cert_boxes, [(lb, ub)])
    Z = np.hstack(net.pre_activations(sample_box(lb, ub, 5000, rng)))
    assert not np.any(Z[:, st.phase == 1] < 0) and not np.any(Z[:, st.phase == -1] > 0)
    small, _ = prune_network(net, st)
    assert_agree(net, small, lb, ub, rng)
    res = check_equivalence(net, small, [(lb, ub)], timeout_s=30, phases=[st.phase])
    assert res.verdict == "equivalent", res


def test_refinement_removes_more_on_a_deep_net():
    """Sub-box certification decides neurons that whole-box bounds leave open (ACAS-like depth)."""
    rng = np.random.default_rng(7)
    net = rnet(rng, [5] + [30] * 6 + [5])
    lb, ub = rbox(rng, 5, w=0.5)
    kw = dict(budget_s=0.0, use_milp=False, use_alpha=False, use_pgd=False, n_samples=16)
    plain = prune_network(net, certify_stable(net, [(lb, ub)], **kw))[0]
    refined = prune_network(net, certify_stable(net, [(lb, ub)], refine=64, **kw))[0]
    assert refined.n_relus < plain.n_relus
    assert_agree(net, refined, lb, ub, rng)


def test_slice_adaptive_refinement(tmp_path):
    rng = np.random.default_rng(21)
    net = rnet(rng, [4] + [24] * 5 + [3])
    lb, ub = rbox(rng, 4, w=1.0)
    man = slice_network(net, [(lb, ub)], 4, str(tmp_path), budget_s=0.0, thorough=False,
                        refine=1, refine_until=0.0, refine_max=16, equiv_timeout_s=20)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    for reg, rd in zip(man["regions"], doc["regions"]):
        # refine_until=0: escalate 1 -> 4 -> 16 unless a slice is already fully stable
        assert reg["refine"] == 16 or reg["relus"] == 0
        assert rd["refine"] == reg["refine"] and reg["proved"] is True
        assert_agree(net, reg["network"], np.array(reg["lb"]), np.array(reg["ub"]), rng)
    plain = slice_network(net, [(lb, ub)], 4, None, budget_s=0.0, thorough=False, equiv=False)
    assert [r["lb"] for r in plain["regions"]] == [r["lb"] for r in man["regions"]]
    assert sum(r["relus"] for r in man["regions"]) <= sum(r["relus"] for r in plain["regions"])


def test_slice_refine_alpha(tmp_path):
    """refine_alpha: a slice still above refine_until at refine_max is certified once more with
    alpha-CROWN per sub-box; never more ReLUs than without, still exact and proved."""
    rng = np.random.default_rng(21)
    net = rnet(rng, [4] + [24] * 5 + [3])
    lb, ub = rbox(rng, 4, w=1.0)
    kw = dict(budget_s=0.0, thorough=False, refine=1, refine_until=0.0, refine_max=4,
              equiv_timeout_s=20)
    base = slice_network(net, [(lb, ub)], 4, None, **kw)
    man = slice_network(net, [(lb, ub)], 4, str(tmp_path), refine_alpha=True, **kw)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert any(r["refine_alpha"] for r in man["regions"])
    for reg, r0, rd in zip(man["regions"], base["regions"], doc["regions"]):
        assert reg["lb"] == r0["lb"] and reg["relus"] <= r0["relus"] and not r0["refine_alpha"]
        assert reg["refine_alpha"] == (r0["relus"] > 0) == rd["refine_alpha"]
        assert reg["proved"] is True
        assert_agree(net, reg["network"], np.array(reg["lb"]), np.array(reg["ub"]), rng)
    assert sum(r["relus"] for r in man["regions"]) < sum(r["relus"] for r in base["regions"])


def test_tiled_upper_bounds_sound_and_tighter():
    """The union of sub-box CROWN bounds over a tiling is sound and tighter than whole-box CROWN
    on many neurons (not all: CROWN is not monotone in the box); a set of sub-boxes that does not
    cover the box is refused (None)."""
    from dpllnn.bounds import compute_bounds, pack
    rng = np.random.default_rng(8)
    net = rnet(rng, [5] + [30] * 6 + [5])
    lb, ub = rbox(rng, 5, w=0.5)
    st = certify_stable(net, [(lb, ub)], budget_s=0.0, use_milp=False, use_alpha=False,
                        use_pgd=False, n_samples=16, refine=64)
    z_ub = tiled_upper_bounds(net, lb, ub, st.cert_boxes, st.phase)
    whole = compute_bounds(pack(net), lb, ub, st.phase, "crown").ub
    Z = np.hstack(net.pre_activations(sample_box(lb, ub, 5000, rng)))
    assert np.all(Z.max(axis=0) <= z_ub + 1e-9)
    assert np.sum(z_ub < whole - 1e-6) > np.sum(z_ub > whole + 1e-6)
    assert tiled_upper_bounds(net, lb, ub, st.cert_boxes[1:], st.phase) is None
    # the form-matching bound with the tiled ranges is no looser, and the pruned net is proved
    small, _ = prune_network(net, st)
    b0 = form_difference_bound(net, small, lb, ub, st.phase)
    b1 = form_difference_bound(net, small, lb, ub, st.phase, z_ub=z_ub)
    assert b0 is not None and np.all(b1 <= b0 + 1e-15)
    res = check_equivalence(net, small, [(lb, ub)], timeout_s=30, phases=[st.phase],
                            tiling=st.cert_boxes)
    assert res.verdict == "equivalent", res


@pytest.mark.parametrize("seed,sizes", CASES[:2])
def test_wrong_pruning_caught_with_tiling(seed, sizes):
    """A tiling only tightens ranges: a wrongly pruned network is still found different."""
    rng = np.random.default_rng(100 + seed)
    net = rnet(rng, sizes)
    lb, ub = rbox(rng, sizes[0], w=0.6)
    st = certify_stable(net, [(lb, ub)], budget_s=0.0, use_milp=False, refine=16)
    un = np.nonzero(st.phase == 0)[0]
    Z = np.hstack(net.pre_activations(sample_box(lb, ub, 500, rng)))
    j = un[int(np.argmax(np.max(np.maximum(Z[:, un], 0), axis=0)))]
    bad = StableSets(st.phase.copy(), st.how, st.hidden_sizes)
    bad.phase[j] = -1
    wrong, _ = prune_network(net, bad)
    res = check_equivalence(net, wrong, [(lb, ub)], eps=1e-6, timeout_s=30, n_samples=0,
                            pgd=False, phases=[st.phase], tiling=st.cert_boxes)
    assert res.verdict == "different", res


def test_tolerance_pruning_within_eps():
    rng = np.random.default_rng(11)
    net = rnet(rng, [3, 20, 20, 4])
    lb, ub = rbox(rng, 3)
    st = certify_stable(net, [(lb, ub)], budget_s=1.0)
    exact, _ = prune_network(net, st)
    eps = 0.05
    small, rep, changes = prune_with_tolerance(net, st, [(lb, ub)], eps, budget_s=10)
    assert small.n_relus <= exact.n_relus
    X = sample_box(lb, ub, 5000, rng)
    assert np.max(np.abs(net.forward(X) - small.forward(X))) <= eps


# ---- CLI functions (through the subparsers this module registers) ------------------------------
def _run(argv):
    from dpllnn.reduce import cli_reduce as C
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    C.add_reduce_parsers(sub)
    a = p.parse_args(argv)
    return {"prune": C.cmd_prune, "slice": C.cmd_slice, "slice-eval": C.cmd_slice_eval,
            "equiv": C.cmd_equiv}[a.command](a)


@pytest.fixture
def onnx_net(tmp_path):
    from dpllnn.io.onnx_export import to_onnx
    rng = np.random.default_rng(21)
    net = rnet(rng, [3, 12, 12, 2])
    path = tmp_path / "net.onnx"
    to_onnx(net, str(path), dtype="float64")
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"lb": [-0.2, 0.1, 0.0], "ub": [0.1, 0.4, 0.3]}))
    return net, str(path), str(box)


def test_cli_prune_equiv_slice(onnx_net, tmp_path, capsys):
    from dpllnn.io.onnx_load import load_onnx
    net, path, box = onnx_net
    out, cert = str(tmp_path / "small.onnx"), str(tmp_path / "cert.json")
    assert _run(["prune", path, "--region", box, "-o", out, "--certificate", cert,
                 "--budget", "1"]) == 0
    assert "ReLUs" in capsys.readouterr().out
    doc = json.loads(open(cert).read())
    assert doc["equivalence"]["verdict"] == "equivalent" and doc["stable"]["neurons"]
    small = load_onnx(out)
    rng = np.random.default_rng(0)
    assert_agree(net, small, np.array([-0.2, 0.1, 0.0]), np.array([0.1, 0.4, 0.3]), rng)
    assert _run(["equiv", path, out, "--region", box]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "equivalent"
    d = str(tmp_path / "sl")
    assert _run(["slice", path, "--region", box, "--max-regions", "4", "-o", d]) == 0
    capsys.readouterr()
    assert _run(["slice-eval", d, "0,0.2,0.1", "--json"]) == 0
    y = json.loads(capsys.readouterr().out)["y"]
    assert np.allclose(y, net.forward(np.array([0, 0.2, 0.1])), atol=1e-12)


def test_cli_refine_options(onnx_net, tmp_path, capsys):
    from dpllnn.io.onnx_load import load_onnx
    net, path, box = onnx_net
    out = str(tmp_path / "small.onnx")
    assert _run(["prune", path, "--region", box, "-o", out, "--refine", "8", "--budget", "0",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["equivalence"]["verdict"] == "equivalent"
    rng = np.random.default_rng(1)
    assert_agree(net, load_onnx(out), np.array([-0.2, 0.1, 0.0]), np.array([0.1, 0.4, 0.3]), rng)
    d = str(tmp_path / "sl")
    assert _run(["slice", path, "--region", box, "--max-regions", "2", "-o", d, "--refine", "2",
                 "--refine-until", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["proved"] == summary["regions"]
    man = json.loads(open(os.path.join(d, "manifest.json")).read())
    assert all(r["refine"] in (2, 8, 32, 128, 256) for r in man["regions"])


def test_cli_bad_input(onnx_net, tmp_path):
    net, path, box = onnx_net
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lb": [0, 0], "ub": [1, 1]}))
    with pytest.raises(DpllnnError):
        _run(["prune", path, "--region", str(bad), "-o", str(tmp_path / "x.onnx")])
    with pytest.raises(DpllnnError):
        _run(["prune", path, "--region", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.onnx")])
    with pytest.raises(DpllnnError):
        _run(["slice-eval", str(tmp_path), "0,0,0"])
