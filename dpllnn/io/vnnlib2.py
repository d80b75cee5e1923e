"""VNN-LIB 2.0 queries -> a :class:`Query` over the joint variables of all declared networks.

Reference: the VNN-LIB 2.0 standard (https://www.vnnlib.org; chapter "Query Language": network
declarations, ``equal-to`` / ``isomorphic-to``, assertions over tensor elements ``X[i,j]``).  The
official parser, the PyPI package ``vnnlib`` (1.x), parses and type-checks the file; this module
builds the disjunctive normal form from its AST itself: ``vnnlib.compat.transform`` refuses
multi-network queries and joins the terms of separate disjunctive ``assert`` commands with *or*
where the standard conjoins them.

The joint variables: ``x`` = every declared input element, network by network in declaration
order, each tensor row-major; ``y`` = every declared output element in the same order.  A query
becomes cases ``(lb, ub, disjuncts)``: the box bounds ``x`` (every element needs a lower and an
upper bound in every case); each disjunct ``C @ [x; y] <= d`` holds the rows that are not plain
bounds of one input element (output rows, linear rows over inputs, rows linking networks).

Supported (theories of the standard's "Logics" chapter): NH (no ``declare-hidden``), SIO (one
input and one output per network), SNET / MENET / MINET / MNET (any number of networks),
arithmetic BND / OUTC / LIN (linear terms), ``and`` / ``or`` at any depth, comparisons
``<= >= < > ==`` (strict ones read as non-strict, the VNN-COMP convention: it enlarges the
unsafe set, so ``unsat`` stays sound, and a ``sat`` assignment is replayed on the query anyway).
Refused with :class:`~dpllnn.errors.SpecError` (file and line): hidden nodes, polynomial terms
(POLY), ``!=``, element types other than float16 / float32 / float64 / real.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from .gz import GzipError, is_gz, read_bytes, read_vnnlib_text
from ..errors import SpecError
from ..spec import Case, Disjunct

__all__ = ["Variable", "NetworkDecl", "Query", "is_vnnlib2", "parse_query", "MAX_TERMS",
           "FLOAT_TYPES", "link_representatives"]

MAX_TERMS = 100_000     # DNF terms allowed after distributing and over or (as the 1.0 parser)

#: element types dpllnn analyses (ONNX names; ``real`` is the standard's real-valued type)
FLOAT_TYPES = ("float16", "float32", "float64", "real")

_DTYPE_NAMES = {"Real": "real", "F16": "float16", "F32": "float32", "F64": "float64",
                "BF16": "bfloat16", "I8": "int8", "I16": "int16", "I32": "int32",
                "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32",
                "U64": "uint64", "C64": "complex64", "C128": "complex128", "Bool": "bool",
                "String": "string"}
_VERSION_RE = re.compile(r"\A(?:\s|;[^\n]*\n?)*\(\s*vnnlib-version\s*<\s*(\d+)\.(\d+)\s*>")


@dataclass(frozen=True)
class Variable:
    """A declared input or output tensor.

    name : str -- as declared; kind : ``"input"`` or ``"output"``; network : str;
    dtype : str -- ONNX element type name or ``"real"``; shape : tuple of int;
    offset : int -- first element in the joint ``x`` (inputs) or ``y`` (outputs).
    """

    name: str
    kind: str
    network: str
    dtype: str
    shape: tuple
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.size)


@dataclass
class NetworkDecl:
    """One ``declare-network``: its relation (``equal_to`` / ``isomorphic_to`` name or None), its
    input and output variables, and the 1-based line of the declaration."""

    name: str
    equal_to: str | None
    isomorphic_to: str | None
    inputs: list
    outputs: list
    line: int | None = None


@dataclass
class Query:
    """A parsed VNN-LIB 2.0 query.

    Attributes
    ----------
    path : str
    version : tuple (major, minor)
    networks : list of NetworkDecl -- in declaration order
    n_x, n_y : int -- sizes of the joint input and output vectors
    cases : list of Case -- ``lb``, ``ub`` float64 ``(n_x,)``; disjuncts ``C`` float64
        ``(m, n_x + n_y)``, ``d`` ``(m,)``: ``C @ [x; y] <= d``.  No cases: the query is false.
    links : list of (int, int) -- pairs of joint input elements that every case constrains to be
        equal (a top-level ``(== A[i] B[j])``): the lowering shares them.
    """

    path: str
    version: tuple
    networks: list
    n_x: int
    n_y: int
    cases: list
    links: list = field(default_factory=list)

    @property
    def variables(self) -> list:
        """Every declared variable in declaration order (the order of the standard's assignment)."""
        return [v for net in self.networks for v in net.inputs + net.outputs]

    def network(self, name: str) -> NetworkDecl:
        return next(n for n in self.networks if n.name == name)


def link_representatives(n_x: int, links) -> np.ndarray:
    """Union-find over linked input elements.

    n_x : int; links : iterable of (i, j) -> int64 ``(n_x,)``: the smallest element of each
    element's group (``rep[i] == i`` for an element linked to nothing smaller)."""
    rep = np.arange(n_x, dtype=np.int64)

    def find(i):
        while rep[i] != i:
            rep[i] = rep[rep[i]]
            i = int(rep[i])
        return i

    for i, j in links:
        a, b = find(int(i)), find(int(j))
        if a != b:
            rep[max(a, b)] = min(a, b)
    for i in range(n_x):
        rep[i] = find(i)
    return rep


def _read(path) -> str:
    return read_vnnlib_text(path)         # also .vnnlib.gz


def is_vnnlib2(path) -> bool:
    """True when the file starts (after comments) with ``(vnnlib-version <2.x>)`` or later.

    The version header decides the parser: VNN-LIB 1.0 files have none.  A missing or
    unreadable file is False (the 1.0 parser then reports it)."""
    try:
        if is_gz(path):
            head = read_bytes(path)[:4096].decode("utf-8-sig", errors="replace")
        else:
            with open(path, "rb") as fh:
                head = fh.read(4096).decode("utf-8-sig", errors="replace")
    except (OSError, GzipError):
        return False
    m = _VERSION_RE.match(head)
    return bool(m) and int(m.group(1)) >= 2


def _parser_error(path: str, e: Exception) -> SpecError:
    """The ``vnnlib`` package's exception (JSON diagnostics or a syntax message) as one line."""
    text = str(e)
    try:
        errs = json.loads(text).get("errors") or []
    except (ValueError, AttributeError):
        errs = []
    if errs:
        first = errs[0]
        msg = first.get("message", "error")
        sym = first.get("offendingSymbol")
        hint = first.get("hint")
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        return SpecError(path, first.get("line"), f"{msg}" + (f" '{sym}'" if sym else "")
                         + (f": {hint}" if hint else "") + more)
    m = re.search(r"line (\d+)", text)
    line = int(m.group(1)) if m else None
    return SpecError(path, line, " ".join(text.split()))


def _line_of(node) -> int | None:
    """1-based line of the first variable or literal under an AST node (None if none)."""
    stack = [node]
    while stack:
        n = stack.pop()
        ln = getattr(n, "line", None)
        if isinstance(ln, int) and ln > 0:
            return ln
        try:
            stack.extend(reversed(n.children()))
        except AttributeError:
            pass
    return None


def parse_query(path) -> Query:
    """Parse and type-check a VNN-LIB 2.0 query file.

    Parameters
    ----------
    path : str or os.PathLike -- the ``.vnnlib`` file (UTF-8)

    Returns
    -------
    Query -- see :class:`Query`; cases with equal boxes are merged (their disjuncts joined),
    in first-seen order.

    Raises
    ------
    SpecError
        One line naming the file and line: a syntax or typing error reported by the ``vnnlib``
        package, an unsupported construct (hidden nodes, several inputs or outputs in one
        network, polynomial terms, ``!=``, a non-float element type), an input element without
        a lower or upper bound, or a DNF larger than :data:`MAX_TERMS`.
    """
    import vnnlib  # lazy: the 1.0 path never needs it

    p = str(path)
    text = _read(p)
    if not text.strip():
        raise SpecError(p, None, "empty file")
    try:
        ast = vnnlib.parse_query_string(text)
    except vnnlib.VNNLibException as e:
        raise _parser_error(p, e) from None
    m = _VERSION_RE.match(text)
    version = (int(m.group(1)), int(m.group(2))) if m else (2, 0)
    return _Builder(p, text, ast).run(version)


class _Builder:
    def __init__(self, path: str, text: str, ast):
        self.path, self.text, self.ast = path, text, ast
        self.vars: dict[str, Variable] = {}
        self.atoms: list = []          # (cols int64, coefs float64, rhs): sum coefs * v <= rhs
        self.atom_line: list = []

    def err(self, line, msg):
        raise SpecError(self.path, line, msg)

    def decl_line(self, keyword: str, name: str) -> int | None:
        m = re.search(r"\(\s*" + keyword + r"\s+" + re.escape(name) + r"\b", self.text)
        return self.text.count("\n", 0, m.start()) + 1 if m else None

    # -- declarations ---------------------------------------------------------------------
    def declare(self) -> list:
        nets, nx, ny = [], 0, 0
        for net in self.ast.networks:
            line = self.decl_line("declare-network", net.name)
            if net.hidden:
                h = net.hidden[0]
                self.err(self.decl_line("declare-hidden", h.name) or line,
                         f"hidden-node declarations are not supported (declare-hidden {h.name} "
                         f"in network {net.name}; dpllnn supports the theory NH)")
            for what, decls in (("inputs", net.inputs), ("outputs", net.outputs)):
                if len(decls) != 1:
                    self.err(line, f"network {net.name} declares {len(decls)} {what}; dpllnn "
                             "supports one input and one output per network (theory SIO)")
            ins, outs = [], []
            for kind, decls, dest in (("input", net.inputs, ins), ("output", net.outputs, outs)):
                for d in decls:
                    dtype = _DTYPE_NAMES.get(d.dtype.name, d.dtype.name.lower())
                    if dtype not in FLOAT_TYPES:
                        self.err(self.decl_line(f"declare-{kind}", d.name) or line,
                                 f"element type {dtype} of {d.name} is not supported "
                                 f"({', '.join(FLOAT_TYPES)})")
                    off = nx if kind == "input" else ny
                    v = Variable(d.name, kind, net.name, dtype, tuple(int(s) for s in d.shape),
                                 off)
                    if kind == "input":
                        nx += v.size
                    else:
                        ny += v.size
                    self.vars[d.name] = v
                    dest.append(v)
            nets.append(NetworkDecl(net.name, net.equal_to or None, net.isometric_to or None,
                                    ins, outs, line))
        self.nx, self.ny = nx, ny
        return nets

    # -- atoms ----------------------------------------------------------------------------
    def column(self, var, line) -> int:
        v = self.vars.get(var.name)
        if v is None:                 # a hidden variable (refused above) or a parser gap
            self.err(line, f"variable {var.name} is not a declared input or output")
        idx = list(var.indices)
        if len(idx) != len(v.shape) or any(not 0 <= i < s for i, s in zip(idx, v.shape)):
            self.err(line, f"index {var.name}{idx} does not fit the shape {list(v.shape)}")
        flat = int(np.ravel_multi_index(idx, v.shape)) if v.shape else 0
        return v.offset + flat + (0 if v.kind == "input" else self.nx)

    def linear(self, expr, line):
        try:
            lin = expr.to_linear_expr()
        except Exception as e:     # the package raises its own exception type for POLY terms
            msg = " ".join(str(e).split())
            self.err(line, f"not a linear expression ({msg}); dpllnn supports the theories "
                     "BND, OUTC and LIN, not POLY")
        coefs: dict[int, float] = {}
        for t in lin.terms:
            c = self.column(t.var, line)
            coefs[c] = coefs.get(c, 0.0) + float(t.coeff)
        return coefs, float(lin.constant)

    def atom(self, cmp) -> list:
        """Atom ids (rows ``sum coefs * v <= rhs``) of one comparison."""
        import vnnlib

        line = _line_of(cmp)
        if isinstance(cmp, vnnlib.NotEqual):
            self.err(line, "'!=' is not supported (a disjunction of strict comparisons)")
        a, ca = self.linear(cmp.lhs, line)
        b, cb = self.linear(cmp.rhs, line)
        diff = dict(a)            # lhs - rhs
        for k, v in b.items():
            diff[k] = diff.get(k, 0.0) - v
        const = ca - cb
        cols = np.array(sorted(k for k, v in diff.items() if v != 0.0), dtype=np.int64)
        coefs = np.array([diff[k] for k in cols], dtype=np.float64)
        ids = []
        if isinstance(cmp, (vnnlib.LessEqual, vnnlib.LessThan, vnnlib.Equal)):
            ids.append(self.add(cols, coefs, -const, line))           # lhs - rhs <= 0
        if isinstance(cmp, (vnnlib.GreaterEqual, vnnlib.GreaterThan, vnnlib.Equal)):
            ids.append(self.add(cols, -coefs, const, line))           # rhs - lhs <= 0
        if not ids:
            self.err(line, f"unsupported comparison {type(cmp).__name__}")
        return ids

    def add(self, cols, coefs, rhs, line) -> int:
        self.atoms.append((cols, coefs, float(rhs) + 0.0))
        self.atom_line.append(line)
        return len(self.atoms) - 1

    def dnf(self, expr) -> list:
        """Terms (lists of atom ids) whose disjunction is ``expr``."""
        import vnnlib

        if isinstance(expr, vnnlib.And):
            terms = [[]]
            for part in expr.args:
                sub = self.dnf(part)
                if len(terms) * len(sub) > MAX_TERMS:
                    self.err(_line_of(expr), f"DNF too large: more than {MAX_TERMS} terms")
                terms = [t + s for t in terms for s in sub]
            return terms
        if isinstance(expr, vnnlib.Or):
            terms = []
            for part in expr.args:
                terms.extend(self.dnf(part))
                if len(terms) > MAX_TERMS:
                    self.err(_line_of(expr), f"DNF too large: more than {MAX_TERMS} terms")
            return terms
        return [self.atom(expr)]

    # -- cases ----------------------------------------------------------------------------
    def run(self, version) -> Query:
        nets = self.declare()
        glob, multi = [], []
        for a in self.ast.assertions:
            terms = self.dnf(a.expr)
            if len(terms) == 1:
                glob.extend(terms[0])
            else:
                multi.append(terms)      # an empty list (false) empties the query below
        terms = [[]]
        for t in multi:
            if len(terms) * len(t) > MAX_TERMS:
                self.err(_line_of(self.ast.assertions[0].expr),
                         f"DNF too large: more than {MAX_TERMS} terms")
            terms = [a + b for a in terms for b in t]
        links = self.links(glob)
        rep = link_representatives(self.nx, links)
        linked = np.flatnonzero(rep != np.arange(self.nx))
        lb, ub = np.full(self.nx, -np.inf), np.full(self.nx, np.inf)
        rows0, ok = self.apply(lb, ub, glob)
        cases: dict[bytes, Case] = {}
        for term in (terms if ok else []):
            tlb, tub = lb.copy(), ub.copy()
            rows, ok_t = self.apply(tlb, tub, term)
            if not ok_t:
                continue
            if linked.size:         # linked elements are equal: each gets the group's box
                np.maximum.at(tlb, rep[linked], tlb[linked])
                np.minimum.at(tub, rep[linked], tub[linked])
                tlb[linked], tub[linked] = tlb[rep[linked]], tub[rep[linked]]
            self.check_bounded(nets, tlb, tub)
            rows = rows0 + rows
            C = np.zeros((len(rows), self.nx + self.ny))
            for r, (cols, coefs, _) in enumerate(rows):
                C[r, cols] += coefs
            dj = Disjunct(C, np.array([rhs for _, _, rhs in rows], dtype=np.float64))
            tlb += 0.0                # -0.0 -> 0.0 so equal boxes group
            tub += 0.0
            key = tlb.tobytes() + tub.tobytes()
            if key in cases:
                cases[key].disjuncts.append(dj)
            else:
                cases[key] = Case(tlb, tub, [dj])
        return Query(self.path, version, nets, self.nx, self.ny, list(cases.values()), links)

    def apply(self, lb, ub, ids):
        """Fold the bound atoms of ``ids`` into ``lb``/``ub``; returns (other rows, satisfiable)."""
        rows = []
        for i in ids:
            cols, coefs, rhs = self.atoms[i]
            if cols.size == 0:
                if not 0.0 <= rhs:           # a constant atom that is false: no case
                    return rows, False
                continue
            if cols.size == 1 and cols[0] < self.nx:
                j, c = int(cols[0]), float(coefs[0])
                if c > 0:
                    ub[j] = min(ub[j], rhs / c)
                else:
                    lb[j] = max(lb[j], rhs / c)
                continue
            rows.append(self.atoms[i])
        return rows, True

    def links(self, glob) -> list:
        """Input pairs a top-level ``==`` makes equal (both rows ``a - b <= 0`` present)."""
        seen, out = set(), []
        for i in glob:
            cols, coefs, rhs = self.atoms[i]
            if (cols.size == 2 and rhs == 0.0 and cols[1] < self.nx and coefs[0] == -coefs[1]
                    and coefs[0] != 0.0):
                key = (int(cols[0]), int(cols[1]), bool(coefs[0] > 0))
                if (key[0], key[1], not key[2]) in seen:
                    out.append((key[0], key[1]))
                seen.add(key)
        return out

    def check_bounded(self, nets, lb, ub):
        for arr, side in ((lb, "lower"), (ub, "upper")):
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                j = int(bad[0])
                v = next(v for n in nets for v in n.inputs if v.offset <= j < v.offset + v.size)
                idx = list(np.unravel_index(j - v.offset, v.shape)) if v.shape else []
                name = v.name + (f"[{','.join(str(int(i)) for i in idx)}]" if idx else "")
                self.err(self.decl_line("declare-input", v.name),
                         f"input {name} of network {v.network} has no {side} bound")
