"""VNN-LIB 1.0 properties -> :class:`dpllnn.spec.Spec`.

Reference: the VNN-LIB 1.0 standard (https://www.vnnlib.org, "VNN-LIB: a standard format for
neural network verification properties", SMT-LIB 2 syntax over ``Real`` constants ``X_i`` for the
inputs and ``Y_j`` for the outputs) as used by VNN-COMP.  The file describes the *unsafe* set;
all ``assert`` commands are conjoined.

Supported syntax
----------------
* ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)``; indices must be ``0..n-1``;
  declarations may come after their first use (SMT-LIB asks for before; we are lenient).
* comparisons ``<= >= < >`` (chainable) between linear terms: numbers (``-0.5``, ``1e-5``),
  variables, ``(+ ...)``, ``(- ...)``, ``(* c t)``, ``(/ t c)``.  Strict comparisons are read as
  non-strict, the VNN-COMP convention: it enlarges the unsafe set, so ``unsat`` stays sound, and a
  ``sat`` witness is replayed against the exact property anyway.
* ``and`` / ``or`` / ``true`` / ``false`` nested at any depth, over inputs, outputs or both; the
  formula is put in DNF (at most :data:`MAX_TERMS` terms).
* an atom over inputs must reduce to a bound on one ``X_i``; an atom over outputs becomes a row of
  ``C @ y <= d``; an atom mixing inputs and outputs is an error.
* ``;`` comments; ``check-sat``, ``get-model``, ``exit``, ``set-logic``, ``set-info`` and
  ``set-option`` are accepted and ignored.

Speed: one group-less ``re.findall`` turns whole declarations, whole ``(assert (op a b))``
commands and whole atoms into single tokens; the plain ``X_i op number`` ones are then converted
in bulk (numpy), so 150,000 box bounds parse in about 0.4 s.  Everything else goes through an
explicit-stack shift-reduce parser (no recursion: any nesting depth).  Error line numbers are
found afterwards by re-scanning the text, so they cost nothing on valid input.
"""
from __future__ import annotations

import math
import re

import numpy as np

from ..errors import SpecError
from ..spec import Spec
from .gz import read_vnnlib_text
from .vnnlib_dnf import MAX_TERMS, Block, DnfAlgebra

__all__ = ["parse_vnnlib", "parse_vnnlib_text", "MAX_TERMS"]

_TOKEN_RE = re.compile(r"""
    \(\s*assert\s*\(\s*(?:<=|>=|<|>)\s+[^\s()]+\s+[^\s()]+\s*\)\s*\)   # (assert (op a b))
  | \(\s*declare-const\s+[^\s()]+\s+[^\s()]+\s*\)                   # (declare-const n s)
  | \(\s*(?:<=|>=|<|>)\s+[^\s()]+\s+[^\s()]+\s*\)                     # (op a b)
  | [()] | [^\s()]+                                                      # paren or symbol
""", re.VERBOSE)
_COMMENT_RE = re.compile(r";[^\n]*")
_NUM_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_VAR_RE = re.compile(r"([XY])_(0|[1-9]\d*)")
_IGNORED = frozenset({"check-sat", "get-model", "exit", "set-logic", "set-info", "set-option"})
_CMP = frozenset({"<=", ">=", "<", ">"})
_ARITH = frozenset({"+", "-", "*", "/"})
_COMPOUND = frozenset({"(a", "(d", "(<", "(>"})    # first two characters of compound tokens
_WS_HEADS = frozenset("(" + c for c in " \t\n\r\f\v")
_PARENS = str.maketrans("()", "  ")
_NUM_CHARS = frozenset("0123456789.eE+- ")


