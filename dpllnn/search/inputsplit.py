"""Branch and bound on input boxes (ReluVal / Neurify / VeriNet style), batched.

One case of the spec is searched at a time.  The rows of its open disjuncts are stacked into one
objective ``C @ y - d``, each disjunct extended by exact convex combinations of its rows
(:func:`dpllnn.search.rows.combined_rows`: implied by the disjunct, so refuting one refutes
it); a disjunct is refuted on a box when one of its rows has a sound lower bound ``> 0``, and a
box is *closed* when every open disjunct is refuted on it.  Refutations are
inherited by sub-boxes (a bound sound on a box is sound on every sub-box), and a child's row
bounds are the max of its own and its parent's.

Loop, until the pool of open boxes is empty (``unsat``), a counterexample is validated
(``sat``), the deadline passes (``timeout``):

1. pop up to ``batch`` boxes: the most negative priority first (best-first, the boxes furthest
   from a proof, where counterexamples live); when the pool grows past ``max_pool`` pop the
   deepest boxes instead (depth-first bounds the memory);
2. choose a dimension per box (:mod:`dpllnn.search.decide_input`): ``"lookahead"`` (default)
   bounds the bisections along all ``n`` dimensions (or the top ``lookahead_dims`` by smear)
   with CROWN and keeps the dimension whose children are closest to closed (the chosen
   children's bounds are reused); ``"smear"`` takes the largest smear, by default
   ``|A_in[r]| * width`` where ``A_in[r]`` are the input coefficients of CROWN's linear lower
   bound on the box's worst row (free with the bound), or ``|gradient| * width`` at the centre;
3. bound the children (``method``: ``"crown"``, batched in one numba call by
   :func:`dpllnn.bounds.batch_crown`, each child intersecting its parent's hidden bounds;
   ``"symbolic"`` forward symbolic intervals; ``"hybrid"``: symbolic, then CROWN on the
   children symbolic leaves open);
4. try candidate points of every child (centre, and the corner minimising CROWN's linear lower
   bound of the worst row, or the gradient corner) in one batched forward pass; any point whose
   float64 margin is ``<= 0`` goes to :func:`check_counterexample`; every ``pgd_every`` batches
   PGD runs on the worst boxes and from the candidate points with the smallest margins;
5. from ``alpha_after_s`` on, popped boxes at least ``alpha_depth`` deep first get alpha-CROWN
   with optimised intermediate bounds (Xu et al. 2021) on the best rows of each open disjunct,
   within ``alpha_share`` of the search time: on the hard ACAS Xu prop_2 boxes it closes 50-90%
   of the boxes CROWN leaves open, and the children of the others inherit its tighter bounds;
6. a box that can no longer be bisected (float resolution) has its points tried and is then
   dropped: the answer can no longer be ``unsat`` (``unknown`` if nothing else decides).
"""
from __future__ import annotations

import collections
import contextlib
import time

import numpy as np

from ..attack import snap_float32
from ..result import Verdict
from ..settings import DEFAULT, InputSplitSettings
from ..validate import check_counterexample
from .box_bounds import BoxBounds
from .box_checks import BoxChecks
from .boxes import FIELDS, BoxPool
from .rows import stack_rows
from .decide_input import box_priority, candidate_points, disjunct_scores, splittable

__all__ = ["InputSplitSettings", "search_case"]


