"""The property model: a VNN-LIB file as a list of cases.

The VNN-LIB file describes the *unsafe* set (VNN-COMP semantics).  After parsing it is a
disjunction of :class:`Case` objects; each case is an input box and an output DNF, a list of
disjuncts ``(C, d)`` each meaning the conjunction of rows ``C @ y <= d``.  A point ``x`` is a
counterexample iff for some case ``lb <= x <= ub`` and for some disjunct ``C @ N(x) <= d``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Disjunct:
    """Conjunction ``C @ y <= d``.

    Attributes
    ----------
    C : ndarray, shape (m, n_outputs), float64
    d : ndarray, shape (m,), float64
    """

    C: np.ndarray
    d: np.ndarray

    def __post_init__(self):
        self.C = np.ascontiguousarray(np.atleast_2d(np.asarray(self.C, dtype=np.float64)))
        self.d = np.ascontiguousarray(np.asarray(self.d, dtype=np.float64).reshape(-1))
        if self.C.shape[0] != self.d.shape[0]:
            raise ValueError(f"Disjunct: C {self.C.shape} and d {self.d.shape} do not match")

    def __iter__(self):  # allows ``C, d = disjunct``
        yield self.C
        yield self.d

    def margin(self, y: np.ndarray) -> np.ndarray:
        """``max_i (C @ y - d)_i`` per row of ``y`` (<= 0 means the disjunct holds).

        y : ndarray, shape (n_outputs,) or (batch, n_outputs) -> float or ndarray (batch,)
        """
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            return float(np.max(self.C @ y - self.d)) if self.C.shape[0] else -np.inf
        if self.C.shape[0] == 0:
            return np.full(y.shape[0], -np.inf)
        return np.max(y @ self.C.T - self.d, axis=1)

    def holds(self, y: np.ndarray) -> bool:
        """True iff ``C @ y <= d`` exactly (no tolerance)."""
        return bool(np.all(self.C @ np.asarray(y, dtype=np.float64) <= self.d))


@dataclass
class Case:
    """One input box with an output DNF.

    Attributes
    ----------
    lb, ub : ndarray, shape (n_inputs,), float64
    disjuncts : list of Disjunct
    """

    lb: np.ndarray
    ub: np.ndarray
    disjuncts: list[Disjunct]

    def __post_init__(self):
        self.lb = np.ascontiguousarray(np.asarray(self.lb, dtype=np.float64).reshape(-1))
        self.ub = np.ascontiguousarray(np.asarray(self.ub, dtype=np.float64).reshape(-1))
        self.disjuncts = [d if isinstance(d, Disjunct) else Disjunct(*d) for d in self.disjuncts]

    def contains(self, x: np.ndarray) -> bool:
        """True iff ``lb <= x <= ub`` exactly (no tolerance)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return bool(x.shape == self.lb.shape and np.all(x >= self.lb) and np.all(x <= self.ub))

    def stack(self, indices=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows of the chosen disjuncts stacked into one objective.

        Parameters
        ----------
        indices : iterable of int, optional -- disjuncts to take (default: all, in order)

        Returns
        -------
        C : ndarray, shape (m, n_outputs), float64 (shape (0, 0) when no disjunct is chosen)
        d : ndarray, shape (m,), float64
        offsets : ndarray, int64, shape (k + 1,) -- disjunct ``i`` of the selection owns rows
            ``offsets[i]:offsets[i + 1]``
        """
        chosen = self.disjuncts if indices is None else [self.disjuncts[i] for i in indices]
        offsets = np.cumsum([0] + [dj.C.shape[0] for dj in chosen]).astype(np.int64)
        if not chosen:
            return np.zeros((0, 0)), np.zeros(0), offsets
        return (np.vstack([dj.C for dj in chosen]), np.concatenate([dj.d for dj in chosen]),
                offsets)

    @property
    def is_empty(self) -> bool:
        """True when some ``lb > ub``: the box holds no point."""
        return bool(np.any(self.lb > self.ub))


def union_row(R: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """The row that decides the margin of a union of stacked disjuncts, per batch row.

    A union's margin is ``min_k max_{i in disjunct k} R_i``: the arg-max row of the arg-min
    disjunct (the attack's target, the smear's gradient row, the CROWN row a box is split on).

    Parameters
    ----------
    R : ndarray, shape (B, m), float64 -- row values (margins or lower bounds; rows to leave out
        may be set to ``+inf``)
    groups : ndarray of int, shape (k,), or None -- first row of each disjunct (increasing, from
        0; ``Case.stack``'s offsets without the last); None or one group: one disjunct

    Returns
    -------
    ndarray, int64, shape (B,) -- the row index in ``0..m-1``
    """
    if groups is None or len(groups) <= 1:
        return np.argmax(R, axis=1)
    k = np.argmin(np.maximum.reduceat(R, groups, axis=1), axis=1)
    ends = np.append(groups[1:], R.shape[1])
    cols = np.arange(R.shape[1])
    Rm = np.where((cols >= groups[k][:, None]) & (cols < ends[k][:, None]), R, -np.inf)
    return np.argmax(Rm, axis=1)


@dataclass
class Spec:
    """A parsed VNN-LIB property.

    Attributes
    ----------
    cases : list of Case
    n_inputs, n_outputs : int
        Numbers of declared ``X_i`` and ``Y_j``.
    source : str or None
        The VNN-LIB path.
    """

    cases: list[Case]
    n_inputs: int
    n_outputs: int
    source: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_disjuncts(self) -> int:
        return int(sum(len(c.disjuncts) for c in self.cases))

    def summary(self) -> str:
        return (f"{self.n_inputs} inputs, {self.n_outputs} outputs, {len(self.cases)} case(s), "
                f"{self.n_disjuncts} disjunct(s)")