def parse_vnnlib(path, n_inputs: int | None = None, n_outputs: int | None = None) -> Spec:
    """Parse a VNN-LIB 1.0 property file.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.vnnlib`` file (UTF-8, an optional BOM is skipped).
    n_inputs, n_outputs : int, optional
        The network's input and output sizes.  When given, the declared ``X_i`` / ``Y_j`` must
        number exactly as many (this is where an input-count mismatch between network and
        property is reported); when omitted they are inferred from the declarations.

    Returns
    -------
    Spec
        ``spec.cases[k].lb``, ``.ub`` : float64 arrays, shape ``(n_inputs,)`` (``lb > ub`` is
        kept: an empty box); ``spec.cases[k].disjuncts[m].C`` : float64, shape
        ``(rows, n_outputs)`` and ``.d`` : float64, shape ``(rows,)``, meaning ``C @ y <= d``
        (``rows`` may be 0: any output).  DNF terms with equal boxes share one case, in
        first-seen order.  A property whose formula is false has no cases.

    Raises
    ------
    SpecError
        With ``line=None`` for a missing, unreadable, empty or non-UTF-8 file and for an
        input/output count mismatch; otherwise with the 1-based line of the offending token
        (syntax errors, unbalanced parentheses, unknown operators, undeclared or duplicate
        variables, NaN/inf numbers, non-box input constraints, mixed input/output atoms, an
        ``X_i`` without a lower or upper bound, DNF larger than :data:`MAX_TERMS`).
    """
    p = str(path)
    text = read_vnnlib_text(p)          # also .vnnlib.gz
    return parse_vnnlib_text(text, path=p, n_inputs=n_inputs, n_outputs=n_outputs)


def parse_vnnlib_text(text: str, path: str = "<string>", n_inputs: int | None = None,
                      n_outputs: int | None = None) -> Spec:
    """Parse VNN-LIB 1.0 text; see :func:`parse_vnnlib` for parameters, result and errors.

    Parameters
    ----------
    text : str
        The property.
    path : str
        Name used in error messages and as ``Spec.source``.
    """
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise SpecError(path, None, "empty file")
    return _Parser(text, path).run(n_inputs, n_outputs)


