"""Linear operators of the graph model (DESIGN.md §7): linear algebra only, matrix-free.

Every op is a frozen dataclass over numpy with the same few methods.  Shapes exclude the leading
*batch* axis of the arrays passed in: an op with ``in_shapes[i]`` and ``out_shape`` maps inputs of
shape ``(B, *in_shapes[i])`` to ``(B, *out_shape)``.  (The ONNX batch dimension of size 1 is part
of the op's shapes; the batch axis here is the one the bound engine and the attack use for many
points or many backward rows at once.)

- ``forward(*X)``: the op, bias included, float64;
- ``transpose(A)``: the vector-Jacobian product without the bias, ``A`` of shape
  ``(m, *out_shape)`` -> a tuple of ``(m, *in_shapes[i])``, so that
  ``<A, op(x) - bias> = sum_i <op^T(A)_i, x_i>`` (the adjoint identity the tests check);
- ``bias_term(A)``: ``<A, bias>`` per row, shape ``(m,)``;
- ``abs_forward(*X, bias=False)``: ``|W|`` applied to non-negative ``X`` (plus ``|bias|`` when
  asked): the magnitudes behind the rounding margin of the bound engine;
- ``to_csr()``: ``(list of scipy.sparse.csr_matrix (n_out, n_in_i), bias (n_out,))`` over the
  C-order flattened tensors (the LP encoding, and tests);
- ``fan_in``: the most products summed into one output element of ``forward`` or of
  ``transpose`` (the length ``n`` of Higham's ``gamma_n`` for that op).

Convolutions run as im2col GEMM (forward) and GEMM plus strided scatter-adds (transpose), never
FFT: the rounding-margin argument (``dpllnn.bounds.pack``) assumes ordinary sums of products,
whose error is at most ``gamma_n`` times the sum of the magnitudes of the terms.
"""
from .base import LinearOp
from .shape import Concat, Pad, Reshape, Slice, Transpose
from .weighted import Conv, Dense, Scale, Sum, conv_output_size

__all__ = ["LinearOp", "Dense", "Conv", "Scale", "Sum", "Pad", "Reshape", "Transpose", "Concat",
           "Slice", "conv_output_size"]
