"""Exceptions raised by dpllnn.

Every error a user can cause (bad file, unsupported operator, shape mismatch) derives from
:class:`DpllnnError`; the CLI turns it into a one-line message on stderr and exit code 2.
Anything else escaping is an internal error (exit code 1, never a verdict).
"""
from __future__ import annotations


class DpllnnError(Exception):
    """Base class of user-facing errors (exit code 2)."""


class DeadlineReached(Exception):
    """A bound computation stopped at the run's deadline (``verify`` answers ``timeout``).

    Raised between the nodes of a graph's bound pass, which on a large ResNet takes longer than
    a short limit (resnet_4b's root CROWN pass: 10 s on a quiet machine, 45 s under load)."""


class InputFileError(DpllnnError):
    """A file is missing, unreadable, empty or not in the expected format.

    Parameters
    ----------
    path : str
        The offending file.
    msg : str
        What is wrong with it.
    """

    def __init__(self, path: str, msg: str):
        self.path = str(path)
        self.msg = msg
        super().__init__(f"{self.path}: {msg}")


class OnnxError(InputFileError):
    """A malformed or unsupported ONNX model (the message names the node when there is one)."""


class UnsupportedOperator(OnnxError):
    """An ONNX operator dpllnn cannot translate.

    Parameters
    ----------
    path : str
        The ONNX file.
    op : str
        The operator type, e.g. ``"Conv"``.
    node : str
        The node's name (or its index when unnamed).
    """

    def __init__(self, path: str, op: str, node: str, detail: str = ""):
        self.op = op
        self.node = node
        extra = f" ({detail})" if detail else ""
        super().__init__(path, f"unsupported operator {op} at node '{node}'{extra}")


class SpecError(InputFileError):
    """A malformed VNN-LIB property.

    Parameters
    ----------
    path : str
        The VNN-LIB file.
    line : int or None
        1-based line number of the problem, when known.
    msg : str
        What is wrong.
    """

    def __init__(self, path: str, line: int | None, msg: str):
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        self.msg = msg
        self.path = str(path)
        DpllnnError.__init__(self, f"{where}: {msg}")


class ShapeMismatch(DpllnnError):
    """Network and property disagree on the number of inputs or outputs."""
