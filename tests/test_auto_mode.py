"""``mode="auto"``: no strategy's blind spot decides the outcome (SearchSettings.
auto_cdcl_max_unstable).  Input splitting alone stalls on some properties with a small margin
that CDCL proves in a few nodes; with few unstable ReLUs at the root, auto hands such a property
to CDCL after a share of the time."""
from __future__ import annotations

import numpy as np
import pytest

import dpllnn
from dpllnn.result import Verdict
from dpllnn.settings import SearchSettings
from dpllnn.validate import check_counterexample
from naive import exhaustive_decide, one_case_problem, small_margin_problem, spec_margins


def test_small_margin_family_is_decided_by_auto():
    """Every member of the family is unsat (by construction, exhaustive oracle); auto decides all
    of them within an 8 s limit, where input splitting alone times out on seed 3."""
    handed = 0
    for seed in range(8):
        net, spec, margin = small_margin_problem(seed)
        assert margin > 0
        res = dpllnn.verify(net, spec, mode="auto", timeout_s=8.0, workers=1)
        assert res.verdict is Verdict.UNSAT, (seed, res.verdict, res.reason)
        handed += res.stats["mode"] == "inputsplit+cdcl"
    assert handed >= 1          # seed 3: input splitting's 10 % share runs out, CDCL proves it


def test_inputsplit_alone_is_the_blind_spot():
    """The case the guard exists for: input splitting alone does not decide seed 3 in 3 s."""
    net, spec, _ = small_margin_problem(3)
    res = dpllnn.verify(net, spec, mode="inputsplit", timeout_s=3.0, workers=1)
    assert res.verdict is Verdict.TIMEOUT
    res = dpllnn.verify(net, spec, mode="cdcl", timeout_s=3.0, workers=1)
    assert res.verdict is Verdict.UNSAT


def test_handoff_off_keeps_input_splitting():
    net, spec, _ = small_margin_problem(3)
    cfg = SearchSettings(auto_cdcl_max_unstable=-1)
    res = dpllnn.verify(net, spec, mode="auto", timeout_s=1.5, workers=1, settings=cfg)
    assert res.stats["mode"] == "inputsplit" and res.verdict is Verdict.TIMEOUT


def test_handoff_with_two_workers():
    net, spec, _ = small_margin_problem(3)
    res = dpllnn.verify(net, spec, mode="auto", timeout_s=10.0, workers=2)
    assert res.verdict is Verdict.UNSAT and res.stats["mode"] == "inputsplit+cdcl"


@pytest.mark.parametrize("seed", range(16))
def test_auto_matches_exhaustive_oracle(seed):
    """Oracle cases (<= 10 ReLUs, 2-6 inputs): auto decides each within 8 s, right."""
    net, spec = one_case_problem(seed)
    margins = spec_margins(net, spec)
    if min(abs(m) for m in margins) < 1e-6:
        pytest.skip("margin within LP tolerance of 0: no exact ground truth")
    truth, _ = exhaustive_decide(net, spec)
    res = dpllnn.verify(net, spec, mode="auto", timeout_s=8.0, workers=1, seed=seed)
    assert res.verdict.value == truth, (res.verdict, truth, margins, res.stats.get("mode"))
    if res.verdict is Verdict.SAT:
        assert check_counterexample(net, spec, np.asarray(res.counterexample.x)) is not None
