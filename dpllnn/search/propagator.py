"""The thin ``pysat.engines.Propagator`` adapter between CaDiCaL (IPASIR-UP) and ReluTheory.

Callback contract as observed with python-sat 1.9.dev17 / CaDiCaL 1.9.5 (and relied on here):

- ``on_assignment(lit, fixed)`` -- every assignment of an observed variable, including literals this
  propagator implied; after ``on_backtrack`` the solver re-notifies literals it keeps (assigned out
  of order at a lower level), so a trail rebuilt from notifications is exact;
- ``propagate()`` -- called after each BCP round; the returned literals are assigned one by one; a
  returned literal that is already false is a conflict whose clause is ``provide_reason(lit)``;
  literals still buffered when a conflict occurs are dropped by the glue;
- ``provide_reason(lit)`` -- asked lazily (only for literals that enter conflict analysis); the
  clause contains ``lit`` and literals false before it;
- ``check_model(model)`` -- a complete assignment; returning False must be followed by an external
  clause (``has_clause``/``add_clause``) that the model falsifies;
- ``decide()`` -- 0 lets the solver choose.
- ``Cadical195.interrupt`` is not implemented; the driver therefore solves under an assumption
  ``guard`` and this adapter stops the solver by handing over the clause ``[-guard]``
  (the call then returns False with ``guard`` in the core, which the driver never reads as unsat).

Every callback does O(1) Python work except ``propagate`` and ``check_model``, which delegate to
the theory, and ``decide``, which delegates to the brancher.
"""
from __future__ import annotations

from pysat.engines import Propagator


class ReluPropagator(Propagator):
    """Adapter: forwards callbacks to a :class:`~dpllnn.search.theory.ReluTheory`.

    Parameters
    ----------
    theory : ReluTheory
    brancher : Brancher or None -- decisions (None: the solver decides)
    guard : int -- the assumption variable used to stop the solver
    """

    def __init__(self, theory, brancher, guard: int):
        super().__init__()
        self.theory = theory
        self.brancher = brancher
        self.guard = int(guard)
        self.stop_sent = False
        # bound methods as instance attributes: the glue looks them up by name
        self.on_assignment = theory.assign
        self.on_new_level = theory.new_level
        self.on_backtrack = theory.backtrack
        self.propagate = theory.propagate
        self.provide_reason = theory.reason
        self.check_model = theory.check_model
        self.decide = brancher.decide if brancher is not None else (lambda: 0)

    def has_clause(self) -> bool:
        th = self.theory
        return bool(th.pending) or (th.stop and not self.stop_sent)

    def add_clause(self):
        th = self.theory
        if th.pending:
            c = th.pending.pop()
            if th.clause_log is not None:
                th.clause_log.append(c)
            return c
        self.stop_sent = True
        return [-self.guard]