class _Search(BoxBounds, BoxChecks):
    """One case's branch and bound (module docstring): the loop and its bookkeeping.  Bounding
    and bisecting boxes come from :class:`~dpllnn.search.box_bounds.BoxBounds`, counterexample
    search and cell LPs on boxes from :class:`~dpllnn.search.box_checks.BoxChecks`."""

    def __init__(self, network, spec, case, C, d, groups, packed, deadline, seed, stats, cfg,
                 share=None, start_pool=None):
        self.share, self.start_pool = share, start_pool
        self.network, self.spec, self.case = network, spec, case
        self.C, self.d, self.groups = C, d, groups
        self.packed, self.deadline, self.cfg, self.stats = packed, deadline, cfg, stats
        self.seed = seed
        self.validations = 0
        self.stable_sum = 0.0
        self.stable_n = 0
        self.gave_up = 0
        self.lp = None
        self.hot = []
        self.ends = np.append(groups[1:], C.shape[0])
        self.row_counts = np.diff(np.append(groups, C.shape[0]))
        self.row_closed = True if len(groups) > 1 else None
        self.t_start = time.monotonic()
        self.alpha_s = 0.0
        self.alpha_gains = collections.deque(maxlen=256)
        if start_pool is not None and "alpha_gains" in start_pool:
            # boxes handed over mid-search: alpha-CROWN starts when it does in the donor (at
            # alpha_after_s of the donor's search), with the donor's gains.  (Starting it at once
            # in a part donated in the first second: alpha on every shallow box, 42% closed
            # against 72-80% in the donor -- ACAS Xu 3_3 prop_2.)
            self.alpha_gains.extend(np.asarray(start_pool["alpha_gains"]).tolist())
            self.t_start -= min(float(start_pool.get("elapsed_s", cfg.alpha_after_s)),
                                cfg.alpha_after_s)
        self.rng = np.random.default_rng(seed)
        self._alpha_unstable = None
        self.pool = None

    # ---- main loop --------------------------------------------------------------------
    def run(self):
        cfg, case = self.cfg, self.case
        n, m, k = case.lb.shape[0], self.C.shape[0], len(self.groups)
        pool = BoxPool(n, m, k, self.packed.n_z if cfg.inherit_bounds else 0)
        wid0 = np.where(case.ub > case.lb, case.ub - case.lb, 1.0)
        self.vol_proved = 0.0
        if self.start_pool is not None:
            sp = self.start_pool
            if sp["lower"].shape[1] != m or sp["zl"].shape[1] != pool.zl.shape[1]:
                raise ValueError("start_pool does not match this case's stacked rows")
            pool.push(*(sp[name] for name in FIELDS))
            return self.loop(pool, wid0)
        lo0, hi0 = case.lb[None].copy(), case.ub[None].copy()
        low0, unst0, sc0, pts0, z0 = self.bound(lo0, hi0, np.full((1, m), -np.inf),
                                                np.ones((1, k), bool))
        if z0[0].shape[1] != pool.zl.shape[1]:
            z0 = self._noinfo(1, pool)
        open0 = ~(disjunct_scores(low0, self.groups) > 0.0)
        P, mg = candidate_points(self.network, lo0, hi0, self.C, self.d, self.groups)
        if pts0 is not None:
            P2, mg2 = self.points(lo0, hi0, pts0)
            P, mg = np.vstack([P, P2[1:]]), np.vstack([mg, mg2[1:]])
        cex = self.try_points(P, mg, np.repeat(open0, P.shape[0], axis=0))
        if cex is not None:
            return Verdict.SAT, cex
        if not open0.any():
            self._leaf(unst0)
            return Verdict.UNSAT, None
        if sc0 is None:
            sc0 = np.zeros((1, n))
        pool.push(lo0, hi0, low0, open0, np.zeros(1, np.int64),
                  box_priority(disjunct_scores(low0, self.groups), open0), sc0, *z0)
        return self.loop(pool, wid0)

    def live_counters(self) -> dict:
        """For the progress thread: the lowest lower bound of the margin over the open boxes
        (the boxes being bounded are not in the pool and are left out)."""
        pool = self.pool
        n = pool.size if pool is not None else 0
        return {"lower_bound": float(pool.prio[:n].min())} if n else {}

    def loop(self, pool, wid0):
        """The branch-and-bound loop on the open boxes of ``pool`` (module docstring)."""
        self.pool = pool
        cfg, st = self.cfg, self.stats
        it = 0
        while pool.size:
            if self.share is not None and pool.size >= 2 and self.share.wants():
                part = pool.split_off()
                part["alpha_gains"] = np.array(self.alpha_gains)  # the receiver's alpha starts warm
                part["elapsed_s"] = time.monotonic() - self.t_start
                self.share.give(part)
                st["donations"] = st.get("donations", 0) + 1
                continue
            if time.monotonic() >= self.deadline:
                return Verdict.TIMEOUT, None
            it += 1
            st["max_queue"] = max(st.get("max_queue", 0), pool.size)
            lo, hi, low, open_, depth, sc, zl, zu = pool.pop(cfg.batch,
                                                             depth_first=pool.size > cfg.max_pool)
            if it % cfg.pgd_every == 0:
                w = np.argsort(box_priority(disjunct_scores(low, self.groups), open_))
                cex = self.pgd(lo[w[:cfg.pgd_boxes]], hi[w[:cfg.pgd_boxes]],
                               open_[w[:cfg.pgd_boxes]], it)
                if cex is not None:
                    return Verdict.SAT, cex
                cex = self.pgd_hot(it)
                if cex is not None:
                    return Verdict.SAT, cex
            if 0 <= cfg.alpha_depth and zl.shape[1] == self.packed.n_z:
                low, open_, zl, zu = self.alpha_pass(lo, hi, low, open_, depth, zl, zu)
                shut = ~open_.any(axis=1)
                if shut.any():
                    self._leaf(self._alpha_unstable[shut])
                    self.vol_proved += float(np.prod((hi[shut] - lo[shut]) / wid0, axis=1).sum())
                    st["volume_proved"] = self.vol_proved
                    keep = ~shut
                    lo, hi, low, open_, depth, sc, zl, zu = (
                        lo[keep], hi[keep], low[keep], open_[keep], depth[keep], sc[keep],
                        zl[keep], zu[keep])
                    if lo.shape[0] == 0:
                        continue
            # boxes at float resolution: try their points, then give up on them
            can = splittable(lo, hi)
            stuck = ~can.any(axis=1)
            if stuck.any():
                P, mg = candidate_points(self.network, lo[stuck], hi[stuck], self.C, self.d,
                                         self.groups)
                cex = self.try_points(P, mg, np.vstack([open_[stuck], open_[stuck]]))
                if cex is not None:
                    return Verdict.SAT, cex
                si = np.flatnonzero(stuck)
                big = np.full(si.size, 0, dtype=np.int64)
                o_st = open_[si]
                cex = self.lp_pass(lo[si], hi[si], low[si], o_st, big,
                                   cfg.lp_max_unstable_stuck, si.size)
                if cex is not None:
                    return Verdict.SAT, cex
                self.gave_up += int(o_st.any(axis=1).sum())
                keep = ~stuck
                lo, hi, low, open_, depth, can, sc, zl, zu = (
                    lo[keep], hi[keep], low[keep], open_[keep], depth[keep], can[keep], sc[keep],
                    zl[keep], zu[keep])
                if lo.shape[0] == 0:
                    continue
            lo2, hi2, low2, unst2, par, sc2, pts2, z2 = self.split(lo, hi, low, open_, can, sc,
                                                                   depth,
                                                                   (zl, zu))
            if z2[0].shape[1] != pool.zl.shape[1]:
                z2 = self._noinfo(lo2.shape[0], pool)
            open2 = open_[par] & ~(disjunct_scores(low2, self.groups) > 0.0)
            if cfg.lp_max_unstable >= 0:
                cex = self.lp_pass(lo2, hi2, low2, open2, unst2, cfg.lp_max_unstable,
                                   cfg.lp_per_iter)
                if cex is not None:
                    return Verdict.SAT, cex
            depth2 = depth[par] + 1
            st["split_depth_max"] = max(st.get("split_depth_max", 0), int(depth2.max()))
            closed = ~open2.any(axis=1)
            if closed.any():
                self._leaf(unst2[closed])
                self.vol_proved += float(np.prod((hi2[closed] - lo2[closed]) / wid0, axis=1).sum())
                st["volume_proved"] = self.vol_proved
            live = ~closed
            if live.any():
                lo2, hi2, low2, open2, depth2 = (lo2[live], hi2[live], low2[live], open2[live],
                                                 depth2[live])
                z2 = (z2[0][live], z2[1][live])
                sc2 = np.zeros_like(lo2) if sc2 is None else sc2[live]
                P, mg = self.points(lo2, hi2, None if pts2 is None else pts2[live])
                cex = self.try_points(P, mg, np.vstack([open2, open2]), lo2, hi2)
                if cex is not None:
                    return Verdict.SAT, cex
                pool.push(lo2, hi2, low2, open2, depth2,
                          box_priority(disjunct_scores(low2, self.groups), open2), sc2, *z2)
        return (Verdict.UNKNOWN if self.gave_up else Verdict.UNSAT), None

    def _leaf(self, unst):
        self.stats["boxes_proved"] = self.stats.get("boxes_proved", 0) + int(unst.size)
        self.stable_sum += float((self.packed.n_relus - unst).sum())
        self.stable_n += int(unst.size)


