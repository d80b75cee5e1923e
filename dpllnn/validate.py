"""Counterexample validation: the only gate through which ``sat`` is answered.

A candidate ``x`` is accepted iff it lies inside a case's box exactly (no tolerance) and satisfies
one of that case's disjuncts exactly, both under dpllnn's float64 forward pass and under
onnxruntime running the original ONNX file (when the network came from a file).
"""
from __future__ import annotations

import functools
import os
import weakref

import numpy as np

from .network import Network
from .result import Counterexample
from .spec import Spec


def _ort_session(path: str):
    """An onnxruntime session for ``path``, re-created when the file changes on disk."""
    st = os.stat(path)
    return _ort_session_cached(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _ort_session_cached(path: str, mtime_ns: int, size: int):
    import onnxruntime as ort  # lazy: slow import

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    from .io.gz import is_gz, read_bytes
    model = read_bytes(path) if is_gz(path) else path    # onnxruntime takes the bytes too
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def onnxruntime_forward(path: str, x: np.ndarray, input_shape) -> np.ndarray:
    """Run the ONNX file at ``path`` on one flattened input ``x``.

    Parameters
    ----------
    path : str -- ONNX file
    x : ndarray, shape (n_inputs,)
    input_shape : tuple -- input shape without batch dimension

    Returns
    -------
    ndarray, float64, shape (n_outputs,)
    """
    sess = _ort_session(str(path))
    inp = sess.get_inputs()[0]
    dtype = {"tensor(double)": np.float64, "tensor(float16)": np.float16}.get(inp.type, np.float32)
    shape = [1] + [int(s) for s in input_shape]
    # honour a declared rank that differs from ours (e.g. dynamic batch dims)
    feed = np.asarray(x, dtype=dtype).reshape(shape)
    if inp.shape is not None and len(inp.shape) != len(shape):
        want = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        if int(np.prod(want)) == feed.size:
            feed = feed.reshape(want)
    out = sess.run(None, {inp.name: feed})[0]
    return np.asarray(out, dtype=np.float64).reshape(-1)


_EXPORTED: dict[int, tuple[weakref.ref, str]] = {}


def _forget_export(key: int, path: str) -> None:
    _EXPORTED.pop(key, None)
    try:
        os.unlink(path)
    except OSError:
        pass


def _exported_copy(network: Network) -> str:
    """A float64 ONNX export of an in-memory network (no file behind it), made once per network.

    onnxruntime then gives the second, independent forward pass that every ``sat`` needs.  The
    temporary file lives as long as the network object does.
    """
    hit = _EXPORTED.get(id(network))
    if hit is not None and hit[0]() is network:
        return hit[1]
    import tempfile

    from .io.onnx_export import to_onnx

    fd, path = tempfile.mkstemp(prefix="dpllnn-net-", suffix=".onnx")
    os.close(fd)
    to_onnx(network, path, dtype="float64")
    _EXPORTED[id(network)] = (weakref.ref(network), path)
    weakref.finalize(network, _forget_export, id(network), path)
    return path


def check_counterexample(network: Network, spec: Spec, x: np.ndarray,
                         use_onnxruntime: bool = True) -> Counterexample | None:
    """Validate a candidate counterexample.

    Parameters
    ----------
    network : Network -- ``source`` is the ONNX file onnxruntime replays; an in-memory network
        (``source`` None) is exported once to a temporary float64 ONNX file for that replay
    spec : Spec
    x : ndarray, shape (n_inputs,)
    use_onnxruntime : bool -- also require onnxruntime's output to satisfy the disjunct
        (always True in the verifier; False only in tests of the float64 pass itself)

    Returns
    -------
    Counterexample or None -- None when ``x`` is rejected.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape[0] != network.n_inputs or not np.all(np.isfinite(x)):
        return None
    y64 = network.forward(x)
    if not np.all(np.isfinite(y64)):
        return None
    y_ort = None
    for ci, case in enumerate(spec.cases):
        if not case.contains(x):
            continue
        for di, disj in enumerate(case.disjuncts):
            if not disj.holds(y64):
                continue
            if use_onnxruntime:
                if y_ort is None:
                    path = network.source or _exported_copy(network)
                    y_ort = onnxruntime_forward(path, x, network.input_shape)
                if not disj.holds(y_ort):
                    continue
            return Counterexample(x=x.copy(), y=(y_ort if y_ort is not None else y64).copy(),
                                  y_float64=y64, case=ci, disjunct=di)
    return None
