"""Hostile input for the VNN-LIB front end (hypothesis, seeded: the same examples every CI run).

Every input must end in a :class:`dpllnn.spec.Spec` whose numbers are all finite, or in a
:class:`dpllnn.errors.SpecError` -- never another exception, a hang or a wrong meaning.  The
number of examples per strategy is ``DPLLNN_FUZZ_EXAMPLES`` (default 150); run with a larger
value and ``DPLLNN_FUZZ_RANDOM=1`` (fresh random seeds) for a longer campaign.

Semantics decided here (see docs/edge_cases.md): NaN or an infinity anywhere is an error; an
empty input box (``lb > ub``) is kept and verifies as ``unsat``; duplicate declarations, unknown
operators, variables outside ``X_0..X_{n-1}``/``Y_0..Y_{m-1}`` and a count that differs from the
network's are errors (exit code 2).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpllnn.errors import DpllnnError, SpecError
from dpllnn.io.vnnlib import parse_vnnlib, parse_vnnlib_text
from dpllnn.spec import Spec

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "dpllnn" / "examples"
N_EX = int(os.environ.get("DPLLNN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N_EX, derandomize=not os.environ.get("DPLLNN_FUZZ_RANDOM"),
                deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

SMALL = """; a small property
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 -1.0))
(assert (<= X_0 1.0))
(assert (>= X_1 -0.5))
(assert (<= X_1 2e-1))
(assert (or (and (<= Y_0 Y_1) (>= Y_0 0.25)) (and (<= (+ Y_0 (* 2 Y_1)) -3) (< Y_1 1e-5))))
"""
SEEDS = [SMALL] + [p.read_text() for p in sorted(EXAMPLES.glob("*.vnnlib"))]
HOSTILE = ["(", ")", "((", "))", " ", "\n", ";", "assert", "declare-const", "Real", "Int", "Bool",
           "X_0", "X_1", "X_2", "Y_0", "Y_1", "Y_7", "X_", "X_01", "X_-1", "Y_1e3",
           "X_99999999999999999999", "<=", ">=", "<", ">", "=", "and", "or", "not", "=>", "+",
           "-", "*", "/", "0", "-0", "1", "-1.5", ".5", "5.", "1e-5", "1E+3", "1e400", "-1e400",
           "1e-400", "1e308", "-1e308", "nan", "NaN", "inf", "-inf", "Infinity", "0x10", "1_0",
           "1e", "--1", "true", "false", "check-sat", "get-model", "(check-sat)", "\ufeff",
           "\x00", "é", "\t", "\r\n", "(declare-const X_0 Real)", "(declare-const Y_0 Real)",
           "(assert (<= X_0 nan))", "(assert (>= X_0 1e400))", "(assert (<= Y_0 -inf))",
           "(assert (or))", "(assert (and))", "(assert)", "(and", "(or", "(* 1e300 1e300 Y_0)",
           "(+ 1e308 1e308)", "(- 1e308 -1e308)", "(/ Y_0 0)", "(/ Y_0 1e-320)"]


def _check_spec(spec: Spec, n_in=None, n_out=None):
    """Invariants of every successfully parsed property."""
    assert isinstance(spec, Spec)
    if n_in is not None:
        assert spec.n_inputs == n_in and spec.n_outputs == n_out
    for case in spec.cases:
        assert case.lb.shape == (spec.n_inputs,) and case.ub.shape == (spec.n_inputs,)
        assert np.all(np.isfinite(case.lb)) and np.all(np.isfinite(case.ub)), "non-finite box"
        for dj in case.disjuncts:
            assert dj.C.ndim == 2 and dj.C.shape[1] == spec.n_outputs
            assert dj.d.shape == (dj.C.shape[0],)
            assert np.all(np.isfinite(dj.C)) and np.all(np.isfinite(dj.d)), "non-finite row"


def _parse(text, **kw):
    """Spec (checked) or None for a SpecError; anything else propagates and fails the test."""
    try:
        spec = parse_vnnlib_text(text, path="<fuzz>", **kw)
    except SpecError as e:
        msg = str(e)
        assert msg and "\n" not in msg.strip(), f"multi-line error: {msg!r}"
        return None
    _check_spec(spec, kw.get("n_inputs"), kw.get("n_outputs"))
    return spec


# ---- mutation fuzzing ------------------------------------------------------------------------
@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    toks = re.findall(r"\(|\)|[^\s()]+|\s+", text)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 5))
        if not toks:
            toks = [draw(st.sampled_from(HOSTILE))]
            continue
        i = draw(st.integers(0, len(toks) - 1))
        j = min(len(toks), i + draw(st.integers(1, 12)))
        if kind == 0:
            del toks[i:j]
        elif kind == 1:
            toks[i:i] = toks[i:j]
        elif kind == 2:
            toks.insert(i, " " + draw(st.sampled_from(HOSTILE)) + " ")
        elif kind == 3:
            toks[i] = draw(st.sampled_from(HOSTILE))
        elif kind == 4:           # replace a number by a hostile one
            nums = [k for k, t in enumerate(toks) if re.fullmatch(r"[-+.\deE]+", t)]
            if nums:
                toks[draw(st.sampled_from(nums))] = draw(st.sampled_from(
                    ["nan", "inf", "-inf", "1e400", "-1e400", "1e-400", "1e308", "0", "-0.0",
                     "123456789012345678901234567890", "1" * 400]))
        else:                     # swap two chunks
            k = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[k] = toks[k], toks[i]
    return "".join(toks)


@FUZZ
@given(mutated(), st.booleans())
def test_fuzz_mutated_files(text, with_sizes):
    kw = {"n_inputs": 2, "n_outputs": 2} if with_sizes and text.count("X_") < 60 else {}
    _parse(text, **kw)


@FUZZ
@given(st.lists(st.sampled_from(HOSTILE), max_size=60))
def test_fuzz_token_soup(toks):
    _parse(" ".join(toks))


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("b") / "f.vnnlib"
    p.write_bytes(data)
    try:
        spec = parse_vnnlib(p)
    except SpecError:
        return
    _check_spec(spec)


# ---- semantic fuzzing: random formulas, direct evaluation vs parsed Spec --------------------
_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
        "<": lambda a, b: a <= b, ">": lambda a, b: a >= b}   # strict read as non-strict


@st.composite
def formulas(draw, n_in, n_out, depth=3):
    """(text, evaluator(x, y) -> bool) over small dyadic constants (exact float arithmetic)."""
    const = st.integers(-8, 8).map(lambda v: v / 4)

    def atom():
        op = draw(st.sampled_from(sorted(_OPS)))
        if draw(st.booleans()):
            i, c = draw(st.integers(0, n_in - 1)), draw(const)
            if draw(st.booleans()):
                return f"({op} X_{i} {c!r})", lambda x, y, i=i, c=c, op=op: _OPS[op](x[i], c)
            return f"({op} {c!r} X_{i})", lambda x, y, i=i, c=c, op=op: _OPS[op](c, x[i])
        k = draw(st.integers(1, min(3, n_out)))
        js = draw(st.lists(st.integers(0, n_out - 1), min_size=k, max_size=k, unique=True))
        cs = [draw(st.integers(-3, 3)) for _ in js]
        c = draw(const)
        style = draw(st.integers(0, 2))
        if style == 0:
            term = "(+ " + " ".join(f"(* {cj} Y_{j})" for cj, j in zip(cs, js)) + ")"
        elif style == 1:
            term = "(+ " + " ".join(f"(* Y_{j} {cj})" for cj, j in zip(cs, js)) + " 0)"
        else:
            term = "(- (+ " + " ".join(f"(* {cj} Y_{j})" for cj, j in zip(cs, js)) + ") 0.0)"

        def ev(x, y, cs=cs, js=js, c=c, op=op):
            return _OPS[op](sum(cj * y[j] for cj, j in zip(cs, js)), c)
        return f"({op} {term} {c!r})", ev

    def node(d):
        if d == 0 or draw(st.integers(0, 2)) == 0:
            return atom()
        op = draw(st.sampled_from(["and", "or"]))
        kids = [node(d - 1) for _ in range(draw(st.integers(1, 3)))]
        text = f"({op} " + " ".join(k[0] for k in kids) + ")"
        if op == "and":
            return text, lambda x, y, kids=kids: all(k[1](x, y) for k in kids)
        return text, lambda x, y, kids=kids: any(k[1](x, y) for k in kids)

    return node(depth)


@st.composite
def properties(draw):
    n_in, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    decls = [f"(declare-const X_{i} Real)" for i in range(n_in)] + \
        [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    if draw(st.booleans()):
        decls = draw(st.permutations(decls))
    box = []
    for i in range(n_in):
        lo = draw(st.integers(-8, 4)) / 4
        hi = lo + draw(st.integers(-1, 8)) / 4           # -1: an empty box now and then
        box.append((lo, hi))
    asserts = [f"(assert (>= X_{i} {lo!r}))\n(assert (<= X_{i} {hi!r}))"
               for i, (lo, hi) in enumerate(box)]
    evals = [lambda x, y, box=box: all(lo <= x[i] <= hi for i, (lo, hi) in enumerate(box))]
    for _ in range(draw(st.integers(1, 3))):
        text, ev = draw(formulas(n_in, n_out))
        asserts.append(f"(assert {text})")
        evals.append(ev)
    asserts = draw(st.permutations(asserts))
    return n_in, n_out, "\n".join(list(decls) + list(asserts)) + "\n", \
        lambda x, y: all(e(x, y) for e in evals)


def _spec_member(spec, x, y) -> bool:
    for case in spec.cases:
        if np.all(case.lb <= x) and np.all(x <= case.ub):
            for dj in case.disjuncts:
                if np.all(dj.C @ y <= dj.d):
                    return True
    return False


@FUZZ
@given(properties(), st.randoms(use_true_random=False))
def test_fuzz_semantics_random_formulas(prop, rnd):
    n_in, n_out, text, truth = prop
    spec = _parse(text, n_inputs=n_in, n_outputs=n_out)
    assert spec is not None, text
    grid = [v / 4 for v in range(-10, 11)]       # exact dyadics, ties included
    for _ in range(60):
        x = np.array([rnd.choice(grid) for _ in range(n_in)])
        y = np.array([rnd.choice(grid) for _ in range(n_out)])
        assert _spec_member(spec, x, y) == truth(x, y), (text, x, y)


# ---- specific edge cases (documented in docs/edge_cases.md) ----------------------------------
HEAD = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"


@pytest.mark.parametrize("body", [
    "(assert (<= X_0 nan))\n(assert (>= X_0 0))",
    "(assert (<= X_0 NaN))\n(assert (>= X_0 0))",
    "(assert (<= X_0 inf))\n(assert (>= X_0 0))",
    "(assert (<= X_0 1e400))\n(assert (>= X_0 0))",
    "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 nan))",
    "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 -1e400))",
    "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= (* 1e300 1e300 Y_0) 1))",
    "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= (+ Y_0 1e308 1e308) 0))",
    "(assert (<= X_0 1))\n(assert (>= X_0 0))\n"
    "(assert (<= (+ (* 1e200 1e200 Y_0) (* -1e200 1e200 Y_0)) 1))",
    "(assert (<= (* 1e300 1e300 X_0) 1))\n(assert (>= X_0 0))",
    "(assert (<= (/ X_0 1e-320) 1))\n(assert (>= X_0 0))",
])
def test_non_finite_is_an_error(body):
    with pytest.raises(SpecError):
        parse_vnnlib_text(HEAD + body, n_inputs=1, n_outputs=1)


def test_empty_box_is_kept_as_empty_case():
    spec = parse_vnnlib_text(HEAD + "(assert (<= X_0 0))\n(assert (>= X_0 1))\n(assert (<= Y_0 0))",
                             n_inputs=1, n_outputs=1)
    assert len(spec.cases) == 1 and spec.cases[0].is_empty


def test_zero_width_box_is_a_point():
    spec = parse_vnnlib_text(HEAD + "(assert (<= X_0 0.5))\n(assert (>= X_0 0.5))\n"
                             "(assert (<= Y_0 0))", n_inputs=1, n_outputs=1)
    assert spec.cases[0].lb[0] == spec.cases[0].ub[0] == 0.5


@pytest.mark.parametrize("text, needle", [
    (HEAD + "(declare-const X_0 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))", "duplicate"),
    ("(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(assert (<= X_1 1))\n"
     "(assert (>= X_1 0))", None),
    (HEAD + "(assert (<= X_0 1))", None),                       # no lower bound
    (HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))", None),
    (HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= (* Y_0 Y_0) 1))", None),
    (HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_0 Y_0))", None),
    (HEAD + "(assert (<= X_0 1)", "unbalanced"),
    (HEAD + "(assert (<= X_0 1)))", "unbalanced"),
    ("(declare-const X_0 Int)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))", "sort"),
])
def test_malformed_is_an_error(text, needle):
    with pytest.raises(SpecError) as ei:
        parse_vnnlib_text(text, n_inputs=1, n_outputs=1)
    if needle:
        assert needle in str(ei.value).lower()


def test_wrong_dimensions_is_an_error():
    text = HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 1))"
    for n_in, n_out in [(2, 1), (1, 2), (0, 1)]:
        with pytest.raises(SpecError):
            parse_vnnlib_text(text, n_inputs=n_in, n_outputs=n_out)


@pytest.mark.timeout(120)
def test_deep_nesting_and_long_lines():
    depth = 200_000
    text = HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n" + \
        "(assert " + "(and " * depth + "(<= Y_0 1)" + ")" * depth + ")\n"
    spec = _parse(text, n_inputs=1, n_outputs=1)
    assert spec is not None and len(spec.cases) == 1
    unbalanced = HEAD + "(assert " + "(or " * depth + "(<= Y_0 1)"
    assert _parse(unbalanced, n_inputs=1, n_outputs=1) is None
    huge = HEAD + "(assert (<= X_0 " + "9" * 100_000 + "))\n(assert (>= X_0 0))\n"
    assert _parse(huge, n_inputs=1, n_outputs=1) is None     # 1e100000 is not finite


def test_dnf_blowup_is_an_error_not_a_hang():
    ors = " ".join(f"(or (<= Y_0 {i}) (>= Y_0 {i + 0.5}))" for i in range(40))
    text = HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (and " + ors + "))\n"
    with pytest.raises(SpecError) as ei:
        parse_vnnlib_text(text, n_inputs=1, n_outputs=1)
    assert "DNF" in str(ei.value)


def test_errors_are_dpllnn_errors():
    assert issubclass(SpecError, DpllnnError)
    assert math.isinf(float("1e400"))
