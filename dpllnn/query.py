"""VNN-LIB 2.0 queries end to end: bind models to the declared networks, lower, verify, replay.

A query over one or more networks (:mod:`dpllnn.io.vnnlib2`) becomes one network and one
:class:`~dpllnn.spec.Spec` for the ordinary search:

* input elements that every case constrains equal (a top-level ``(== A[i] B[j])``) share one
  element of the composed input ``u``; every other input element gets one of its own;
* the networks run side by side on ``u`` (:mod:`dpllnn.model.compose`): one dense chain when
  every model is a dense chain (input splitting and the exact LP stay available), a graph
  otherwise; the composed output is every network's output, concatenated in declaration order,
  followed by ``u`` when some constraint that is not a box bound mentions an input;
* a counterexample of the composed network is a ``sat`` only after it is replayed on each
  network's own model, in float64 and in onnxruntime, and every value satisfies the query
  (:func:`replay`); otherwise the answer is ``unknown``.

Binding follows the standard's verify command (chapter "Command-line Interface"): one model per
network declaration without ``equal-to`` (an ``equal-to`` network uses the model of the network
it names); the element types of the model's input and output must be the declared ones, except
for the standard's ``real`` type, which accepts any float model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import DpllnnError, ShapeMismatch
from .io.vnnlib2 import Query, link_representatives
from .result import Result, Verdict
from .spec import Case, Disjunct, Spec

__all__ = ["Bound", "Lowered", "bind_models", "lower_query", "solve_query", "replay",
           "format_assignment", "model_types", "STANDARD_VERDICTS"]

#: the standard's words for the first line of ``verify`` (chapter "Command-line Interface")
STANDARD_VERDICTS = {Verdict.SAT: "sat", Verdict.UNSAT: "unsat", Verdict.UNKNOWN: "unknown",
                     Verdict.TIMEOUT: "timed-out"}

_ONNX_TYPES = {1: "float32", 11: "float64", 10: "float16", 16: "bfloat16"}


@dataclass
class Bound:
    """The model bound to one declared network: its file, the loaded network (a dense chain
    :class:`~dpllnn.network.Network` or a :class:`~dpllnn.model.graph.Graph`), and the ONNX
    element types of its input and output."""

    path: str
    net: object
    input_type: str
    output_type: str


def model_types(path: str) -> tuple[str, str]:
    """ONNX element type names (``float32``, ...) of a model's input and output."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    g = model.graph
    consts = {t.name for t in g.initializer}
    inp = next(i for i in g.input if i.name not in consts)   # load_onnx checked there is one
    name = lambda vi: _ONNX_TYPES.get(vi.type.tensor_type.elem_type,
                                      f"elem_type {vi.type.tensor_type.elem_type}")
    return name(inp), name(g.output[0])


def bind_models(query: Query, mapping: dict) -> dict:
    """Load the model of every declared network and check it against its declaration.

    Parameters
    ----------
    query : Query
    mapping : dict name -> ONNX path -- one entry per network without ``equal-to``

    Returns
    -------
    dict name -> Bound -- every declared network (``equal-to`` ones share their model's Bound)

    Raises
    ------
    DpllnnError -- a network without a model, a model for an undeclared network or for an
        ``equal-to`` network (unnecessary), an element type or shape that differs from the
        declaration; OnnxError / UnsupportedOperator from loading a model
    """
    from .io.onnx_load import load_onnx

    names = [n.name for n in query.networks]
    for name in mapping:
        if name not in names:
            raise DpllnnError(f"--network {name}: the query {query.path} declares no network "
                              f"{name} (it declares {', '.join(names)})")
    loaded: dict[str, Bound] = {}
    out: dict[str, Bound] = {}
    for decl in query.networks:
        if decl.equal_to:
            if decl.name in mapping:
                raise DpllnnError(f"--network {decl.name}: network {decl.name} is declared "
                                  f"(equal-to {decl.equal_to}); it takes {decl.equal_to}'s model")
            continue
        if decl.name not in mapping:
            raise DpllnnError(f"{query.path}: network {decl.name} has no model: give "
                              f"--network {decl.name}=MODEL.onnx")
        path = str(mapping[decl.name])
        if path not in loaded:
            net = load_onnx(path)
            loaded[path] = Bound(path, net, *model_types(path))
        out[decl.name] = loaded[path]
    for decl in query.networks:
        if decl.equal_to:
            out[decl.name] = out[decl.equal_to]
        _check_declaration(query, decl, out[decl.name])
    return out