def _single_threaded_blas():
    """Limit BLAS to one thread while searching, when threadpoolctl is installed.

    The kernels' small GEMMs (50 x 50 blocks) gain nothing from BLAS threads, and on a loaded
    machine OpenBLAS's spinning threads made the symbolic kernel 5 to 100 times slower
    (measured on ACAS Xu, 2 cores).  Setting ``OPENBLAS_NUM_THREADS=1`` before numpy is
    imported has the same effect without threadpoolctl.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def search_case(network, spec, case_index, open_disjuncts, *, packed, deadline, seed, stats,
                root=None, settings: InputSplitSettings | None = None, share=None,
                start_pool=None, live=None):
    """Input-splitting branch and bound on one case (see the module docstring).

    Parameters
    ----------
    network : Network;  spec : Spec
    case_index : int -- the case of ``spec`` to search
    open_disjuncts : sequence of int -- its disjuncts not refuted at the root
    packed : PackedNet -- ``pack(network)``
    deadline : float -- ``time.monotonic()`` value
    seed : int
    stats : dict -- counters are added to it (``nodes``, ``boxes_proved``, ``max_queue``,
        ``split_depth_max``, ``inputsplit_s``, ``stable_per_box_mean``, ...)
    root : LayerBounds or None -- unused (the first batch bounds the case box itself)
    settings : InputSplitSettings, optional
    share : object with ``wants() -> bool`` and ``give(part: dict)``, optional -- work sharing
        (:mod:`dpllnn.search.portfolio`): when ``wants()``, half of the open boxes are handed
        over (``give``) and are no longer this call's responsibility: the verdict then covers
        only the boxes kept
    start_pool : dict, optional -- open boxes handed over by another search of the same case
        and disjuncts (a ``give`` part); searched instead of the case's box
    live : dpllnn.search.progress.LiveCounters, optional -- the lowest lower bound over the open
        boxes is registered there while the search runs (its counters are live in ``stats``)

    Returns
    -------
    (Verdict, Counterexample or None) -- ``SAT`` only with a counterexample accepted by
    :func:`check_counterexample`; ``UNSAT`` only when every open disjunct is refuted on every
    leaf box by sound bounds.
    """
    t0 = time.monotonic()
    cfg = settings or DEFAULT.inputsplit
    case = spec.cases[case_index]
    idx = list(open_disjuncts)
    try:
        if not idx or case.is_empty:
            return Verdict.UNSAT, None
        if any(case.disjuncts[i].C.shape[0] == 0 for i in idx):
            # an empty conjunction holds everywhere: any point of the box is a counterexample
            for x in (0.5 * (case.lb + case.ub), case.lb, case.ub):
                cex = check_counterexample(network, spec, snap_float32(x, case.lb, case.ub))
                if cex is not None:
                    return Verdict.SAT, cex
            return Verdict.UNKNOWN, None
        C, d, groups = stack_rows(case, idx, cfg.combine_rows, cfg.combine_q)
        s = _Search(network, spec, case, C, d, groups, packed, deadline, seed, stats, cfg,
                    share, start_pool)
        watch = live.source(s.live_counters) if live is not None else contextlib.nullcontext()
        try:
            with _single_threaded_blas(), watch:
                return s.run()
        finally:
            if s.stable_n:  # mean over the leaf boxes of every case searched so far
                n_old = stats.get("stable_leaf_boxes", 0)
                mean_old = stats.get("stable_per_box_mean", 0.0)
                tot = n_old + s.stable_n
                stats["stable_per_box_mean"] = (mean_old * n_old + s.stable_sum) / tot
                stats["stable_leaf_boxes"] = tot
            if s.gave_up:
                stats["boxes_gave_up"] = stats.get("boxes_gave_up", 0) + s.gave_up
    finally:
        stats["inputsplit_s"] = stats.get("inputsplit_s", 0.0) + time.monotonic() - t0
