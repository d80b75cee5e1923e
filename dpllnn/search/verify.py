"""Top-level strategy: bound at the root, falsify, choose a search mode, combine into a Result.

Pipeline per property (DESIGN.md §2):

1. empty input boxes are ``unsat`` by definition (no input exists);
2. root CROWN bounds per case: a disjunct is refuted when some row of ``C @ y - d`` has a
   strictly positive sound lower bound (all refuted: ``unsat`` without any attack);
3. falsification (random sampling + PGD, :mod:`dpllnn.attack`) for a short budget; every hit is
   replayed in float64 and onnxruntime before ``sat`` is answered; then, for the CDCL search,
   alpha-CROWN on the disjuncts CROWN left open;
4. the remaining disjuncts of each case go to the search: best-first input splitting
   (:mod:`dpllnn.search.inputsplit`) for low-dimensional inputs, hidden-phase CDCL
   (:mod:`dpllnn.search.cdcl`) otherwise; in ``mode="auto"``, when every case has at most
   ``SearchSettings.auto_cdcl_max_unstable`` unstable ReLUs at the root, input splitting gets
   ``auto_inputsplit_share`` of the time and CDCL the rest (stats ``mode`` "inputsplit+cdcl");
5. the verdicts of the cases are joined in the lattice of :class:`dpllnn.result.Verdict`.

Both search modules offer the same entry point::

    search_case(network, spec, case_index, open_disjuncts, *, packed, deadline, seed, stats,
                root) -> (Verdict, Counterexample | None)

returning ``SAT`` only with a validated counterexample, ``UNSAT`` only when every open disjunct of
the case is refuted by sound reasoning, ``TIMEOUT`` when ``deadline`` (a ``time.monotonic()``
value) passed, ``UNKNOWN`` otherwise.  ``stats`` is a dict the search adds its counters to.
"""
from __future__ import annotations

import time

import numpy as np

from ..attack import falsify
from ..bounds import alpha_crown, compute_bounds, lower_bound_minimisers, pack
from ..errors import DeadlineReached
from ..network import Network
from .. import limits
from ..result import Result, Verdict
from ..settings import DEFAULT, PARALLEL_SCHEMES, SearchSettings
from ..spec import Spec
from .dispatch import search_case_dispatch
from .root_milp import milp_root

def root_refute(packed, case, open_idx, method="crown", stats=None, intermediate_iters=0,
                base=None, deadline=None, intermediate_deadline=None):
    """Refute disjuncts of ``case`` with root bounds.

    ``intermediate_iters > 0`` (``method="alpha"`` only): also optimise the hidden layers' bounds
    (alpha-CROWN on every unstable neuron, that many steps per layer).
    ``base`` (``method="alpha"`` only): the case's CROWN root bounds, already computed, which
    alpha-CROWN starts from instead of recomputing them (it updates that object; on a ResNet
    the CROWN pass is most of the root's cost, 2-10 s).
    ``intermediate_deadline`` (graphs, ``time.monotonic()``): no hidden node's optimisation
    starts after it (:func:`dpllnn.bounds.alpha_crown`).

    Returns
    -------
    (still_open, layer_bounds) -- indices of disjuncts not refuted; the root LayerBounds
    (None when there is nothing to bound).
    """
    nonempty = [i for i in open_idx if case.disjuncts[i].C.shape[0] > 0]
    if not nonempty:
        return list(open_idx), None
    C, d, rows = case.stack(nonempty)
    # graphs stop at the deadline (DeadlineReached); a dense chain's root takes milliseconds
    kw = {"deadline": deadline} if getattr(packed, "is_graph", False) and deadline else {}
    if method == "alpha":
        if intermediate_deadline is not None and kw:
            kw["intermediate_deadline"] = intermediate_deadline
        lbd = alpha_crown(packed, case.lb, case.ub, None, C, d, intermediate=intermediate_iters > 0,
                          intermediate_iters=max(intermediate_iters, 1), base=base, **kw)
    else:
        lbd = compute_bounds(packed, case.lb, case.ub, None, method, C=C, d=d, **kw)
    if stats is not None:
        stats["root_unstable"] = int(lbd.n_unstable)
    if lbd.infeasible:  # cannot happen without phases, but never refute on it silently
        return list(open_idx), lbd
    still = [i for i in open_idx if i not in nonempty]
    for k, i in enumerate(nonempty):
        if not np.any(lbd.obj_lower[rows[k]:rows[k + 1]] > 0.0):
            still.append(i)
    return sorted(still), lbd


