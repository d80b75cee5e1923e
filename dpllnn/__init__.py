"""dpllnn: a complete DPLL(T)/CDCL verifier for ReLU neural networks.

Vocabulary (DESIGN.md §4): ``lb``/``ub`` bounds; ``W`` shape (n_out, n_in), ``b`` shape (n_out,);
pre-activation ``z``, post-activation ``a``; ``phase`` int8 (-1 stably/assigned inactive,
0 unknown, +1 active); ``lit``/``var`` SAT integers (positive literal = active); ``spec`` the
property, ``case`` one (box, DNF) pair, ``disjunct`` one ``(C, d)`` meaning ``C @ y <= d``;
``counterexample`` (``x``, ``y``).  VNN-LIB describes the unsafe set: ``sat`` means a
counterexample exists, ``unsat`` means the property is proved.
"""
from __future__ import annotations

import os as _os
import time as _time

#: monotonic time at which dpllnn was first imported: the CLI charges start-up (imports of numpy,
#: numba, onnx, ... which take seconds on a loaded machine) to the user's --timeout
START_MONOTONIC = _time.monotonic()

# One BLAS thread per process: the matrices are small, and multi-threaded OpenBLAS measured 2-8x
# slower under contention (benchmarks/bench_bounds.py); parallelism comes from worker processes.
# Set before numpy is first imported; an explicit user setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

__version__ = "0.1.0"

from .errors import DpllnnError, SpecError, UnsupportedOperator  # noqa: E402
from .result import Counterexample, Result, Verdict  # noqa: E402

__all__ = ["verify", "load_network", "load_spec", "Result", "Verdict", "Counterexample",
           "DpllnnError", "SpecError", "UnsupportedOperator"]


def load_network(path):
    """Load an ONNX file into a :class:`dpllnn.network.Network` (see ``dpllnn.io.onnx_import``)."""
    from .io.onnx_load import load_onnx
    return load_onnx(path)


def load_spec(path, n_inputs=None, n_outputs=None):
    """Parse a VNN-LIB 1.0 file into a :class:`dpllnn.spec.Spec` (see ``dpllnn.io.vnnlib``)."""
    from .io.vnnlib import parse_vnnlib   # also .vnnlib.gz
    return parse_vnnlib(path, n_inputs=n_inputs, n_outputs=n_outputs)


def verify(network, spec, **kwargs):
    """Decide ``spec`` on ``network`` (see ``dpllnn.search.verify.verify``)."""
    from .search.verify import verify as _verify
    return _verify(network, spec, **kwargs)
