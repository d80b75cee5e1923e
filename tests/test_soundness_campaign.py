"""CI soundness campaign: >= 500 seeded tiny instances, dpllnn against the exhaustive oracle.

Runs ``benchmarks/soundness/campaign.py`` in-process (two worker processes, one search mode per
instance in round robin over inputsplit / cdcl / auto, short timeouts).  Zero disagreements and
zero errors are required; ``timeout``/``unknown`` are allowed (never wrong).  The full campaign
(more instances, bigger networks, every mode per instance, a peer verifier) runs on demand:
``.venv/bin/python benchmarks/soundness/campaign.py --help``.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
N = int(os.environ.get("DPLLNN_SOUNDNESS_N", "504"))
TIMEOUT_S = 3.0


def _campaign():
    """The campaign module, registered in sys.modules (dataclasses and the forked workers of
    its process pool look it up by name)."""
    import sys
    name = "dpllnn_soundness_campaign"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, REPO / "benchmarks" / "soundness" / "campaign.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    camp = _campaign()
    keep = tmp_path_factory.mktemp("soundness-failures")
    outs = camp.run_campaign(N, seed=20240607, modes=camp.MODES, timeout=TIMEOUT_S, jobs=2,
                             max_relus=4, keep_dir=str(keep), slack=5.0, falsify_s=0.02,
                             cycle_modes=True)
    return camp, outs


def _lines(outs, statuses):
    return "\n".join(f"#{o.index} {o.family} {o.mode}: {o.status} truth={o.truth} "
                     f"answer={o.verdict} {o.detail.splitlines()[0] if o.detail else ''} "
                     f"files={o.files}" for o in outs if o.status in statuses)


@pytest.mark.timeout(400)
def test_campaign_no_wrong_answers(outcomes):
    camp, outs = outcomes
    assert len({o.index for o in outs}) == N
    summary = camp.summarize(outs)
    print(summary)
    bad = [o for o in outs if o.status in ("DISAGREE", "ERROR")]
    assert not bad, _lines(outs, ("DISAGREE", "ERROR"))


def test_campaign_decides_most_instances(outcomes):
    """Not soundness, but a campaign in which everything times out proves nothing."""
    camp, outs = outcomes
    judged = [o for o in outs if o.status != "unavailable"]
    if not judged:
        pytest.skip("no search mode available yet")
    decided = [o for o in judged if o.status in ("agree", "boundary", "oracle_wrong")]
    assert len(decided) >= 0.8 * len(judged), camp.summarize(outs)


def test_campaign_respects_timeouts(outcomes):
    camp, outs = outcomes
    assert not [o for o in outs if o.status == "overtime"], _lines(outs, ("overtime",))


def test_vnnlib_writer_round_trip():
    import numpy as np
    from dpllnn.io.vnnlib import parse_vnnlib_text
    camp = _campaign()
    rng = np.random.default_rng(5)
    for fam in camp.FAMILIES:
        net, spec, _ = camp.make_instance(rng, fam, 4)
        back = parse_vnnlib_text(camp.spec_to_vnnlib(spec), n_inputs=net.n_inputs,
                                 n_outputs=net.n_outputs)
        assert len(back.cases) == len(spec.cases), fam
        for a, b in zip(spec.cases, back.cases):
            assert np.array_equal(a.lb, b.lb) and np.array_equal(a.ub, b.ub), fam
            assert len(a.disjuncts) == len(b.disjuncts)
            for da, db in zip(a.disjuncts, b.disjuncts):
                keep = np.any(da.C != 0, axis=1)
                assert np.array_equal(da.C[keep], db.C) and np.array_equal(da.d[keep], db.d)
