"""The equivalence question of ``dpllnn equiv`` as a VNN-LIB 2.0 two-network query.

Two networks ``A`` and ``B`` on one input (every element of ``XA`` equal to the one of ``XB``),
the input in the region (one box, or an ``or`` of boxes), and the unsafe set "some output
differs by at least ``eps``": ``(>= (- YA[j] YB[j]) eps)`` or ``(<= (- YA[j] YB[j]) -eps)``.
``unsat`` means the networks are ``eps``-equivalent on the region, as ``dpllnn equiv`` says
``equivalent``; any VNN-LIB 2.0 solver can decide it (chapter "Query Language", multiple
networks, of the standard).
"""
from __future__ import annotations

import numpy as np

__all__ = ["equivalence_query", "vnnlib2_number"]


def vnnlib2_number(v: float) -> str:
    """A float as the 2.0 grammar's Number token (digits, a point, digits; no exponent) with the
    shortest digits that read back as the same float64."""
    s = np.format_float_positional(float(v), unique=True, trim="0")
    return s + "0" if s.endswith(".") else s if "." in s else s + ".0"


def _elem(name: str, shape, flat: int) -> str:
    idx = np.unravel_index(flat, shape) if shape else ()
    return f"{name}[{','.join(str(int(i)) for i in idx)}]"


def equivalence_query(boxes, eps: float, input_shape, output_shape, types=("float32",) * 4,
                      names=("A", "B")) -> str:
    """The query text.

    Parameters
    ----------
    boxes : list of (lb, ub) float64 (n_inputs,) -- the region
    eps : float > 0 -- the tolerance of ``dpllnn equiv``
    input_shape, output_shape : tuple of int -- both networks' (batch dimension excluded)
    types : 4 str -- element types of A's input, A's output, B's input, B's output; when they
        differ every declaration says ``real`` (the standard types each comparison with one
        element type, and ``real`` accepts any float model)
    names : 2 str -- the networks' names (the ``--network NAME=...`` of ``dpllnn verify``)
    """
    if not eps > 0:
        raise ValueError("eps must be > 0")
    na, nb = names
    if len(set(types)) > 1:
        types = ("real",) * 4
    ishape, oshape = tuple(input_shape), tuple(output_shape)
    n_in, n_out = int(np.prod(ishape)), int(np.prod(oshape))
    dims = lambda s: "[" + ",".join(str(int(d)) for d in s) + "]"
    xa, xb, ya, yb = f"X{na}", f"X{nb}", f"Y{na}", f"Y{nb}"
    out = ["(vnnlib-version <2.0>)",
           f"; written by dpllnn equiv: unsat iff {na} and {nb} differ by less than eps = "
           f"{vnnlib2_number(eps)} everywhere on the region",
           f"(declare-network {na}\n  (declare-input {xa} {types[0]} {dims(ishape)})\n"
           f"  (declare-output {ya} {types[1]} {dims(oshape)})\n)",
           f"(declare-network {nb}\n  (declare-input {xb} {types[2]} {dims(ishape)})\n"
           f"  (declare-output {yb} {types[3]} {dims(oshape)})\n)"]
    out += [f"(assert (== {_elem(xa, ishape, i)} {_elem(xb, ishape, i)}))" for i in range(n_in)]

    def box(lb, ub):
        return [f"(>= {_elem(xa, ishape, i)} {vnnlib2_number(lb[i])}) "
                f"(<= {_elem(xa, ishape, i)} {vnnlib2_number(ub[i])})" for i in range(n_in)]

    if len(boxes) == 1:
        out += [f"(assert (and {b}))" for b in box(*boxes[0])]
    else:
        out.append("(assert (or\n" + "\n".join(f"  (and {' '.join(box(lb, ub))})"
                                               for lb, ub in boxes) + "))")
    e = vnnlib2_number(eps)
    rows = [f"  (>= (- {_elem(ya, oshape, j)} {_elem(yb, oshape, j)}) {e})\n"
            f"  (<= (- {_elem(ya, oshape, j)} {_elem(yb, oshape, j)}) -{e})" for j in range(n_out)]
    out.append("(assert (or\n" + "\n".join(rows) + "))")
    return "\n".join(out) + "\n"
