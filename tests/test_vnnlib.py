"""VNN-LIB 1.0 parser: oracle agreement, tricky syntax, errors with line numbers, random DNFs."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import all_vnnlib
from dpllnn.errors import SpecError
from dpllnn.io.vnnlib import MAX_TERMS, parse_vnnlib, parse_vnnlib_text

H = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + \
    "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))           # lines 1-5
BOX = "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n(assert (>= X_1 0))\n"
L = 10                                                                 # first line after H + BOX


def p(text, **kw):
    return parse_vnnlib_text(text, **kw)


def rows(dj):
    """A disjunct as a sorted tuple of (row..., d) tuples (row order is not meaningful)."""
    return tuple(sorted(tuple(np.append(dj.C[i], dj.d[i]).tolist()) for i in range(len(dj.d))))


def canon(spec):
    """A spec as a set of (box, frozenset of disjuncts)."""
    return {((tuple(c.lb), tuple(c.ub)), frozenset(rows(d) for d in c.disjuncts)) for c in spec.cases}


def canon_oracle(res, n_out):
    out = set()
    for box, djs in res:
        b = np.asarray(box, dtype=float) + 0.0
        ds = set()
        for C, d in djs:
            C = np.asarray(C, dtype=float).reshape(-1, n_out)
            d = np.asarray(d, dtype=float).reshape(-1) + 0.0
            ds.add(tuple(sorted(tuple(np.append(C[i], d[i]).tolist()) for i in range(len(d)))))
        out.add(((tuple(b[:, 0]), tuple(b[:, 1])), frozenset(ds)))
    return out


# ---------------------------------------------------------------------------------------------
# every benchmark property converted to VNN-LIB 2.0: the 2.0 front end gives the same cases and
# disjuncts; so does the official package's compat.transform where it is right (at most one
# disjunctive assert: it joins several with "or")

def canon_query(q):
    """A 2.0 query of one network as canon() of its spec (input columns must be zero)."""
    out = set()
    for c in q.cases:
        djs = set()
        for d in c.disjuncts:
            assert not np.any(d.C[:, :q.n_x])
            djs.add(tuple(sorted(tuple(np.append(d.C[i, q.n_x:], d.d[i]).tolist())
                                 for i in range(len(d.d)))))
        out.add(((tuple(c.lb), tuple(c.ub)), frozenset(djs)))
    return out


def test_2_0_conversions_agree_on_all_benchmark_files(bench_root, tmp_path):
    vnnlib = pytest.importorskip("vnnlib")
    import vnnlib.compat

    from dpllnn.io.vnnlib2 import parse_query
    from vnnlib_convert import convert

    files = all_vnnlib(bench_root)
    assert files, "no .vnnlib files under the benchmarks root"
    budget_s, t_start, checked, by_compat, skipped, bad = 40.0, time.perf_counter(), 0, 0, [], []
    for f in files:
        if time.perf_counter() - t_start > budget_s:
            skipped.append(f.name)
            continue
        text = f.read_text()
        spec = parse_vnnlib(f)
        q2 = tmp_path / "q.vnnlib"
        q2.write_text(convert(text, spec.n_inputs, spec.n_outputs))
        want = canon(spec)
        if canon_query(parse_query(q2)) != want:
            bad.append(str(f))
        checked += 1
        if text.count("(or") <= 1 and len(text) < 2_000_000:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = vnnlib.compat.transform(vnnlib.parse_query_file(str(q2)))
            got = canon_oracle([(c.input_box, [(p.coeff_matrix, p.rhs)
                                               for p in c.output_constraints]) for c in ref],
                               spec.n_outputs)
            by_compat += 1
            if got != want:
                bad.append(f"{f} (compat)")
    assert not bad, f"disagree: {bad[:10]}"
    assert checked >= min(len(files), 50), f"checked only {checked}; skipped {skipped[:5]}"
    assert by_compat >= min(checked // 2, 20)


def test_benchmark_shapes(bench_root):
    acas = parse_vnnlib(bench_root / "vnncomp2021" / "acasxu" / "prop_6.vnnlib", 5, 5)
    assert len(acas.cases) == 2 and [len(c.disjuncts) for c in acas.cases] == [4, 4]
    mn = sorted((bench_root / "vnncomp2022" / "mnist_fc").rglob("*.vnnlib"))
    if mn:
        s = parse_vnnlib(mn[0], 784, 10)
        assert len(s.cases) == 1 and len(s.cases[0].disjuncts) == 9
        assert all(d.C.shape == (1, 10) for d in s.cases[0].disjuncts)


# ---------------------------------------------------------------------------------------------
# tricky syntax

def test_plain_box_and_output_rows():
    s = p(H + BOX + "(assert (<= Y_0 Y_1))\n(assert (>= Y_2 -1e-5))\n(assert (<= Y_1 3))")
    assert (s.n_inputs, s.n_outputs) == (2, 3) and s.source == "<string>"
    (c,) = s.cases
    np.testing.assert_array_equal(c.lb, [0, 0])
    np.testing.assert_array_equal(c.ub, [1, 1])
    (d,) = c.disjuncts
    assert c.lb.dtype == np.float64 and d.C.dtype == np.float64 and d.C.shape == (3, 3)
    assert set(rows(d)) == {(1.0, -1.0, 0.0, 0.0), (0.0, 0.0, -1.0, 1e-5), (0.0, 1.0, 0.0, 3.0)}


def test_or_over_inputs_gives_two_cases_with_shared_output_dnf():
    t = H + """(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1))
                            (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1))))
    (assert (or (and (<= Y_1 Y_0)) (and (<= Y_2 Y_0))))"""
    s = p(t)
    assert [c.lb.tolist() for c in s.cases] == [[0, 0], [2, 0]]          # first-seen order
    for c in s.cases:
        assert {rows(d) for d in c.disjuncts} == {((-1.0, 1.0, 0.0, 0.0),), ((-1.0, 0.0, 1.0, 0.0),)}


def test_or_inside_and_and_after_or():
    t = H + BOX + """(assert (and (<= Y_0 1) (or (<= X_0 0.5) (>= X_0 0.75))))
    (assert (and (>= Y_1 2)))"""
    s = p(t)
    assert [(c.lb.tolist(), c.ub.tolist()) for c in s.cases] == [([0, 0], [0.5, 1]), ([0.75, 0], [1, 1])]
    for c in s.cases:
        (d,) = c.disjuncts
        assert set(rows(d)) == {(1.0, 0.0, 0.0, 1.0), (0.0, -1.0, 0.0, -2.0)}


def test_same_box_terms_group_into_one_case():
    t = H + BOX + "(assert (or (and (<= X_0 1) (<= Y_0 1)) (<= Y_1 1) (and (>= X_0 0) (<= Y_2 1))))"
    (c,) = p(t).cases
    assert [rows(d) for d in c.disjuncts] == [((1.0, 0.0, 0.0, 1.0),), ((0.0, 1.0, 0.0, 1.0),),
                                              ((0.0, 0.0, 1.0, 1.0),)]


def test_term_without_output_part_is_a_zero_row_disjunct():
    s = p(H + BOX + "(assert (or (<= X_0 0.5) (and (>= X_0 0.5) (<= Y_0 0))))")
    assert len(s.cases) == 2
    d0 = s.cases[0].disjuncts[0]
    assert d0.C.shape == (0, 3) and d0.d.shape == (0,) and d0.holds(np.zeros(3))


def test_constants_left_scientific_negative_comments_crlf_bom():
    t = ("\ufeff; header ; comment\r\n" + H.replace("\n", " ; decl\r\n") +
         "(assert ; inside\n (>= 1.5e0 X_0))\n(assert (<= -2.5E-1 X_0))\n"
         "(assert\n(<=\nX_1\n+1e-5\n)\n)\n(assert (>= X_1 -.5))(assert (<= -3 Y_0))")
    (c,) = p(t).cases
    assert c.lb.tolist() == [-0.25, -0.5] and c.ub.tolist() == [1.5, 1e-5]
    assert rows(c.disjuncts[0]) == ((-1.0, 0.0, 0.0, 3.0),)


def test_strict_is_non_strict_and_constant_atoms():
    s = p(H + BOX + "(assert (< Y_0 Y_1))(assert (> X_0 0.25))(assert (< 1 2))(assert (<= 2 2))")
    (c,) = s.cases
    assert c.lb[0] == 0.25 and rows(c.disjuncts[0]) == ((1.0, -1.0, 0.0, 0.0),)
    assert p(H + BOX + "(assert (> 1 2))").cases == []                  # false: empty unsafe set
    assert p(H + BOX + "(assert (or false (<= Y_0 1)))").n_disjuncts == 1
    assert p(H + BOX + "(assert (and true (<= X_0 X_0)))").n_disjuncts == 1


def test_linear_terms_and_chains():
    t = H + """(assert (<= (* 2 X_0) 1))(assert (>= (- X_0) -3))(assert (<= 0 X_0))
    (assert (<= -1 X_1 (/ 1 2)))(assert (<= (+ Y_0 (* -1 Y_1) 3) (- Y_2 0.5)))"""
    (c,) = p(t).cases
    assert c.lb.tolist() == [0, -1] and c.ub.tolist() == [0.5, 0.5]
    assert rows(c.disjuncts[0]) == ((1.0, -1.0, -1.0, -3.5),)


def test_nested_and_or_at_depth_and_deep_nesting():
    t = H + BOX + "(assert (and (or (and (or (<= Y_0 1) (<= Y_1 1)) (<= Y_2 1)) (<= Y_0 5))))"
    assert p(t).n_disjuncts == 3
    deep = H + BOX + "(assert " + "(and " * 20000 + "(<= Y_0 1)" + ")" * 20000 + ")"
    assert p(deep).n_disjuncts == 1
    deep_or = H + BOX + "(assert " + "(or (<= Y_1 0) " * 3000 + "(<= Y_0 1)" + ")" * 3000 + ")"
    assert p(deep_or).n_disjuncts == 3001


def test_big_and_of_atoms_inside_or():
    atoms = " ".join(f"(<= X_0 {v})" for v in (0.9, 0.8))
    s = p(H + BOX + f"(assert (or (and {atoms} (<= Y_0 0)) (and {atoms} (<= Y_1 0))))")
    (c,) = s.cases
    assert c.ub[0] == 0.8 and len(c.disjuncts) == 2
    s = p(H + BOX + f"(assert (or {atoms}))")            # a run of atoms under or: 2 terms
    assert [c.ub[0] for c in s.cases] == [0.9, 0.8]


def test_declaration_order_is_free_and_empty_box_kept():
    t = "(declare-const Y_0 Real)\n(assert (<= X_0 0))(assert (>= X_0 1))\n(declare-const X_0 Real)"
    (c,) = p(t).cases
    assert c.is_empty


def test_large_file_is_fast():
    n = 75_000
    text = ("".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + "(declare-const Y_0 Real)\n"
            + "(assert (and\n" + "".join(f" (<= X_{i} {i + 0.5!r}) (>= X_{i} {-i - 0.25!r})\n"
                                         for i in range(n)) + "))\n(assert (<= Y_0 0))\n")
    best = min(_timed(text) for _ in range(2))
    s = p(text)
    assert s.cases[0].ub[-1] == n - 0.5 and s.cases[0].lb[7] == -7.25
    assert best < 2.0, f"150k bounds took {best:.2f} s"     # ~0.4 s unloaded; generous for CI


def _timed(text):
    t0 = time.perf_counter()
    p(text)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# errors: SpecError with the 1-based line of the offending token

@pytest.mark.parametrize("tail, line, needle", [
    ("(assert (<= Y_0 1)))", L, "unbalanced ')'"),
    ("\n(assert (and (<= Y_0 1)\n", L + 1, "never closed"),
    ("(assert (foo Y_0 1))", L, "unknown operator 'foo'"),
    ("(assert (<= Y_7 1))", L, "undeclared variable 'Y_7'"),
    ("\n\n(assert (and (<= Y_0 1) (<= X_9 1)))", L + 2, "undeclared variable 'X_9'"),
    ("(declare-const X_0 Real)", L, "duplicate declaration of 'X_0'"),
    ("(declare-const Z Real)", L, "unsupported variable name 'Z'"),
    ("(declare-const X_2 Int)", L, "unsupported sort"),
    ("(assert (<= Y_0 nan))", L, "malformed number 'nan'"),
    ("(assert (<= X_0 inf))", L, "malformed number 'inf'"),
    ("(assert (<= X_0 1e999))", L, "not finite"),
    ("(assert (<= X_0 1_0))", L, "malformed number"),
    ("(assert (and\n (<= X_0\n X_1)))", L + 1, "non-box input constraint over X_0, X_1"),
    ("(assert (<= X_0 Y_1))", L, "mixes inputs X and outputs Y"),
    ("(assert (<= (* X_0 X_1) 1))", L, "nonlinear"),
    ("(assert (and (assert (<= Y_0 1))))", L, "only allowed at top level"),
    ("(<= Y_0 1)", L, "expected a command at top level"),
    ("(check-sat)(foo)", L, "unknown command 'foo'"),
    ("(assert (<= Y_0 1) (<= Y_1 1))", L, "exactly one formula"),
    ("(assert X_0)", L, "expected a formula"),
    ("(assert (and (or (<= Y_0 1) (<= Y_1 1)) \n" + "(or (<= Y_0 1) (<= Y_1 1))" * 17 + "))",
     L, "DNF too large"),
    ("hello", L, "unexpected 'hello'"),
])
def test_errors_have_line_numbers(tail, line, needle):
    with pytest.raises(SpecError) as ei:
        p(H + BOX + tail)
    e = ei.value
    assert needle in e.msg and e.line == line and e.path == "<string>", (e.line, str(e))
    assert str(e).startswith(f"<string>:{line}: ")


def test_missing_bound_names_variable():
    with pytest.raises(SpecError, match="X_1 has no lower bound") as ei:
        p(H + "(assert (<= X_0 1))(assert (>= X_0 0))\n(assert (<= X_1 1))")
    assert ei.value.line == 2                                            # X_1's declaration
    with pytest.raises(SpecError, match="X_0 has no upper bound"):
        p(H + "(assert (or (and (<= X_0 1) (>= X_0 0)) (>= X_0 0)))(assert (<= X_1 1))"
              "(assert (>= X_1 0))")


def test_count_mismatch_and_gaps():
    with pytest.raises(SpecError) as ei:
        p(H + BOX, n_inputs=784)
    assert ei.value.line is None
    assert ei.value.msg == "property declares 2 inputs X_0..X_1 but the network has 784"
    with pytest.raises(SpecError, match="declares 3 outputs Y_0..Y_2 but the network has 10"):
        p(H + BOX, n_outputs=10)
    assert p(H + BOX, n_inputs=2, n_outputs=3).n_inputs == 2
    with pytest.raises(SpecError, match="Y_1 is not declared"):
        p("(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_2 Real)")
    with pytest.raises(SpecError, match="no input variables"):
        p("(declare-const Y_0 Real)")


def test_file_errors(tmp_path):
    for path, needle in [(tmp_path / "nope.vnnlib", "no such file"), (tmp_path, "directory")]:
        with pytest.raises(SpecError, match=needle) as ei:
            parse_vnnlib(path)
        assert ei.value.line is None and ei.value.path == str(path)
    empty = tmp_path / "empty.vnnlib"
    empty.write_text("  \n")
    with pytest.raises(SpecError, match="empty"):
        parse_vnnlib(empty)
    comments = tmp_path / "c.vnnlib"
    comments.write_text("; nothing\n; here\n")
    with pytest.raises(SpecError, match="empty"):
        parse_vnnlib(comments)
    bad = tmp_path / "latin1.vnnlib"
    bad.write_bytes(b"; caf\xe9\n(declare-const X_0 Real)")
    with pytest.raises(SpecError, match="UTF-8") as ei:
        parse_vnnlib(bad)
    assert ei.value.line is None
    good = tmp_path / "g.vnnlib"
    good.write_text(H + BOX)
    assert parse_vnnlib(good).source == str(good)


def test_dnf_limit_constant():
    assert MAX_TERMS == 100_000
    ok = H + BOX + "(assert (and " + "(or (<= Y_0 1) (<= Y_1 1))" * 16 + "))"   # 65,536 terms
    assert p(ok).n_disjuncts == 2 ** 16


# ---------------------------------------------------------------------------------------------
# random DNF structures: parse(render(f)) classifies points exactly like f

GRID = [-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]
num = st.sampled_from(GRID)
xvar = st.sampled_from(["X_0", "X_1"])
yvar = st.sampled_from(["Y_0", "Y_1", "Y_2"])
op = st.sampled_from(["<=", ">=", "<", ">"])
atom = st.one_of(
    st.tuples(op, xvar, num), st.tuples(op, num, xvar),
    st.tuples(op, yvar, num), st.tuples(op, num, yvar), st.tuples(op, yvar, yvar))
formula = st.recursive(atom, lambda sub: st.tuples(st.sampled_from(["and", "or"]),
                                                   st.lists(sub, min_size=1, max_size=3)),
                       max_leaves=8)


def render(f):
    if f[0] in ("and", "or"):
        return f"({f[0]} " + " ".join(render(g) for g in f[1]) + ")"
    return f"({f[0]} {f[1]} {f[2]})"


def holds(f, env):
    if f[0] == "and":
        return all(holds(g, env) for g in f[1])
    if f[0] == "or":
        return any(holds(g, env) for g in f[1])
    a, b = (env[t] if isinstance(t, str) else t for t in f[1:])
    return a <= b if f[0] in ("<=", "<") else a >= b                   # strict read as non-strict


@settings(max_examples=150, deadline=None)
@given(st.lists(formula, min_size=1, max_size=3), st.data())
def test_random_dnf_round_trip(asserts, data):
    text = H + "(assert (<= X_0 1))\n(assert (>= X_0 -1))\n(assert (<= X_1 1))\n(assert (>= X_1 -1))\n"
    text += "\n".join(f"(assert {render(f)})" for f in asserts)
    spec = p(text)
    pts = data.draw(st.lists(st.tuples(*[st.sampled_from(GRID + [1.5, -1.5])] * 5),
                             min_size=20, max_size=20))
    for pt in pts:
        env = dict(zip(["X_0", "X_1", "Y_0", "Y_1", "Y_2"], pt))
        x, y = np.array(pt[:2]), np.array(pt[2:])
        want = all(abs(v) <= 1 for v in pt[:2]) and all(holds(f, env) for f in asserts)
        got = any(c.contains(x) and any(d.holds(y) for d in c.disjuncts) for c in spec.cases)
        assert got == want, (text, pt)


def test_whitespace_inside_parentheses():
    s = p("( declare-const X_0 Real )\n(\tdeclare-const Y_0 Real)( assert ( <= X_0 1 ) )"
          "(assert(>= X_0 0))( assert\n( and ( <= Y_0 2 ) ( >= Y_0 -2 ) ) )")
    (c,) = s.cases
    assert (c.lb.tolist(), c.ub.tolist()) == ([0.0], [1.0])
    assert rows(c.disjuncts[0]) == ((-1.0, 2.0), (1.0, 2.0))
