"""The op contract (:class:`LinearOp`) and the helpers every op module shares."""
from __future__ import annotations

import numpy as np

__all__ = ["LinearOp", "StructuralOp"]

#: rows of the identity pushed through ``transpose`` at once when building CSR matrices
_CSR_CHUNK = 256


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


class LinearOp:
    """Base class: the op contract of the module docstring (subclasses are frozen dataclasses)."""

    in_shapes: tuple
    out_shape: tuple

    @property
    def n_inputs(self) -> int:
        return len(self.in_shapes)

    @property
    def fan_in(self) -> int:
        return 1

    @property
    def n_params(self) -> int:
        return 0

    def forward(self, *X):
        raise NotImplementedError

    def transpose(self, A):
        raise NotImplementedError

    def bias_term(self, A) -> np.ndarray:
        return np.zeros(A.shape[0])

    def abs_forward(self, *X, bias: bool = False):
        raise NotImplementedError

    def abs_bias(self) -> np.ndarray:
        """``|bias|`` broadcast to ``out_shape`` (zeros for ops without a bias)."""
        return np.abs(self.bias_tensor())

    def to_csr(self):
        """Sparse matrices of the op over flattened tensors (generic: transposed identity rows).

        Returns
        -------
        (list of scipy.sparse.csr_matrix, shape (n_out, n_in_i)), bias ndarray (n_out,)
        """
        import scipy.sparse as sp
        n_out = _size(self.out_shape)
        parts = [[] for _ in self.in_shapes]
        for s in range(0, n_out, _CSR_CHUNK):
            e = min(n_out, s + _CSR_CHUNK)
            eye = np.zeros((e - s, n_out))
            eye[np.arange(e - s), np.arange(s, e)] = 1.0
            T = self.transpose(eye.reshape((e - s,) + tuple(self.out_shape)))
            for i, t in enumerate(T):
                parts[i].append(sp.csr_matrix(t.reshape(e - s, -1)))
        mats = [sp.vstack(p, format="csr") if p else
                sp.csr_matrix((0, _size(self.in_shapes[i]))) for i, p in enumerate(parts)]
        return mats, self.bias_tensor().reshape(-1)

    def bias_tensor(self) -> np.ndarray:
        """The bias broadcast to ``out_shape`` (signed; zeros for ops without one)."""
        return np.zeros(self.out_shape)


def _frozen(obj, name, value):
    object.__setattr__(obj, name, value)




class StructuralOp(LinearOp):
    """An op whose matrix has only 0/1 entries (padding, reshaping, permuting, selecting,
    concatenating): ``|W| = W``, so ``abs_forward`` is ``forward``; one input ``in_shape``
    unless the subclass says otherwise."""

    @property
    def in_shapes(self):
        return (self.in_shape,)

    def abs_forward(self, *X, bias=False):
        return self.forward(*X)
