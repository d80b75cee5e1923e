"""VNN-COMP result files.

Format (VNN-COMP 2021-2025): first line the verdict (``sat``, ``unsat``, ``timeout``, ``unknown``);
for ``sat`` the witness follows as an s-expression ``((X_0 v) (X_1 v) ... (Y_0 v) ...)`` with the
output values computed by onnxruntime.  Files are written atomically (temporary file in the same
directory, then ``os.replace``), so a reader never sees half a file.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import InputFileError
from .atomic import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported)
from ..result import Result, Verdict


def format_result(result: Result) -> str:
    """The text of a VNN-COMP result file for ``result``."""
    lines = [result.verdict.value]
    if result.verdict is Verdict.SAT:
        cex = result.counterexample
        parts = [f"(X_{i} {float(v)!r})" for i, v in enumerate(cex.x)]
        parts += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(cex.y)]
        lines.append("(" + "\n ".join(parts) + ")")
    return "\n".join(lines) + "\n"


def write_results_file(path: str, result: Result) -> None:
    """Write the VNN-COMP result file for ``result`` at ``path`` atomically."""
    atomic_write_text(path, format_result(result))


_PAIR = re.compile(r"\(\s*([XY])_(\d+)\s+([-+0-9.eEinfINFaA]+)\s*\)")


def read_results_file(path: str) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """Parse a VNN-COMP result file.

    Returns
    -------
    (verdict, x, y) -- verdict a string; x and y float64 arrays for ``sat`` (else None).

    Raises
    ------
    InputFileError -- missing file, or a sat file whose witness cannot be parsed.
    """
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as e:
        raise InputFileError(path, f"cannot read results file: {e.strerror}") from None
    lines = text.strip().splitlines()
    if not lines:
        raise InputFileError(path, "empty results file")
    verdict = lines[0].strip()
    if verdict in ("violated", "holds"):  # VNN-COMP 2021 synonyms
        verdict = {"violated": "sat", "holds": "unsat"}[verdict]
    if verdict != "sat":
        return verdict, None, None
    xs, ys = {}, {}
    for kind, idx, val in _PAIR.findall("\n".join(lines[1:])):
        (xs if kind == "X" else ys)[int(idx)] = float(val)
    if not xs or sorted(xs) != list(range(len(xs))) or sorted(ys) != list(range(len(ys))):
        raise InputFileError(path, "sat result without a complete witness")
    x = np.array([xs[i] for i in range(len(xs))])
    y = np.array([ys[i] for i in range(len(ys))]) if ys else None
    return verdict, x, y