def _check_declaration(query, decl, bound: Bound):
    net = bound.net
    for var, model_type, shape, size in (
            (decl.inputs[0], bound.input_type, tuple(net.input_shape), net.n_inputs),
            (decl.outputs[0], bound.output_type, tuple(net.output_shape), net.n_outputs)):
        if var.dtype != "real" and var.dtype != model_type:
            raise DpllnnError(f"{query.path}: {var.kind} {var.name} of network {decl.name} is "
                              f"declared {var.dtype} but {bound.path} has {model_type}")
        # the standard asks for the model's shape; a leading batch dimension of 1 may be
        # written or left out (the importer strips it)
        if var.size != size or tuple(var.shape) not in (shape, (1,) + shape):
            raise ShapeMismatch(f"{query.path}: {var.kind} {var.name} of network {decl.name} "
                                f"is declared {_dims(var.shape)} but {bound.path} has {_dims(shape)}")


def _dims(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


@dataclass
class Lowered:
    """A query lowered to one network.

    network : Network or Graph -- input ``u`` (n_u,), output ``[y; u]`` or ``y``
    spec : Spec -- over ``u`` and that output
    x_of_u : int64 (n_x,) -- joint input element ``j`` is ``u[x_of_u[j]]``
    passthrough : bool -- ``u`` is appended to the output
    """

    network: object
    spec: Spec
    x_of_u: np.ndarray
    passthrough: bool


def _spec_over_u(query: Query, free, x_of_u, y_map, n_y):
    """The query's cases over ``u`` and the composed output (``y_map[j]``: column of joint
    output ``j``; ``n_y`` composed outputs before the passthrough)."""
    nx, n_u = query.n_x, free.size
    cases, passthrough = [], False
    for case in query.cases:
        djs = []
        for dj in case.disjuncts:
            Cx, Cy_joint = dj.C[:, :nx], dj.C[:, nx:]
            Cu = np.zeros((Cx.shape[0], n_u))
            np.add.at(Cu.T, x_of_u, Cx.T)            # Cu[:, x_of_u[j]] += Cx[:, j]
            Cy = np.zeros((Cx.shape[0], n_y))
            np.add.at(Cy.T, y_map, Cy_joint.T)
            zero = ~np.any(Cy != 0, axis=1) & ~np.any(Cu != 0, axis=1)
            if np.any(dj.d[zero] < 0):               # 0 <= negative: the disjunct is false
                continue
            keep = ~zero
            djs.append((Cy[keep], Cu[keep], dj.d[keep]))
            passthrough |= bool(np.any(Cu[keep] != 0))
        if djs:
            cases.append((case.lb[free], case.ub[free], djs))
    n_out = n_y + (n_u if passthrough else 0)
    spec_cases = [Case(lb, ub, [Disjunct(np.hstack([Cy, Cu]) if passthrough else Cy, d)
                                for Cy, Cu, d in djs]) for lb, ub, djs in cases]
    return Spec(spec_cases, n_u, n_out, source=query.path), passthrough


def lower_query(query: Query, bound: dict) -> Lowered:
    """One network and one Spec for the ordinary search (see the module docstring).

    Two declarations bound to the same model that read the same elements of ``u`` compute the
    same outputs: the composed network holds that model once and both declarations' outputs
    read its columns (a network against itself on linked inputs needs no search)."""
    from .model.compose import side_by_side_chain, side_by_side_graph

    rep = link_representatives(query.n_x, query.links)
    free = np.flatnonzero(rep == np.arange(query.n_x))
    x_of_u = np.searchsorted(free, rep).astype(np.int64)
    nets, sels, first_col = [], [], {}
    y_map = np.zeros(query.n_y, dtype=np.int64)
    col = 0
    for d in query.networks:
        b, sel = bound[d.name], x_of_u[d.inputs[0].slice]
        key = (id(b), sel.tobytes())
        if key not in first_col:
            first_col[key] = col
            nets.append(b.net)
            sels.append(sel)
            col += b.net.n_outputs
        y_map[d.outputs[0].slice] = first_col[key] + np.arange(d.outputs[0].size)
    spec, passthrough = _spec_over_u(query, free, x_of_u, y_map, col)
    n_u = free.size
    if len(nets) == 1 and not passthrough and np.array_equal(sels[0], np.arange(n_u)):
        return Lowered(nets[0], spec, x_of_u, False)       # the model itself (its own file)
    if not any(getattr(n, "is_graph", False) for n in nets):
        # a lower bound of u on every box carries the passthrough through stably active ReLUs
        lb = np.min([c.lb for c in spec.cases], axis=0) if passthrough else None
        net = side_by_side_chain(nets, sels, n_u, passthrough_lb=lb)
    else:
        net = side_by_side_graph(nets, sels, n_u, passthrough=passthrough)
    return Lowered(net, spec, x_of_u, passthrough)


def replay(query: Query, bound: dict, x_joint: np.ndarray):
    """Check a joint input on every network's own model.

    x_joint : float64 (n_x,).  Returns ``(ok, values)``: ``values`` maps each declared variable
    name to its flattened float64 values (outputs from onnxruntime); ``ok`` is True iff some
    case of the query holds exactly with the outputs of the float64 forward pass *and* with
    those of onnxruntime, each network run on its own model."""
    from .validate import onnxruntime_forward

    x = np.asarray(x_joint, dtype=np.float64).reshape(query.n_x)
    y64 = np.zeros(query.n_y)
    y_ort = np.zeros(query.n_y)
    values = {}
    for decl in query.networks:
        b = bound[decl.name]
        xi, yo = decl.inputs[0], decl.outputs[0]
        y64[yo.slice] = b.net.forward(x[xi.slice])
        y_ort[yo.slice] = onnxruntime_forward(b.path, x[xi.slice], b.net.input_shape)
        values[xi.name] = x[xi.slice].copy()
        values[yo.name] = y_ort[yo.slice].copy()
    ok = False
    if np.all(np.isfinite(x)) and np.all(np.isfinite(y64)) and np.all(np.isfinite(y_ort)):
        v64, vort = np.concatenate([x, y64]), np.concatenate([x, y_ort])
        ok = any(c.contains(x) and any(dj.holds(v64) and dj.holds(vort) for dj in c.disjuncts)
                 for c in query.cases)
    return ok, values


@dataclass
class QueryResult:
    """The answer to a query: ``result`` (the search's Result on the lowered network) and, for
    ``sat``, ``assignment`` (variable name -> flattened float64 values, declaration order)."""

    result: Result
    assignment: dict | None

    @property
    def verdict(self) -> Verdict:
        return self.result.verdict


def solve_query(query: Query, mapping: dict, *, timeout_s: float = 60.0, **verify_kwargs):
    """Decide a VNN-LIB 2.0 query (``sat``: some assignment satisfies every assertion).

    Parameters
    ----------
    query : Query; mapping : dict name -> ONNX path (see :func:`bind_models`)
    timeout_s : float -- wall-clock limit for binding, lowering and the search, s
    verify_kwargs -- passed to :func:`dpllnn.search.verify.verify` (seed, workers, mode, ...)

    Returns
    -------
    QueryResult -- ``sat`` only with an assignment confirmed by :func:`replay`
    """
    from .search.verify import verify

    t0 = time.monotonic()
    bound = bind_models(query, mapping)
    low = lower_query(query, bound)
    if not low.spec.cases:
        res = Result(Verdict.UNSAT, time.monotonic() - t0, None,
                     {"networks": len(query.networks),
                      "shared_inputs": int(query.n_x - low.spec.n_inputs)},
                     "the assertions contradict each other (no case is left after lowering)")
        return QueryResult(res, None)
    remaining = max(0.0, timeout_s - (time.monotonic() - t0))
    res = verify(low.network, low.spec, timeout_s=remaining, **verify_kwargs)
    res.stats["networks"] = len(query.networks)
    res.stats["shared_inputs"] = int(query.n_x - low.spec.n_inputs)
    if res.verdict is not Verdict.SAT:
        return QueryResult(res, None)
    ok, values = replay(query, bound, res.counterexample.x[low.x_of_u])
    if not ok:
        res = Result(Verdict.UNKNOWN, res.time_s, None, res.stats,
                     "a counterexample of the composed network did not hold on the separate "
                     "models (float64 or onnxruntime)")
        return QueryResult(res, None)
    return QueryResult(res, values)


def _number(v: float) -> str:
    return repr(float(v))


def format_assignment(query: Query, assignment: dict) -> list[str]:
    """The standard's command-line assignment: per declared variable, in declaration order,
    a header ``NAME TYPE [d1,d2,...]`` and then its values, one a line, row-major."""
    lines = []
    for v in query.variables:
        lines.append(f"{v.name} {v.dtype} {_dims(v.shape)}")
        lines.extend(_number(x) for x in np.asarray(assignment[v.name]).reshape(-1))
    return lines
