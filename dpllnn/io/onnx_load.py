"""Loading an ONNX file: a chain of dense layers becomes a :class:`~dpllnn.network.Network`
(:mod:`.onnx_import`, the packed fast path), any other feed-forward ReLU network a
:class:`~dpllnn.model.graph.Graph` (:mod:`.onnx_graph`).

This module sits above both importers (the graph importer reuses the chain importer's constant
handlers), so imports run one way: onnx_load -> onnx_graph -> onnx_import.
"""
from __future__ import annotations

import os

import onnx
from google.protobuf.message import DecodeError

from ..errors import OnnxError, UnsupportedOperator
from .gz import GzipError, load_model
from .onnx_graph import graph_from_model
from .onnx_import import network_from_model

__all__ = ["load_onnx", "network_or_graph"]


def load_onnx(path):
    """Load an ONNX file (``.onnx`` or ``.onnx.gz``) in float64.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Network or Graph -- see :func:`network_or_graph`; ``source`` is ``str(path)``

    Raises
    ------
    OnnxError
        Missing, unreadable, empty or undecodable file, or a malformed graph.
    UnsupportedOperator
        An operator neither importer takes (e.g. Sigmoid, a 3-D Conv), naming the node.
    """
    path = str(path)
    if not os.path.exists(path):
        raise OnnxError(path, "file not found")
    if os.path.isdir(path):
        raise OnnxError(path, "is a directory, not an ONNX file")
    if os.path.getsize(path) == 0:
        raise OnnxError(path, "empty file")
    try:
        model = load_model(path)          # also .onnx.gz
    except GzipError as e:
        raise OnnxError(path, str(e)) from None
    except DecodeError as e:
        raise OnnxError(path, f"not a valid ONNX protobuf ({e})") from None
    except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as e:
        raise OnnxError(path, f"cannot load ONNX model: {str(e).splitlines()[0]}") from None
    return network_or_graph(model, path)


def network_or_graph(model: onnx.ModelProto, path: str):
    """A chain of dense layers as a :class:`Network` (the packed fast path), anything else the
    graph importer takes as a :class:`dpllnn.model.graph.Graph`.

    Raises UnsupportedOperator / OnnxError as :func:`dpllnn.io.onnx_graph.graph_from_model`."""
    try:
        return network_from_model(model, path)
    except UnsupportedOperator:
        return graph_from_model(model, path)
