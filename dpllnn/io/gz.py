"""Gzip-compressed inputs: ``NET.onnx.gz`` and ``PROP.vnnlib.gz`` are read as they are.

The VNN-COMP benchmark repositories store networks and properties gzipped; every place that takes
a network or property path (``verify``, ``info``, ``bounds``, ``prune``/``slice``/``equiv``,
``bench``, the VNN-COMP scripts, the onnxruntime replay) goes through :func:`read_bytes` or
:func:`read_vnnlib_text`, so a ``.gz`` path works wherever a plain one does.  A path is gzipped when
its name ends in ``.gz`` (case-insensitive); its content is decompressed in memory with
:mod:`gzip`.
"""
from __future__ import annotations

import gzip
import os
import zlib

from ..errors import SpecError

__all__ = ["is_gz", "read_bytes", "load_model", "read_vnnlib_text", "GzipError", "strip_gz"]


class GzipError(ValueError):
    """A ``.gz`` file that does not decompress (not gzip, truncated, bad checksum)."""


def is_gz(path) -> bool:
    """True when ``path`` names a gzip file (its name ends in ``.gz``)."""
    return os.fspath(path).lower().endswith(".gz")


def strip_gz(name: str) -> str:
    """``name`` without a trailing ``.gz`` (``a.onnx.gz`` -> ``a.onnx``)."""
    return name[:-3] if name.lower().endswith(".gz") else name


def read_bytes(path) -> bytes:
    """The content of ``path``, decompressed when it is a ``.gz`` file.

    Raises
    ------
    OSError -- as :func:`open` (missing, a directory, unreadable)
    GzipError -- a ``.gz`` file that is not valid gzip (its message fits on one line)
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    if not is_gz(path):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise GzipError("not a valid gzip file (truncated)") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        why = (str(e) or type(e).__name__).splitlines()[0]
        raise GzipError(f"not a valid gzip file ({why})") from None


def load_model(path):
    """``onnx.load(path)``, also for ``.onnx.gz`` files (external data, if any, is read from the
    file's folder).  Raises as :func:`onnx.load` and :func:`read_bytes`."""
    import onnx
    if not is_gz(path):
        return onnx.load(os.fspath(path))
    from onnx.external_data_helper import load_external_data_for_model
    model = onnx.load_model_from_string(read_bytes(path))
    load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    return model


def read_vnnlib_text(path) -> str:
    """The text of a VNN-LIB file (``.vnnlib`` or ``.vnnlib.gz``, UTF-8), for both parsers.

    Raises
    ------
    SpecError -- one line naming the file: missing, a directory, unreadable, not valid gzip,
        not UTF-8
    """
    p = os.fspath(path)
    try:
        raw = read_bytes(p)
    except FileNotFoundError:
        raise SpecError(p, None, "no such file") from None
    except IsADirectoryError:
        raise SpecError(p, None, "is a directory, not a VNN-LIB file") from None
    except OSError as e:
        raise SpecError(p, None, f"cannot read: {e.strerror or e}") from None
    except GzipError as e:
        raise SpecError(p, None, str(e)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        where = " after decompression" if is_gz(p) else ""
        raise SpecError(p, None, f"not UTF-8 text{where} (byte {e.start})") from None