def attack_starts(packed, case, open_idx, lbd):
    """Per disjunct of ``case``: the box vertices minimising its rows' CROWN lower bounds under
    the root bounds ``lbd`` (None for disjuncts not open or without rows); see
    :func:`dpllnn.bounds.lower_bound_minimisers`."""
    out = [None] * len(case.disjuncts)
    nonempty = [i for i in open_idx if case.disjuncts[i].C.shape[0] > 0]
    if lbd is None or lbd.infeasible or not nonempty:
        return out
    C, d, rows = case.stack(nonempty)
    X = lower_bound_minimisers(packed, case.lb, case.ub, lbd, C, d)
    for k, i in enumerate(nonempty):
        out[i] = X[rows[k]:rows[k + 1]]
    return out


def choose_mode(network: Network, mode: str,
                max_inputs: int = DEFAULT.inputsplit_max_inputs) -> str:
    """The search mode for ``mode`` ("auto", "inputsplit" or "cdcl"): "auto" takes input
    splitting for at most ``max_inputs`` inputs (``SearchSettings.inputsplit_max_inputs``)."""
    if getattr(network, "is_graph", False):
        # input splitting runs the dense batch kernels; a graph is searched over its phases
        if mode == "inputsplit":
            from ..errors import DpllnnError
            raise DpllnnError("--mode inputsplit takes only chains of dense layers; this network "
                             "is a graph (conv / residual)")
        return "cdcl"
    if mode == "auto":
        return "inputsplit" if network.n_inputs <= max_inputs else "cdcl"
    if mode not in ("inputsplit", "cdcl"):
        raise ValueError(f"unknown mode {mode!r}")
    return mode


def verify(network: Network, spec: Spec, *, memory_limit_mb: float | None = None,
           progress_s: float | None = None, progress_stream=None, **kwargs) -> Result:
    """Decide ``spec`` on ``network`` within a memory budget (see :func:`_verify` for the other
    parameters).

    memory_limit_mb : float or None -- resident memory of this process and its workers, MB
        (None: :func:`dpllnn.limits.default_memory_limit_mb`; <= 0: no limit).  When it is
        exceeded the run ends with ``unknown``, reason "memory limit ...", and
        ``stats["memory_limit_reached"] = True``.
    progress_s : float or None -- print a progress line (:mod:`dpllnn.search.progress`) on
        ``progress_stream`` (default ``sys.stderr``) every ``progress_s`` seconds; None: none
    """
    t0 = time.monotonic()
    budget = None
    reporter = None
    if progress_s is not None:
        from .progress import LiveCounters, ProgressReporter

        live = kwargs["progress"] = LiveCounters()
        reporter = ProgressReporter(lambda: (live.stage, live.snapshot()), progress_s,
                                    stream=progress_stream, n_cases=len(spec.cases)).start()
    try:
        with limits.memory_limit(memory_limit_mb) as budget:
            result = _verify(network, spec, **kwargs)
    except DeadlineReached:         # a graph's bound pass ran into the time limit
        result = Result(Verdict.TIMEOUT, time.monotonic() - t0, None,
                        {"mode": kwargs.get("mode", "auto")}, "time limit reached")
    except MemoryError as e:        # MemoryLimitReached, or a real allocation failure
        result = Result(Verdict.UNKNOWN, time.monotonic() - t0, None,
                        {"mode": kwargs.get("mode", "auto")}, f"memory limit: {e}")
        result.stats["memory_limit_reached"] = True
    finally:
        if reporter is not None:
            reporter.stop()
    limits.raise_if_interrupted()     # a signal whose exception was lost: no answer from this run
    if budget is not None:
        result.stats.update(budget.stats())
    return result


