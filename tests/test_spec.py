"""Spec model: stacking a case's disjuncts into one objective."""
import numpy as np

from dpllnn.spec import Case, Disjunct


def test_stack_rows_and_offsets():
    d0 = Disjunct([[1.0, 0.0]], [0.5])
    d1 = Disjunct([[0.0, 1.0], [1.0, -1.0]], [1.0, 0.0])
    d2 = Disjunct(np.zeros((0, 2)), np.zeros(0))
    case = Case([0, 0], [1, 1], [d0, d1, d2])
    C, d, off = case.stack()
    assert np.array_equal(C, np.vstack([d0.C, d1.C])) and np.array_equal(d, [0.5, 1.0, 0.0])
    assert list(off) == [0, 1, 3, 3]
    C, d, off = case.stack([1])
    assert np.array_equal(C, d1.C) and list(off) == [0, 2]
    C, d, off = case.stack([])
    assert C.shape[0] == 0 and d.shape == (0,) and list(off) == [0]
