"""ReluTheory: the ReLU-network theory behind the hidden-phase CDCL search (DESIGN.md §3).

Boolean vocabulary
------------------
One variable per hidden ReLU (true = active, ``z >= 0``; false = inactive, ``z <= 0``), flat
layer-major, numbered ``1..n_relus`` through ``pysat.formula.IDPool`` keys ``("relu", layer, j)``;
one *selector* per open disjunct of the case (true = "the counterexample satisfies this
disjunct"), and the clause "some selector is true" (added by the driver).

Theory semantics.  A (partial) assignment is *T-consistent* iff some input ``x`` of the case's box
has pre-activations of the assigned signs and satisfies every disjunct whose selector is true.
Every clause this module hands to the solver (reasons, conflicts, blocking clauses) is satisfied by
every T-consistent total assignment, so an unsatisfiable formula proves that no counterexample
exists for the open disjuncts.

Reasons (all sound by the bound engine's contract)
--------------------------------------------------
- a hidden neuron of layer ``k`` whose bounds became one-signed: its bounds depend only on the
  phases of layers ``< k`` (the input box is fixed), so the reason is the assigned phase literals of
  layers ``< k``;
- an infeasible phase set (``lb > ub`` after clamping at neuron ``c`` of layer ``k``): the literal
  of ``c`` with the assigned literals of layers ``< k``;
- a disjunct refuted by the objective bound (``obj_lower > 0`` on one of its rows): its selector is
  implied false by all assigned phase literals (the objective depends on every layer);
- a complete assignment whose cell LP is infeasible for a selected disjunct: the negation of the
  whole phase assignment and of that selector.

Incremental bounds.  ``propagate`` keeps a stack of bound snapshots (trail length, phase, bounds);
the top snapshot whose phases are a subset of the current ones is the base, and only the layers
from the first *effective* change are recomputed (a newly assigned neuron that the base already
had stable in that direction changes nothing).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ..bounds import compute_bounds, objective_bounds, objective_lower_split
from ..bounds.alpha import rebound_hidden
from ..settings import TheorySettings
from .clauses import ClauseShortening
from .theory_beta import TheoryBeta
from .theory_lp import TheoryLP

@dataclass
class Snapshot:
    """Bounds valid for every assignment extending ``phase``."""

    trail_len: int
    phase: np.ndarray          # int8 (n_relus,)
    lbd: object                # LayerBounds (feasible)
    obj_lower: np.ndarray      # (m_total,) lower bounds of the stacked objective rows
    refuted: np.ndarray        # bool (n_open,): disjunct refuted under ``phase``
    lp_done: bool = False      # relaxation LP already tried on this snapshot
    alpha: np.ndarray | None = None   # beta-CROWN slopes (m_total, n_relus) that gave obj_lower
    beta: np.ndarray | None = None    # ... and multipliers: the children's warm start
    short: object = None       # ClauseShortening's re-checked short reason (False: none)


class ReluTheory(ClauseShortening, TheoryLP, TheoryBeta):
    """Trail, levels, bound snapshots, implied literals, reasons and conflicts; the LPs (node
    relaxations, complete assignments) and the counterexamples they lead to come from
    :class:`~dpllnn.search.theory_lp.TheoryLP`.

    Parameters
    ----------
    network : Network
    spec : Spec
    case_index : int
    open_disjuncts : list of int -- disjuncts of the case still open after the root
    packed : PackedNet
    sel_vars : list of int -- SAT variable of each open disjunct's selector
    deadline : float -- ``time.monotonic()`` limit
    root : LayerBounds or None -- root bounds (no phases), used as the first snapshot
    stats : dict
    method : str -- bound method for propagation (``"crown"`` or ``"ibp"``)
    lp_unstable : int -- relaxation LP at nodes with at most this many free unstable neurons
        (-1: never)
    settings : TheorySettings, optional -- LP limits, PGD share, polling (default: the defaults)
    """

    def __init__(self, network, spec, case_index, open_disjuncts, packed, sel_vars, deadline,
                 root=None, stats=None, method="crown", lp_unstable=-1,
                 settings: TheorySettings | None = None):
        self.cfg = cfg = settings or TheorySettings()
        self.network = network
        self.spec = spec
        self.case = spec.cases[case_index]
        self.packed = packed
        self.n = packed.n_relus
        self.deadline = deadline
        self.stats = stats if stats is not None else {}
        self.method = method
        self.open = list(open_disjuncts)
        self.sel_vars = list(sel_vars)
        self.sel_index = {v: i for i, v in enumerate(self.sel_vars)}
        self.disj = [self.case.disjuncts[i] for i in self.open]
        self.C, self.d, self.rows = self.case.stack(self.open)
        self.lb, self.ub = self.case.lb, self.case.ub
        # layer of each flat neuron, and offsets
        self.layer_off = np.asarray(packed.layer_offsets, dtype=np.int64)
        self.layer_of = np.repeat(np.arange(packed.n_layers), np.diff(self.layer_off))
        # assignment state
        self.phase = np.zeros(self.n, dtype=np.int8)     # current phases (trail + fixed)
        self.fixed = np.zeros(self.n, dtype=np.int8)     # root-level phases (permanent)
        self.sel_val = np.zeros(len(self.sel_vars), dtype=np.int8)
        self.sel_fixed = np.zeros(len(self.sel_vars), dtype=np.int8)
        self.trail: list[int] = []
        self.lim: list[int] = []
        self.reasons: dict[int, list[int]] = {}
        self.pending: list[list[int]] = []              # external clauses to hand over
        self.stop = False            # ask the driver's guard clause to stop the solver
        self.timed_out = False
        self.incomplete = False      # some model was blocked without proof: never answer unsat
        self.cex = None
        #: the incremental layered LP (cells and triangle relaxations); built by the driver after
        #: the root.  Without it (None) no relaxation LP runs and no complete assignment is proved.
        self.llp = None
        #: held around every use of ``llp`` (the background LP thread shares it)
        self.llp_lock = threading.Lock()
        #: relaxation LPs on a background thread when a core is spare (AsyncRelaxationLP), or None
        self.async_lp = None
        self.t_lp_async = 0.0
        #: ``time.monotonic()`` of the first node offered to the background LP (``async_lp_share``),
        #: or None
        self.t_async0 = None
        self.n_lp_jobs = 0
        #: the background LP thread's error text, or None (the driver raises it)
        self.lp_error = None
        self.candidates: list[np.ndarray] = []
        self.x_ref = None            # reference point for decision polarities
        self.snaps: list[Snapshot] = []
        #: per-row lower slopes (m_total, n_relus) for the objective at every node, or None
        self.alpha_obj = None
        #: the root's optimised slopes of hidden neurons (LayerBounds.hidden_alpha), re-used to
        #: tighten every node's hidden bounds (bounds.rebound_hidden), or None
        self.hidden_alpha = None
        self.t_rebound = 0.0
        self.t_bounds = 0.0
        self.t_lp = 0.0
        self.n_nodes = 0
        self.n_implied = 0
        self.n_theory_conflicts = 0
        self.n_lp = 0
        self.n_blocked = 0
        self.n_lp_refuted = 0
        #: run the relaxation LP at nodes with at most this many free unstable neurons (-1: never)
        self.lp_unstable = lp_unstable
        #: recompute only the output's bounds at a node (hidden bounds inherited from the parent
        #: snapshot, clamped by the phases), as beta-CROWN's BaB does: on conv/ResNet graphs a
        #: node's hidden-layer CROWN pass costs ~100x its objective pass (resnet_2b: ~1 s vs
        #: 0.012 s), so the search sees far more nodes for the implications it gives up
        self.objective_only = bool(getattr(packed, "is_graph", False))
        #: beta-CROWN steps on a node's objective when CROWN does not refute it (warm-started from
        #: the parent snapshot's slopes and multipliers); 0: none
        self.beta_iters = cfg.beta_iters_graph if self.objective_only else cfg.beta_iters_dense
        self._init_beta(network)
        self.clause_lits_full = self.clause_lits = self.n_shortened = self.n_recheck = 0
        self.n_refutation_clauses = 0
        self.t_stabilise = 0.0           # MILP stabilisation between restarts (cdcl driver)
        #: every clause handed to the solver (reasons and external clauses), when
        #: ``record_clauses`` is set (validity tests), else None
        self.clause_log = [] if cfg.record_clauses else None
        #: relaxation LP limits: simplex iterations per LP (deterministic: this, not the clock,
        #: decides when an LP is too slow and the LP gate narrows), and a time limit as a backstop
        self.lp_iterations = cfg.lp_iterations
        self.lp_time_limit_s = cfg.lp_time_limit_s
        #: replay relaxation optima (and PGD from them within ``cfg.pgd_share`` of the time)
        self.lp_attack = True
        self.t_attack = 0.0
        self.t0 = time.monotonic()
        #: stop testing disjuncts at a node once one survives the LP (the node stays open)
        self.lp_stop_first = True
        self.lp_slow = 0
        self.root_infeasible = False
        #: parallel search: ``poll()`` -> list of lemma clauses from other workers (each valid
        #: for the whole case: the negated phases of a cube another worker proved), or None when
        #: the case is already settled elsewhere; called at most every ``cfg.poll_s`` seconds from
        #: ``propagate``.  The driver adds lemmas at level 0 after the solver's current call (the
        #: next restart; with ``cfg.lemma_interrupt`` the solver is stopped for them at once,
        #: ``lemma_stop``); None stops the search for good (``cancelled``).
        self.poll = None
        self.lemmas_in: list[list[int]] = []
        self.lemma_stop = False
        self.cancelled = False
        self._next_poll = 0.0
        if root is not None and not root.infeasible and root.method in ("crown", "alpha"):
            self.reset_root(root)
        else:
            self._push_root()

    # ---- snapshots ---------------------------------------------------------------------------
    def objective_lower(self, lbd, rows=None):
        """Lower bounds of the stacked objective rows (all, or the indices ``rows``) on the
        intermediate bounds ``lbd``: output-only CROWN, the max of the adaptive slopes and the
        root's alpha slopes (``alpha_obj``).  Returns (m,) or (len(rows),) float64."""
        C, d = (self.C, self.d) if rows is None else (self.C[rows], self.d[rows])
        lo, _ = objective_bounds(self.packed, self.lb, self.ub, lbd, C, d, upper=False)
        if self.alpha_obj is not None:
            # the root's optimised slopes are valid (any slopes in [0, 1] are) and, on the
            # root's tightened bounds, usually much better than CROWN's adaptive choice
            al = self.alpha_obj if rows is None else self.alpha_obj[rows]
            lo2, _ = objective_bounds(self.packed, self.lb, self.ub, lbd, C, d, alpha=al,
                                      upper=False)
            lo = np.maximum(lo, lo2)
        return lo

    def children_lower(self, lbd, cand, rows):
        """FSB's child bounds: :meth:`objective_lower` on the rows ``rows`` in the two children
        of each neuron of ``cand`` (phase +1, then -1), on ``lbd``'s intermediate bounds with
        the split neuron exact (``dpllnn.bounds.objective_lower_split``: all children in one
        backward pass per slope set).  Returns (len(cand), 2, len(rows)) float64."""
        K_, R = len(cand), len(rows)
        if K_ == 0 or R == 0:
            return np.zeros((K_, 2, R))
        C = np.tile(self.C[rows], (2 * K_, 1))
        d = np.tile(self.d[rows], 2 * K_)
        idx = np.repeat(np.asarray(cand, dtype=np.int64), 2 * R)
        sgn = np.tile(np.repeat(np.array([1, -1], dtype=np.int8), R), K_)
        lo = objective_lower_split(self.packed, self.lb, self.ub, lbd, C, d, idx, sgn)
        if self.alpha_obj is not None:
            al = np.tile(self.alpha_obj[rows], (2 * K_, 1))
            lo = np.maximum(lo, objective_lower_split(self.packed, self.lb, self.ub, lbd, C, d,
                                                      idx, sgn, alpha=al))
        return lo.reshape(K_, 2, R)

    def fit_alpha(self, iters=20):
        """alpha-CROWN slopes for the stacked rows on the root snapshot, reused at every node."""
        if not self.snaps or self.root_infeasible or self.C.shape[0] == 0:
            return
        from ..bounds import optimise_alpha
        root = self.snaps[0]
        t = time.monotonic()
        lower, alpha = optimise_alpha(self.packed, self.lb, self.ub, root.lbd, self.C, self.d,
                                      iters=iters)
        self.t_bounds += time.monotonic() - t
        self.alpha_obj = alpha
        root.obj_lower = np.maximum(root.obj_lower, lower)
        root.refuted = self._refuted(root.obj_lower)

    def _refuted(self, obj_lower):
        return np.array([bool(np.any(obj_lower[self.rows[i]:self.rows[i + 1]] > 0.0))
                         for i in range(len(self.disj))], dtype=bool)

    def _push_root(self):
        t = time.monotonic()
        ph = self.fixed.copy()
        # the previous root (fewer fixed phases) still bounds this one
        outer = self.snaps[0].lbd if self.snaps else None
        lbd = compute_bounds(self.packed, self.lb, self.ub, ph, self.method, outer=outer)
        if not lbd.infeasible and self.hidden_alpha:
            if rebound_hidden(self.packed, lbd, self.hidden_alpha, 1) >= 0:
                lbd.infeasible = True
        self.t_bounds += time.monotonic() - t
        if lbd.infeasible:       # root-level phases contradict: the case is refuted
            self.snaps = []
            self.root_infeasible = True
            return
        self.root_infeasible = False
        lo = self.objective_lower(lbd)
        self.snaps = [Snapshot(0, ph, lbd, lo, self._refuted(lo))]

    def reset_root(self, lbd=None, own_objective=False):
        """Replace the root snapshot (after root tightening or new fixed literals).

        ``own_objective``: ``lbd.obj_lower`` bounds this theory's stacked rows (``self.C``) and
        may be tighter than CROWN's (alpha-CROWN)."""
        if lbd is None:
            self._push_root()
            return
        if own_objective and lbd.alpha is not None and lbd.alpha.shape == (self.C.shape[0], self.n):
            self.alpha_obj = lbd.alpha
        if lbd.hidden_alpha:
            self.hidden_alpha = lbd.hidden_alpha
        lo = self.objective_lower(lbd)
        if own_objective and lbd.obj_lower is not None and lbd.obj_lower.shape == lo.shape:
            lo = np.maximum(lo, lbd.obj_lower)
        self.snaps = [Snapshot(0, self.fixed.copy(), lbd, lo, self._refuted(lo))]
        self.root_infeasible = False

    # ---- O(1) notifications --------------------------------------------------------------------
    def assign(self, lit, fixed=False):
        self.trail.append(lit)
        v = lit if lit > 0 else -lit
        s = 1 if lit > 0 else -1
        if v <= self.n:
            self.phase[v - 1] = s
            if fixed:
                self.fixed[v - 1] = s
        else:
            i = self.sel_index.get(v)
            if i is not None:
                self.sel_val[i] = s
                if fixed:
                    self.sel_fixed[i] = s

    def new_level(self):
        self.lim.append(len(self.trail))

    def backtrack(self, to):
        if to >= len(self.lim):
            return
        pos = self.lim[to]
        n = self.n
        for lit in self.trail[pos:]:
            v = lit if lit > 0 else -lit
            if v <= n:
                self.phase[v - 1] = self.fixed[v - 1]
            else:
                i = self.sel_index.get(v)
                if i is not None:
                    self.sel_val[i] = self.sel_fixed[i]
        del self.trail[pos:]
        del self.lim[to:]
        snaps = self.snaps
        while len(snaps) > 1 and snaps[-1].trail_len > pos:
            snaps.pop()

    # ---- reasons -------------------------------------------------------------------------------
    def _neg_assigned(self, upto_layer=None, with_fixed=False):
        """Negated assigned phase literals of layers < upto_layer (all layers if None), without
        the root-fixed ones unless ``with_fixed`` (those are level-0 units of the solver, so a
        clause without them is implied: :mod:`dpllnn.search.clauses`)."""
        end = self.n if upto_layer is None else self.layer_off[upto_layer]
        ph = self.phase[:end]
        idx = np.flatnonzero(ph if with_fixed else ph * (self.fixed[:end] == 0))
        return (-(idx + 1) * ph[idx]).tolist()

    def reason(self, lit):
        c = self.reasons[lit]
        if self.clause_log is not None:
            self.clause_log.append(c)
        return c

    # ---- propagation ---------------------------------------------------------------------------
    def _time_up(self):
        if time.monotonic() >= self.deadline:
            self.timed_out = True
            self.stop = True
            return True
        return False

    def _polled(self):
        """Poll the parallel search (see ``poll``); True when the solver must stop now."""
        t = time.monotonic()
        if t < self._next_poll:
            return False
        self._next_poll = t + self.cfg.poll_s
        got = self.poll()
        if got is None:
            self.cancelled = self.stop = True
        elif got:
            self.lemmas_in.extend(got)
            if self.cfg.lemma_interrupt:
                self.lemma_stop = self.stop = True
        return self.stop

    def propagate(self):
        """Implied literals (or one conflicting literal) under the current assignment."""
        if self.stop or self._time_up() or self.root_infeasible:
            return []
        if self.poll is not None and self._polled():
            return []
        if self.async_lp is not None:
            self._collect_lp()
            if self.cex is not None:
                return []
        ph = self.phase
        snaps = self.snaps
        # the top snapshot whose phases are contained in the current assignment
        while len(snaps) > 1:
            sp = snaps[-1].phase
            if np.all((sp == 0) | (sp == ph)):
                break
            snaps.pop()
        base = snaps[-1]
        blb, bub = base.lbd.lb, base.lbd.ub
        new = ph != base.phase
        if new.any():
            # contradiction with the base bounds
            bad = np.flatnonzero(new & (((ph == 1) & (bub < 0.0)) | ((ph == -1) & (blb > 0.0))))
            if bad.size:
                return self._conflict_neuron(int(bad[0]))
            eff = np.flatnonzero(new & (blb < 0.0) & (bub > 0.0))
            if eff.size:
                start = self.packed.n_layers if self.objective_only else int(self.layer_of[eff[0]])
                t = time.monotonic()
                # intersected with the base's bounds (valid on a superset of this node, and
                # possibly tighter: the root's alpha-CROWN bounds, or an earlier layer's)
                # objective-only nodes bound their objective rows directly: the output
                # neurons' own CROWN pass (2 rows per output) would cost more than those rows
                lbd = compute_bounds(self.packed, self.lb, self.ub, ph.copy(), self.method,
                                     start_layer=start, prev=base.lbd, outer=base.lbd,
                                     output_crown=not self.objective_only)
                self.n_nodes += 1
                if not lbd.infeasible and self.hidden_alpha:
                    t1 = time.monotonic()
                    bad = rebound_hidden(self.packed, lbd, self.hidden_alpha, start + 1)
                    self.t_rebound += time.monotonic() - t1
                    if bad >= 0:
                        lbd.infeasible, lbd.conflict = True, bad
                if lbd.infeasible:
                    self.t_bounds += time.monotonic() - t
                    c = int(lbd.conflict)
                    if c < 0 or c >= self.n or ph[c] == 0:
                        return self._conflict_all()
                    return self._conflict_neuron(c)
                # the base's objective bound holds here too (its phases are a subset)
                lo = np.maximum(self.objective_lower(lbd), base.obj_lower)
                al = be = None
                ref = self._refuted(lo)
                if self.beta_iters and not ref.all():
                    t1 = time.monotonic()
                    lo, al, be = self._beta_lower(lbd, ph, base, lo, ref)
                    ref2 = self._refuted(lo)
                    self.n_beta_refuted += int(ref2.sum() - ref.sum())
                    ref = ref2
                    self.t_beta += time.monotonic() - t1
                self.t_bounds += time.monotonic() - t
                base = Snapshot(len(self.trail), ph.copy(), lbd, lo, ref, alpha=al, beta=be)
                snaps.append(base)
            else:
                base.phase = ph.copy()
                base.trail_len = len(self.trail)
        if self.lp_unstable >= 0 and not base.lp_done:
            self._relaxation_lp(base)
        return self._consequences(base)

    def _conflict_neuron(self, c):
        """Neuron ``c`` has a phase its layer's bounds (from earlier layers) exclude."""
        k = int(self.layer_of[c])
        lit = (c + 1) * int(self.phase[c])
        self.reasons[-lit] = [-lit] + self._neg_assigned(k)
        self.n_theory_conflicts += 1
        return [-lit]

    def _conflict_all(self):
        """Fallback: the whole phase assignment is contradictory (external clause)."""
        self.pending.append(self._neg_assigned(with_fixed=True))
        self.n_theory_conflicts += 1
        return []

    def _consequences(self, snap):
        ph = self.phase
        lb, ub = snap.lbd.lb, snap.lbd.ub
        free = ph == 0
        act = np.flatnonzero(free & (lb >= 0.0))
        ina = np.flatnonzero(free & (ub <= 0.0) & (lb < 0.0))
        out = []
        if act.size or ina.size:
            per_layer = {}
            for idx, s in ((act, 1), (ina, -1)):
                for j in idx.tolist():
                    k = int(self.layer_of[j])
                    r = per_layer.get(k)
                    if r is None:
                        r = per_layer[k] = self._neg_assigned(k)
                    lit = (j + 1) * s
                    self.reasons[lit] = [lit] + r
                    out.append(lit)
            self.n_implied += len(out)
        ref = snap.refuted
        if ref.any():
            full = None
            for i in np.flatnonzero(ref).tolist():
                sv = self.sel_val[i]
                if sv == -1:
                    continue
                if full is None:
                    full = self._neg_assigned()
                lit = -self.sel_vars[i]
                self.reasons[lit] = [lit] + self.refutation_reason(snap, i, full)
                if sv == 1:                 # selected disjunct refuted: conflict
                    self.n_theory_conflicts += 1
                    return [lit]
                out.append(lit)
        return out