def _verify(network: Network, spec: Spec, *, timeout_s: float = 60.0, seed: int = 0,
           workers: int | None = None, mode: str = "auto", falsify_s: float | None = None,
           parallel: str | None = None, settings: SearchSettings | None = None,
           progress=None) -> Result:
    """Decide ``spec`` on ``network``.

    Parameters
    ----------
    network : Network
    spec : Spec -- the unsafe set (VNN-LIB semantics)
    timeout_s : float -- wall-clock limit, seconds (honoured within about 1 s)
    seed : int -- makes runs reproducible
    workers : int or None -- parallel worker processes (None: all cores); see
        :mod:`dpllnn.search.portfolio`
    mode : {"auto", "inputsplit", "cdcl"} -- search strategy (auto: input splitting for
        at most ``settings.inputsplit_max_inputs`` inputs, CDCL otherwise; with few unstable
        ReLUs at the root input splitting hands over to CDCL, module docstring step 4)
    falsify_s : float or None -- falsification budget before the search (default: a few
        percent of the timeout, 0.3 to 3 s)
    parallel : {"hybrid", "portfolio", "cubes"} or None -- how CDCL workers share a case (None:
        ``settings.parallel.scheme``)
    settings : SearchSettings or None -- the tuning of every search module (None:
        :data:`dpllnn.settings.DEFAULT`); passed down to the searches and the worker processes
    progress : dpllnn.search.progress.LiveCounters or None -- the run's stage and the searches'
        running counters are kept there for a progress reporter

    Returns
    -------
    Result -- ``sat`` only with a counterexample validated by float64 and onnxruntime;
    ``unsat`` only when every case and disjunct is refuted by sound bounds or search.
    """
    if parallel is not None and parallel not in PARALLEL_SCHEMES:
        raise ValueError(f"unknown parallel CDCL scheme {parallel!r}")
    settings = settings or DEFAULT
    t0 = time.monotonic()
    deadline = t0 + float(timeout_s)
    chosen = choose_mode(network, mode, settings.inputsplit_max_inputs)
    is_graph = bool(getattr(network, "is_graph", False))
    stats: dict = {"mode": chosen, "cases": len(spec.cases), "disjuncts": spec.n_disjuncts}

    def stage(name):
        if progress is not None:
            progress.stage = name

    if progress is not None:
        progress.stats = stats

    def done(verdict, cex=None, reason=""):
        stats["time_total_s"] = time.monotonic() - t0
        return Result(verdict, time.monotonic() - t0, cex, stats, reason)

    live = [i for i, c in enumerate(spec.cases) if not c.is_empty]
    if not live:
        return done(Verdict.UNSAT, reason="every input box is empty")

    if falsify_s is None:
        # input splitting attacks every box it opens (candidate points, PGD on the worst boxes),
        # so a short up-front attack suffices there (on ACAS Xu the slowest counterexample the
        # up-front attack finds takes 0.27 s, 1_3 prop_2); CDCL has no such attack of its own
        falsify_s = (min(0.3, max(0.1, 0.03 * timeout_s)) if chosen == "inputsplit" else
                     min(3.0, max(0.3, 0.03 * timeout_s)))
        if is_graph:
            # conv/ResNet graphs: the attack needs more than 3 % of a short limit (sri_resnet_a's
            # sat instances take 1.2-1.4 s of PGD each)
            falsify_s = min(3.0, max(0.3, 0.1 * timeout_s))
    if is_graph and falsify_s > 0:
        # the whole attack before the root bounds, which cost seconds on a conv/ResNet graph
        # (sri_resnet_a: ~10 s of CROWN and alpha-CROWN before a 1 s attack found its sat cases)
        t = time.monotonic()
        stage("attack")
        cex = falsify(network, spec, time_limit_s=falsify_s, seed=seed, deadline=deadline)
        stats["falsify_s"] = time.monotonic() - t
        if cex is not None:
            return done(Verdict.SAT, cex, "falsification (sampling/PGD)")
        falsify_s = 0.0

    # 2. root CROWN bounds first: tens of ms, and a property they prove needs no attack (on
    # mnist_fc the falsification budget had been most of the time of root-proved instances)
    t = time.monotonic()
    stage("root bounds (CROWN)")
    packed = pack(network, settings.graph_row_chunk_bytes)
    open_per_case, roots = {}, {}
    for ci in live:
        case = spec.cases[ci]
        open_per_case[ci], roots[ci] = root_refute(packed, case, range(len(case.disjuncts)),
                                                   "crown", stats, deadline=deadline)
    stats["root_bounds_s"] = time.monotonic() - t
    if not any(open_per_case.values()):
        stats["root_refuted"] = spec.n_disjuncts
        return done(Verdict.UNSAT, reason="root bounds")

    # 3. falsification
    t = time.monotonic()
    starts = {ci: attack_starts(packed, spec.cases[ci], open_per_case[ci], roots[ci])
              for ci in live if open_per_case[ci]} if falsify_s > 0 else {}
    # CDCL with several workers: half the attack here, the other half (another seed) as the first
    # task of the worker pool, beside the first cubes -- the same attack effort as one worker,
    # without keeping the second core idle for it.  Input splitting with several workers: the
    # whole attack as that task (the search attacks every box it opens anyway), so the search
    # starts at once
    later = 0.0
    if workers is not None and workers > 1:
        later = 0.5 * falsify_s if chosen == "cdcl" else falsify_s
    # CDCL: a short attack first (it finds most counterexamples), then alpha-CROWN at the root
    # (it proves many properties CROWN leaves open: the rest of the attack budget would only
    # delay them), then the rest of the attack on what is still open
    first = (falsify_s - later if chosen != "cdcl" else
             min(settings.first_attack_s, falsify_s - later))
    cex = None
    stage("attack")
    if first > 0:
        cex = falsify(network, spec, time_limit_s=first, seed=seed, deadline=deadline,
                      starts=starts)
    stats["falsify_s"] = stats.get("falsify_s", 0.0) + time.monotonic() - t
    if cex is not None:
        return done(Verdict.SAT, cex, "falsification (sampling/PGD)")

    # 4. alpha-CROWN at the root for the CDCL search
    if chosen == "cdcl":
        rest = falsify_s - later - first
        beside = None
        if rest > 0.05 and workers is not None and workers > 1:
            # the rest of the attack on the second core, while this one bounds the root
            beside = _AttackBeside(network, spec, rest, seed + 7919, deadline)
        try:
            t = time.monotonic()
            stage("root bounds (alpha-CROWN)")
            _alpha_root(packed, spec, live, open_per_case, roots, deadline, stats,
                        settings.cdcl)
            stats["root_bounds_s"] += time.monotonic() - t
            if not any(open_per_case[ci] for ci in live):
                stats["root_refuted"] = spec.n_disjuncts
                return done(Verdict.UNSAT, reason="root bounds")
            if settings.cdcl.root_milp:
                from ..validate import check_counterexample
                stage("root MILP")
                cex = milp_root(network, spec, live, open_per_case, roots, deadline, stats,
                                settings.cdcl,
                                lambda x: check_counterexample(network, spec, x))
                if cex is not None:
                    return done(Verdict.SAT, cex, "root MILP")
                if not any(open_per_case[ci] for ci in live):
                    stats["root_refuted"] = spec.n_disjuncts
                    return done(Verdict.UNSAT, reason="root bounds and MILP")
            if beside is not None:
                t = time.monotonic()
                cex = beside.result()
                stats["falsify_s"] += time.monotonic() - t
                if cex is not None:
                    return done(Verdict.SAT, cex, "falsification (sampling/PGD, beside the root bounds)")
            elif rest > 0.05:
                t = time.monotonic()
                cex = falsify(network, spec, time_limit_s=rest, seed=seed + 7919,
                              deadline=deadline)
                stats["falsify_s"] += time.monotonic() - t
                if cex is not None:
                    return done(Verdict.SAT, cex, "falsification (sampling/PGD)")
        finally:
            if beside is not None:
                beside.stop()
    stats["root_refuted"] = sum(len(spec.cases[ci].disjuncts) - len(v)
                                for ci, v in open_per_case.items())
    todo = [ci for ci in live if open_per_case[ci]]
    if not todo:
        return done(Verdict.UNSAT, reason="root bounds")

    # 5. search
    proved: set = set()            # cases the sequential search proved (kept across a handoff)

    def search(chosen, cases, until, attack=None):
        stage(f"{chosen} search")
        if workers is not None and workers > 1:
            from .portfolio import search_parallel
            return search_parallel(network, spec, cases, open_per_case, chosen=chosen,
                                   falsify_task=attack, deadline=until, seed=seed,
                                   workers=workers, stats=stats, done=done, roots=roots,
                                   parallel=parallel, settings=settings, live=progress)
        # Several cases: the first pass gives each case an equal share of the remaining time (so
        # a counterexample in a later case is not starved by a hard first case); a second pass
        # gives the cases that ran out of their share all the time that is left.
        verdicts = {ci: Verdict.TIMEOUT for ci in cases}
        for final in (False, True):
            pending = [ci for ci in cases if verdicts[ci] is Verdict.TIMEOUT]
            for k, ci in enumerate(pending):
                now = time.monotonic()
                if now >= until:
                    break
                share = until if final else now + (until - now) / (len(pending) - k)
                v, cex = search_case_dispatch(chosen, network, spec, ci, open_per_case[ci],
                                              packed=packed, deadline=share, seed=seed,
                                              stats=stats, root=roots[ci], settings=settings,
                                              live=progress)
                if v is Verdict.SAT:
                    return done(Verdict.SAT, cex, f"{chosen} search")
                verdicts[ci] = v
                if v is Verdict.UNSAT:
                    proved.add(ci)
            if len(cases) == 1 or time.monotonic() >= until:
                break
        v = Verdict.combine(verdicts.values())
        reason = {Verdict.UNSAT: f"{chosen} search", Verdict.TIMEOUT: "time limit reached",
                  Verdict.UNKNOWN: "search gave up without a proof or counterexample"}[v]
        return done(v, reason=reason)

    attack = (later, starts) if later > 0 else None
    # auto mode's guard against input splitting's blind spot (SearchSettings.
    # auto_cdcl_max_unstable): with few unstable ReLUs CDCL gets most of the time
    few = [roots[ci].n_unstable if roots.get(ci) is not None else np.inf for ci in todo]
    handoff = (mode == "auto" and chosen == "inputsplit"
               and max(few) <= settings.auto_cdcl_max_unstable)
    if not handoff:
        return search(chosen, todo, deadline, attack)
    until = time.monotonic() + settings.auto_inputsplit_share * (deadline - time.monotonic())
    res = search("inputsplit", todo, until, attack)
    if res.verdict is not Verdict.TIMEOUT or time.monotonic() >= deadline:
        return res
    stats["mode"] = "inputsplit+cdcl"
    stats["handoff_s"] = time.monotonic() - t0
    todo = [ci for ci in todo if ci not in proved]
    t = time.monotonic()
    stage("root bounds (alpha-CROWN)")
    _alpha_root(packed, spec, todo, open_per_case, roots, deadline, stats, settings.cdcl)
    stats["root_bounds_s"] += time.monotonic() - t
    todo = [ci for ci in todo if open_per_case[ci]]
    if not todo:
        return done(Verdict.UNSAT, reason="root bounds (after input splitting)")
    return search("cdcl", todo, deadline)