class _Run:
    """Consecutive atom tokens ``lo..hi-1`` inside one ``( ... )``."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi


class _Parser(DnfAlgebra):
    """One parse.  Stack items are ``(value, token index)``; a value is a raw token ``str``, a
    :class:`_Run`, a linear term ``(coefs, const)`` with coefs ``{(kind, idx): coef}`` (kind 0 = X,
    1 = Y), or a formula: a ``list`` of DNF terms ``(input literals, output rows)``.  An input
    literal is ``(i, is_upper, value)`` or a :class:`Block`; an output row is ``({j: c}, d)``."""

    def __init__(self, text: str, path: str):
        self.text = _COMMENT_RE.sub("", text)   # keeps every newline: line numbers survive
        self.path = path
        self.xmap: dict[str, int] = {}
        self.ymap: dict[str, int] = {}
        self.nums: dict[str, float] = {}
        self.g_in: list = []            # global input literals (single-term asserts)
        self.g_out: list = []           # global output rows
        self.multi: list = []           # multi-term asserts, crossed at the end
        self.false = False

    # -- errors -------------------------------------------------------------------------------
    def err(self, k: int | None, msg: str):
        line = None
        if k is not None:
            for i, m in enumerate(_TOKEN_RE.finditer(self.text)):
                if i == k:
                    line = self.text.count("\n", 0, m.start()) + 1
                    break
        raise SpecError(self.path, line, msg)

    # -- tokens -------------------------------------------------------------------------------
    def num(self, s: str, k: int) -> float:
        v = self.nums.get(s)
        if v is None:
            if not _NUM_RE.fullmatch(s):
                if s[0].isdigit() or s[0] in "+-." or s.lower() in ("nan", "inf", "infinity"):
                    self.err(k, f"malformed number '{s}'")
                self.err(k, f"undeclared variable '{s}'")
            v = float(s)
            if not math.isfinite(v):
                self.err(k, f"number '{s}' is not finite")
            self.nums[s] = v
        return v

    def lin(self, item):
        v, k = item
        if isinstance(v, str):
            i = self.xmap.get(v)
            if i is not None:
                return {(0, i): 1.0}, 0.0
            j = self.ymap.get(v)
            return ({(1, j): 1.0}, 0.0) if j is not None else ({}, self.num(v, k))
        if isinstance(v, tuple):
            return v
        self.err(k, "expected a numeric term, found a formula")

    def formula(self, item):
        v, k = item
        if isinstance(v, list):
            return v
        if v == "true":
            return [([], [])]
        if v == "false":
            return []
        self.err(k, f"expected a formula, found the term '{v}'" if isinstance(v, str)
                 else "expected a formula, found a numeric term")

    def words(self, ks, per: int) -> list:
        """Split compound tokens ``ks`` (each exactly ``per`` words) into ``per`` word lists."""
        w = " ".join([self.toks[k] for k in ks]).translate(_PARENS).split()
        return [w[i::per] for i in range(per)]

    def declare_all(self, ks: list, names: list, sorts: list):
        """All declarations (VNN-LIB files declare each variable once; order is free)."""
        if set(sorts) <= {"Real"} and len(set(names)) == len(names) \
                and all(map(_VAR_RE.fullmatch, names)):
            xs = [n for n in names if n[0] == "X"]
            ys = [n for n in names if n[0] == "Y"]
            self.xmap = dict(zip(xs, map(int, [n[2:] for n in xs])))
            self.ymap = dict(zip(ys, map(int, [n[2:] for n in ys])))
            return
        seen = set()
        for k, name, sort in zip(ks, names, sorts):
            if sort != "Real":
                self.err(k, f"unsupported sort '{sort}' for '{name}' (only Real)")
            if _VAR_RE.fullmatch(name) is None:
                self.err(k, f"unsupported variable name '{name}' (expected X_i or Y_j)")
            if name in seen:
                self.err(k, f"duplicate declaration of '{name}'")
            seen.add(name)

    def bounds(self, ks: list, ops: list, ls: list, rs: list) -> tuple:
        """Atoms ``(ops[m] ls[m] rs[m])`` at tokens ``ks`` -> (:class:`Block` or None, list of
        the other atoms' formulas).  ``X_i op number`` atoms are converted in bulk."""
        xi = list(map(self.xmap.get, ls))
        fast = list(range(len(ks))) if None not in xi else \
            [m for m, i in enumerate(xi) if i is not None]
        slow = [] if len(fast) == len(ks) else [m for m, i in enumerate(xi) if i is None]
        block = None
        if fast:
            if len(fast) < len(ks):
                xi, ops, rs = [xi[m] for m in fast], [ops[m] for m in fast], [rs[m] for m in fast]
            val = None
            if set(" ".join(rs)) <= _NUM_CHARS:       # numpy alone would take '1_0', 'inf'
                try:
                    val = np.array(rs, dtype=np.float64)
                except ValueError:
                    val = None
            if val is None or not np.isfinite(val).all():
                slow = range(len(ks))                 # let the slow path name the culprit
            else:
                block = Block(np.array(xi, dtype=np.int64),
                               np.array([o[0] == "<" for o in ops], dtype=bool), val)
        return block, [self.atom_at(ks[m]) for m in slow]

    def atom_at(self, k: int) -> list:
        w = self.toks[k].translate(_PARENS).split()
        return self.atom(w[-3], w[-2], w[-1], k)

    # -- formulas -----------------------------------------------------------------------------
    def atom(self, op: str, ls: str, rs: str, k: int) -> list:
        return self.compare(op, self.lin((ls, k)), self.lin((rs, k)), k)

    def expand(self, items: list) -> list:
        """Replace each :class:`_Run` by its atoms, one formula item per atom."""
        out = []
        for v, k in items:
            if isinstance(v, _Run):
                out.extend((self.atom_at(j), j) for j in range(v.lo, v.hi))
            else:
                out.append((v, k))
        return out

    def reduce(self, node: list):
        """Apply the operator of a closed ``( ... )`` (``node = [k_open, items...]``)."""
        k = node[0]
        if len(node) < 2 or not isinstance(node[1][0], str):
            self.err(k, "expected an operator after '('")
        op, args = node[1][0], node[2:]
        if op == "and":
            parts = []
            for v, j in args:
                if isinstance(v, _Run):
                    ks = list(range(v.lo, v.hi))
                    block, other = self.bounds(ks, *self.words(ks, 3))
                    parts.extend(other)
                    if block is not None:
                        parts.append([([block], [])])
                else:
                    parts.append(self.formula((v, j)))
            return self.conj(parts, k)
        args = self.expand(args)
        if op == "or":
            return self.disj([self.formula(a) for a in args], k)
        if op in _CMP:
            if len(args) < 2:
                self.err(k, f"'{op}' needs at least 2 arguments")
            terms = [self.lin(a) for a in args]
            return self.conj([self.compare(op, terms[i], terms[i + 1], k)
                              for i in range(len(terms) - 1)], k)
        if op in _ARITH:
            return self.arith(op, [self.lin(a) for a in args], k)
        if op in ("assert", "declare-const") or op in _IGNORED:
            self.err(k, f"'{op}' is only allowed at top level")
        self.err(k, f"unknown operator '{op}'")

    def command(self, node: list):
        k = node[0]
        if len(node) < 2 or not isinstance(node[1][0], str):
            self.err(k, "expected a command name after '('")
        op, args = node[1][0], self.expand(node[2:])
        if op == "assert":
            if len(args) != 1:
                self.err(k, "'assert' takes exactly one formula")
            self.top_assert(self.formula(args[0]))
        elif op == "declare-const":
            self.err(k, "malformed declare-const (expected '(declare-const NAME Real)')")
        elif op not in _IGNORED:
            self.err(k, f"unknown command '{op}'")

    def top_assert(self, terms: list):
        if not terms:
            self.false = True
        elif len(terms) == 1:
            self.g_in.extend(terms[0][0])
            self.g_out.extend(terms[0][1])
        else:
            self.multi.append(terms)

    # -- driver -------------------------------------------------------------------------------
    def run(self, n_inputs, n_outputs) -> Spec:
        self.toks = toks = _TOKEN_RE.findall(self.text)
        n = len(toks)
        if n == 0:
            self.err(None, "empty file (only comments and whitespace)")
        self.heads = heads = [t[:2] for t in toks]
        for k in [k for k, h in enumerate(heads) if h in _WS_HEADS]:
            heads[k] = "(" + toks[k][1:].lstrip()[:1]
        self.dk = dk = [k for k, h in enumerate(heads) if h == "(d"]
        _, self.names, sorts = self.words(dk, 3)
        self.declare_all(dk, self.names, sorts)
        stack: list = []
        cur = None
        prev = 0
        for k in [k for k, h in enumerate(heads) if h not in _COMPOUND] + [n]:
            if k > prev:                             # tokens prev..k-1 are compound
                if cur is None:
                    if not set(heads[prev:k]) <= {"(a", "(d"}:
                        j = next(j for j in range(prev, k) if heads[j] in ("(<", "(>"))
                        self.err(j, "expected a command at top level, found a comparison")
                else:
                    if not set(heads[prev:k]) <= {"(<", "(>"}:
                        j = next(j for j in range(prev, k) if heads[j] in ("(a", "(d"))
                        self.err(j, "'assert' and 'declare-const' are only allowed at top level")
                    cur.append((_Run(prev, k), prev))
            if k == n:
                break
            prev, tok = k + 1, toks[k]
            if tok == "(":
                stack.append(cur)
                cur = [k]
            elif tok == ")":
                if cur is None:
                    self.err(k, "unbalanced ')'")
                node, cur = cur, stack.pop()
                if cur is None:
                    self.command(node)
                else:
                    cur.append((self.reduce(node), node[0]))
            else:
                if cur is None:
                    self.err(k, f"unexpected '{tok}' at top level")
                cur.append((tok, k))
        if cur is not None:
            self.err(stack[1][0] if len(stack) > 1 else cur[0], "unbalanced '(': never closed")
        ak = [k for k, h in enumerate(heads) if h == "(a"]
        block, other = self.bounds(ak, *self.words(ak, 4)[1:])
        for f in other:
            self.top_assert(f)
        if block is not None:
            self.g_in.append(block)
        return self.build(n_inputs, n_outputs)
