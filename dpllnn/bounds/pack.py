"""Pack a :class:`~dpllnn.network.Network` once into flat float64 buffers for the kernels.

Index spaces
------------
*Affine layer* ``k`` (``0 <= k <= L``) maps ``a_{k-1}`` (``a_{-1} = x``) to ``z_k``.  ReLU layer
``k`` (``0 <= k < L``) is ``a_k = relu(z_k)``.  All pre-activations of all affine layers live in one
flat, layer-major *z space* of size ``n_z = n_relus + n_outputs``: layer ``k`` occupies
``zoff[k]:zoff[k+1]``.  The first ``n_relus`` entries are the hidden ReLU neurons (the flat index
used by ``phase`` and by the SAT variables); the last ``n_outputs`` are the outputs ``y``.

Rounding margin
---------------
Every dot product of length ``n`` computed in IEEE double with round-to-nearest satisfies
``|fl(sum w_i x_i) - sum w_i x_i| <= gamma_n * sum |w_i x_i|`` with ``gamma_n = n u / (1 - n u)``,
``u = 2**-53`` (Higham, *Accuracy and Stability of Numerical Algorithms*, Thm 3.1); blocked or
reordered summation (BLAS) obeys the same bound.  The kernels never rely on exact products: for each
step they accumulate a magnitude ``mag >= sum |terms|`` that bounds every term that entered the
result (matrix products, biases, relaxation intercepts, concretisation), and move the bound
outward by ``margin_factor * mag`` with ``margin_factor = 2 * gamma_N``,
``N = 2 (n_z + n_inputs) + 4 L + 32``.  ``N`` bounds the number of terms summed into any one
result (each dot product counts its products twice when ``W+ l + W- u`` is summed at once, and the
running constant of a backward pass gathers at most one term per neuron and per layer); the
factor 2 covers the rounding of ``mag`` itself.  For mnist 256x6 this is ~1e-12 relative.  A tiny
absolute term (``ABS_MARGIN``) covers underflow of products to zero.  See ``kernels.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

U_ROUND = 2.0 ** -53
ABS_MARGIN = 1e-290


def gamma(n: int) -> float:
    """``gamma_n = n u / (1 - n u)`` with ``u = 2**-53`` (Higham 2002, Lemma 3.1)."""
    return n * U_ROUND / (1.0 - n * U_ROUND)


class ZSpace:
    """The z-space accessors shared by :class:`PackedNet` and the graph engine's
    ``GraphPacked`` (both have ``zoff`` and ``n_layers``)."""

    @property
    def layer_offsets(self) -> np.ndarray:
        """Start of each ReLU layer in the flat neuron index, plus ``n_relus`` at the end, (L+1,)."""
        return self.zoff[: self.n_layers + 1]

    @property
    def hidden_sizes(self) -> list[int]:
        return [int(s) for s in np.diff(self.zoff[: self.n_layers + 1])]

    def layer_of(self, idx: int) -> tuple[int, int]:
        """``(layer, j)`` of a flat neuron index."""
        k = int(np.searchsorted(self.zoff, idx, side="right") - 1)
        return k, int(idx - self.zoff[k])


@dataclass(frozen=True)
class PackedNet(ZSpace):
    """A network in flat buffers (see module docstring for the index spaces).

    Attributes
    ----------
    W, W_pos, W_neg, W_abs : ndarray, float64, shape (sum_k n_k * n_{k-1},)
        Concatenated row-major weight matrices, and their positive part, negative part, abs.
    b : ndarray, float64, shape (n_z,)
        Concatenated biases (indexed like z space).
    w_off : ndarray, int64, shape (L + 2,)
        ``W[w_off[k]:w_off[k+1]].reshape(sizes[k+1], sizes[k])`` is affine layer ``k``.
    sizes : ndarray, int64, shape (L + 2,)
        ``sizes[0] = n_inputs``, ``sizes[k+1]`` = output width of affine layer ``k``.
    zoff : ndarray, int64, shape (L + 2,)
        Offsets of each affine layer's outputs in z space.
    n_layers : int
        ``L``, the number of ReLU layers.
    n_inputs, n_outputs, n_relus, n_z : int
    margin_factor : float
        ``2 gamma_N`` (module docstring).
    """

    W: np.ndarray
    W_pos: np.ndarray
    W_neg: np.ndarray
    W_abs: np.ndarray
    b: np.ndarray
    w_off: np.ndarray
    sizes: np.ndarray
    zoff: np.ndarray
    n_layers: int
    n_inputs: int
    n_outputs: int
    n_relus: int
    n_z: int
    margin_factor: float

    def weight(self, k: int) -> np.ndarray:
        """View of affine layer ``k``'s ``W``, shape (sizes[k+1], sizes[k])."""
        return self.W[self.w_off[k]:self.w_off[k + 1]].reshape(self.sizes[k + 1], self.sizes[k])

    def bias(self, k: int) -> np.ndarray:
        """View of affine layer ``k``'s ``b``, shape (sizes[k+1],)."""
        return self.b[self.zoff[k]:self.zoff[k + 1]]


def pack(network) -> PackedNet:
    """Pack ``network`` into a :class:`PackedNet` (done once per network).

    Parameters
    ----------
    network : dpllnn.network.Network

    Returns
    -------
    PackedNet
    """
    affs = network.affines
    L = len(affs) - 1
    sizes = np.array([affs[0].n_in] + [a.n_out for a in affs], dtype=np.int64)
    w_off = np.zeros(L + 2, dtype=np.int64)
    zoff = np.zeros(L + 2, dtype=np.int64)
    for k, a in enumerate(affs):
        w_off[k + 1] = w_off[k] + a.W.size
        zoff[k + 1] = zoff[k] + a.n_out
    W = np.ascontiguousarray(np.concatenate([a.W.ravel() for a in affs]), dtype=np.float64)
    b = np.ascontiguousarray(np.concatenate([a.b.ravel() for a in affs]), dtype=np.float64)
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
        raise ValueError("pack: network has non-finite weights")
    N = 2 * (int(zoff[L + 1]) + int(sizes[0])) + 4 * L + 32
    return PackedNet(
        W=W, W_pos=np.maximum(W, 0.0), W_neg=np.minimum(W, 0.0), W_abs=np.abs(W), b=b,
        w_off=w_off, sizes=sizes, zoff=zoff, n_layers=L, n_inputs=int(sizes[0]),
        n_outputs=int(sizes[-1]), n_relus=int(zoff[L]), n_z=int(zoff[L + 1]),
        margin_factor=2.0 * gamma(N))