class _AttackBeside:
    """The attack (:func:`dpllnn.attack.falsify`, ``budget_s`` seconds) in a forked process,
    while the parent computes the root bounds (parallel CDCL: the second core idled there; on
    mnist_fc 256x6 the root alpha-CROWN takes 2.2 s).  ``result()`` waits for it (at most its
    budget plus 1 s) and returns a counterexample re-validated here, or None; ``stop()``
    terminates and joins the process (always called: no orphan)."""

    def __init__(self, network, spec, budget_s, seed, deadline):
        from .workers import attack_process, context
        ctx = context()
        self.network, self.spec = network, spec
        self.until = time.monotonic() + float(budget_s) + 1.0
        self.q = ctx.Queue()
        self.p = ctx.Process(target=attack_process,
                             args=(network, spec, float(budget_s), seed, deadline, self.q),
                             daemon=True)
        self.p.start()

    def result(self):
        import queue as queue_mod

        from ..validate import check_counterexample
        try:
            x, err = self.q.get(timeout=max(0.0, self.until - time.monotonic()))
        except queue_mod.Empty:
            return None
        if err:
            raise RuntimeError(err)
        return None if x is None else check_counterexample(self.network, self.spec, x)

    def stop(self):
        from .workers import stop_processes
        stop_processes([self.p])
        self.q.cancel_join_thread()


