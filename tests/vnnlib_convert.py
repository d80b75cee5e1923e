"""VNN-LIB 1.0 text -> the same property as a VNN-LIB 2.0 single-network query (a test helper).

Every ``assert`` is kept as written (so several disjunctive asserts stay several asserts);
``X_i`` / ``Y_j`` become ``X[i]`` / ``Y[j]`` of one network ``N`` with input ``[n_inputs]`` and
output ``[n_outputs]``; numbers are rewritten without exponents and with a decimal point (the
2.0 grammar's ``Number`` token); the SMT-LIB commands that 2.0 lacks are dropped.
"""
from __future__ import annotations

import re

import numpy as np

_TOKEN = re.compile(r";[^\n]*|[()]|[^\s()]+")
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")
_VAR = re.compile(r"([XY])_(\d+)\Z")
_DROP = {"declare-const", "check-sat", "get-model", "exit", "set-logic", "set-info",
         "set-option"}


def number(v: float) -> str:
    """A float in the 2.0 grammar: digits, a point, digits (shortest round-trip digits)."""
    s = np.format_float_positional(float(v), unique=True, trim="0")
    return s if "." in s and not s.endswith(".") else s.rstrip(".") + ".0"


def convert(text: str, n_inputs: int, n_outputs: int, dtype: str = "real",
            input_shape=None, output_shape=None) -> str:
    """The 2.0 text of a 1.0 property; ``input_shape`` (default ``[n_inputs]``) is filled
    row-major by ``X_0, X_1, ...``."""
    ishape = list(input_shape or [n_inputs])
    oshape = list(output_shape or [n_outputs])
    out, depth, skip_from = [], 0, None
    for tok in _TOKEN.findall(text):
        if tok.startswith(";"):
            continue
        if tok == "(":
            depth += 1
            out.append(tok)
            continue
        if tok == ")":
            depth -= 1
            out.append(tok)
            if skip_from is not None and depth == 0:
                del out[skip_from:]
                skip_from = None
            continue
        if depth == 1 and out and out[-1] == "(" and tok in _DROP:
            skip_from = len(out) - 1
        m = _VAR.match(tok)
        if m:
            shape = ishape if m.group(1) == "X" else oshape
            idx = np.unravel_index(int(m.group(2)), shape)
            tok = f"{m.group(1)}[{','.join(str(int(i)) for i in idx)}]"
        elif _NUM.match(tok):
            tok = number(float(tok))
        out.append(tok)
    body = " ".join(out).replace("( ", "(").replace(" )", ")")
    head = (f"(vnnlib-version <2.0>)\n(declare-network N\n"
            f"  (declare-input X {dtype} [{','.join(map(str, ishape))}])\n"
            f"  (declare-output Y {dtype} [{','.join(map(str, oshape))}])\n)\n")
    return head + body.replace("(assert", "\n(assert") + "\n"
