"""The network model: alternating affine and ReLU layers in float64.

A :class:`Network` is always in the canonical form

    y = A_L( relu( A_{L-1}( ... relu( A_0(x) ) ... ) ) )

that is, ``affines[0], ReLU, affines[1], ReLU, ..., affines[L]``: it starts and ends with an affine
layer and affine layers never follow each other (the importer folds consecutive affine maps and
inserts identity maps where needed).  Inputs are flattened in C order of the ONNX input shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Affine:
    """``z = W @ a + b``.

    Attributes
    ----------
    W : ndarray, shape (n_out, n_in), float64
    b : ndarray, shape (n_out,), float64
    """

    W: np.ndarray
    b: np.ndarray

    def __post_init__(self):
        W = np.ascontiguousarray(self.W, dtype=np.float64)
        b = np.ascontiguousarray(self.b, dtype=np.float64).reshape(-1)
        if W.ndim != 2 or b.shape != (W.shape[0],):
            raise ValueError(f"Affine: W {W.shape} and b {b.shape} do not match")
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)

    @property
    def n_in(self) -> int:
        return self.W.shape[1]

    @property
    def n_out(self) -> int:
        return self.W.shape[0]


@dataclass(frozen=True)
class ReLU:
    """Element-wise ``max(z, 0)`` over ``size`` neurons."""

    size: int


@dataclass
class Network:
    """A feed-forward ReLU network in canonical form (see module docstring).

    Attributes
    ----------
    affines : list of Affine
        ``L + 1`` affine maps; a ReLU sits between consecutive ones.
    input_shape : tuple of int
        Shape of the ONNX input without the batch dimension (for reshaping witnesses).
    output_shape : tuple of int
        Shape of the ONNX output without the batch dimension.
    source : str or None
        Path of the ONNX file it was loaded from (used for the onnxruntime cross-check).
    input_name, output_name : str or None
        Names of the ONNX graph input and output.
    """

    affines: list[Affine]
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    source: str | None = None
    input_name: str | None = None
    output_name: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.affines:
            raise ValueError("Network needs at least one affine layer")
        for k in range(1, len(self.affines)):
            if self.affines[k].n_in != self.affines[k - 1].n_out:
                raise ValueError(
                    f"Network: layer {k} takes {self.affines[k].n_in} inputs but layer {k-1} "
                    f"gives {self.affines[k - 1].n_out}")
        if not self.input_shape:
            self.input_shape = (self.n_inputs,)
        if not self.output_shape:
            self.output_shape = (self.n_outputs,)

    # ---- shapes -------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return self.affines[0].n_in

    @property
    def n_outputs(self) -> int:
        return self.affines[-1].n_out

    @property
    def n_hidden_layers(self) -> int:
        """Number of ReLU layers."""
        return len(self.affines) - 1

    @property
    def hidden_sizes(self) -> list[int]:
        """Neurons per ReLU layer."""
        return [a.n_out for a in self.affines[:-1]]

    @property
    def n_relus(self) -> int:
        return int(sum(self.hidden_sizes))

    @property
    def n_params(self) -> int:
        return int(sum(a.W.size + a.b.size for a in self.affines))

    @property
    def layers(self) -> list:
        """The alternating list ``[Affine, ReLU, Affine, ..., Affine]``."""
        out: list = []
        for k, a in enumerate(self.affines):
            out.append(a)
            if k < len(self.affines) - 1:
                out.append(ReLU(a.n_out))
        return out

    # ---- semantics ----------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Exact float64 forward pass.

        Parameters
        ----------
        x : ndarray, shape (n_inputs,) or (batch, n_inputs), any float dtype

        Returns
        -------
        ndarray, float64, shape (n_outputs,) or (batch, n_outputs)
        """
        a = np.asarray(x, dtype=np.float64)
        single = a.ndim == 1
        a = np.atleast_2d(a)
        if a.shape[1] != self.n_inputs:
            raise ValueError(f"forward: expected {self.n_inputs} inputs, got {a.shape[1]}")
        for k, aff in enumerate(self.affines):
            a = a @ aff.W.T + aff.b
            if k < len(self.affines) - 1:
                a = np.maximum(a, 0.0)
        return a[0] if single else a

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-activations ``z`` of every ReLU layer for a batch of inputs.

        Parameters
        ----------
        x : ndarray, shape (batch, n_inputs)

        Returns
        -------
        list of ndarray, one per ReLU layer, shape (batch, layer size), float64
        """
        a = np.atleast_2d(np.asarray(x, dtype=np.float64))
        zs = []
        for aff in self.affines[:-1]:
            z = a @ aff.W.T + aff.b
            zs.append(z)
            a = np.maximum(z, 0.0)
        return zs

    def summary(self) -> str:
        sizes = "x".join(str(s) for s in self.hidden_sizes) or "-"
        return (f"inputs {self.n_inputs} {tuple(self.input_shape)}, outputs {self.n_outputs}, "
                f"hidden {sizes}, {self.n_relus} ReLUs, {self.n_params} parameters")