def _alpha_root(packed, spec, live, open_per_case, roots, deadline, stats, cfg):
    """alpha-CROWN (objective and hidden layers) at the root of every live case with open
    disjuncts: refutes more disjuncts (``open_per_case`` updated) and leaves the tighter bounds
    in ``roots`` for the CDCL search to start from (alpha-CROWN steps per hidden layer:
    ``cfg.root_intermediate_iters``, on graphs ``cfg.graph_intermediate_iters`` within
    ``cfg.graph_intermediate_share`` of the time left; ``cfg`` is the CdclSettings)."""
    # one share for all cases: the hidden-layer steps stop there, the search gets the rest
    intermediate_iters, inter_deadline = cfg.hidden_alpha(getattr(packed, "is_graph", False),
                                                          deadline)
    for ci in live:
        still, case = open_per_case[ci], spec.cases[ci]
        if still and time.monotonic() < deadline:
            root = roots[ci]
            still2, lbd2 = root_refute(packed, case, still, "alpha",
                                       base=root if root is not None and root.method == "crown"
                                       and not root.infeasible else None,
                                       intermediate_iters=intermediate_iters,
                                       deadline=deadline, intermediate_deadline=inter_deadline)
            if len(still2) < len(still):
                stats["alpha_refuted"] = stats.get("alpha_refuted", 0) + len(still) - len(still2)
            open_per_case[ci] = still2
            if lbd2 is not None and not lbd2.infeasible:
                roots[ci] = lbd2  # tighter root (alpha-CROWN) for the search to start from
