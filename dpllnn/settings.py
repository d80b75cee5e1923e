"""Tuning settings of the search: frozen dataclasses, one field a knob (DESIGN.md §8).

Beside every field: its unit and the measurement (or the reason) that chose its value.  The
settings are passed down from :func:`dpllnn.search.verify.verify` (``settings=``) to the module
that reads them, through the worker processes of the parallel search too (they are pickled when
workers are spawned, so every class here is a top-level dataclass of plain values).  To try
another value, build a variant with :func:`dataclasses.replace`::

    from dataclasses import replace
    from dpllnn.settings import DEFAULT
    s = replace(DEFAULT, cdcl=replace(DEFAULT.cdcl, restart_base=128))
    dpllnn.verify(network, spec, settings=s)

Unless stated otherwise, the figures are wall times on the project's 2-core machine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["InputSplitSettings", "TheorySettings", "CdclSettings", "ParallelSettings",
           "SearchSettings", "DEFAULT", "PARALLEL_SCHEMES"]

#: the parallel CDCL schemes (``--parallel``; :mod:`dpllnn.search.portfolio`)
PARALLEL_SCHEMES = ("hybrid", "portfolio", "cubes")


@dataclass(frozen=True)
class InputSplitSettings:
    """Input-splitting branch and bound (:mod:`dpllnn.search.inputsplit`)."""

    method: str = "crown"           # bound method: symbolic | crown | hybrid
    split: str = "lookahead"        # split dimension: lookahead | smear
    lookahead_method: str = "crown"  # bound method for the lookahead children
    lookahead_dims: int = 3         # lookahead on the top-k smear dimensions only (0: all);
    #                                 3 of 5 on ACAS Xu: 4_2 prop_2 53 s instead of 101 s
    lookahead_full_depth: int = 10  # ... for boxes at least this deep (shallower: all dims)
    smear_source: str = "crown"     # smear scores: crown (|A_in| * width of the worst row's
    #                                 linear lower bound, free with CROWN) | grad (centre gradient)
    points: str = "crown"           # candidate points: crown (centre + A_in minimiser corner)
    #                                 | grad (centre + gradient corner)
    parallel: bool = False          # numba prange over boxes in the CROWN kernel
    early_stop: bool = False        # CROWN: stop a neuron's back-substitution once its sign is proved
    hot_points: int = 4             # PGD every pgd_every batches from this many smallest-margin points
    inherit_bounds: bool = True     # children intersect their parent's hidden bounds (memory:
    #                                 2 n_z floats per open box)
    combine_rows: bool = True       # add exact convex combinations of a disjunct's rows
    combine_q: int = 0              # their weights are multiples of 1/q (0: auto, see combined_rows)
    batch: int = 32                 # boxes popped per iteration
    crown_batch: int = 1 << 30      # at most this many CROWN calls per iteration (hybrid)
    max_pool: int = 500_000         # beyond this many open boxes, pop depth-first
    pgd_every: int = 20             # iterations between PGD rounds on the worst boxes
    pgd_boxes: int = 4              # boxes attacked per PGD round
    max_validations: int = 200      # candidate points sent to check_counterexample, at most
    lp_max_unstable: int = 3        # boxes with at most this many unstable neurons: cell LPs
    lp_max_unstable_stuck: int = 10  # the same for boxes at float resolution (last resort)
    lp_per_iter: int = 16           # at most this many boxes tried with LPs per iteration
    alpha_depth: int = 4            # popped boxes at least this deep get alpha-CROWN (-1: never)
    alpha_after_s: float = 1.0      # ... once the search has run this long (easy cases end first)
    alpha_iters: int = 10           # alpha-CROWN steps on the objective rows
    alpha_inter_iters: int = 5      # ... and on each hidden layer's unstable neurons (0: none)
    alpha_rows: int = 4             # alpha-CROWN optimises this many best rows per disjunct (0: all)
    alpha_gap_factor: float = 0.5   # ... only on boxes whose gap is within this many median gains
    alpha_force_depth: int = 20     # ... and on every box at least this deep
    alpha_share: float = 0.8        # at most this share of the search time goes to alpha-CROWN
    #   (depth 4 and share 0.8, against the earlier settings: 2 workers, in-process, 3_3 / 4_2
    #   prop_2 11.6 / 11.4 s -> 9.8 / 9.9 s; the 8 next-slowest ACAS Xu instances 20.2 -> 18.9 s)


@dataclass(frozen=True)
class TheorySettings:
    """The ReLU theory of the CDCL search (:class:`dpllnn.search.theory.ReluTheory`)."""

    #: share of the search time that PGD from relaxation-LP points may take (fraction of the
    #: wall time since the theory was built)
    pgd_share: float = 0.1
    #: simplex iterations per relaxation LP.  A time limit (1.5 s) used to stop slow LPs, and
    #: three such stops narrowed the LP gate, so the search depended on the machine's speed and
    #: load (mnist 256x4 prop_14_0.05, one worker: 28-42 s over four runs).  Measured on mnist
    #: 256x4 prop_13_0.05: 4,600-8,500 iterations per second, so 7,500 is about that 1.5 s.
    lp_iterations: int = 7500
    #: seconds per relaxation LP: a backstop above ``lp_iterations`` (a stop by it counts as
    #: slow too)
    lp_time_limit_s: float = 4.0
    #: most of the wall time (fraction, since the first node offered to it) the background
    #: relaxation LP may take.  While it runs, the bound kernels lose the lent core, and its
    #: refutations arrive as clauses after the search has moved on, so they save few nodes.  On
    #: mnist 256x4 prop_13_0.05 with two workers the gate usually narrows after three LPs stopped
    #: by ``lp_iterations`` (6-7 s of LP, 81-88 s in all), but in one run of eight the early LPs
    #: finished under the limit, the gate stayed wide, the LP ran 1,294 times and the run took
    #: 115 s; with the gate held wide on purpose, 134.5 s uncapped and 88.0 s at 0.15.
    async_lp_share: float = 0.15
    #: seconds between two polls of the parallel search for lemmas (``ReluTheory.poll``)
    poll_s: float = 0.05
    #: stop the solver as soon as lemmas arrive (else they wait for the next restart).  Stopping
    #: it for each of them took mnist 256x4 prop_8_0.03 from 18 to 24-37 s (2 workers, hybrid).
    lemma_interrupt: bool = False
    #: beta-CROWN steps on a node's objective when CROWN does not refute it, on graphs (whose
    #: nodes recompute only the output: ``ReluTheory.objective_only``; warm-started from the
    #: parent snapshot).  Measured on cifar10_resnet resnet_2b (1 worker, 30 s): prop_10 106 ->
    #: 320 nodes, 61 disjuncts refuted by beta alone; prop_27 unsat in 38 -> 31 nodes
    beta_iters_graph: int = 8
    #: the same on dense chains (their lowered graph, the dense node bounds).  Off: the dense
    #: search runs the triangle-relaxation LP at every node, which beta-CROWN can at best match
    #: (same relaxation, inherited bounds).  Measured (1 worker, 60 s, mnist_fc, loaded machine;
    #: 0 -> 8 steps): 256x2 prop_10_0.05 unsat 7.4 -> 9.8 s (82 nodes both); 256x4 prop_3_0.05
    #: 8.3 -> 8.1 s; 256x4 prop_11_0.05 timeout both, 242 -> 109 nodes (beta refuted 145
    #: disjuncts the LP would have); 256x6 prop_3_0.05 timeout both, 403 -> 288 nodes
    beta_iters_dense: int = 0
    #: propose refutation clauses without the splits whose clamp did not enter the node's bound
    #: and keep them when a bound under the kept splits alone still refutes (one extra bound
    #: per refuting snapshot; :mod:`dpllnn.search.clauses`).  Level-0 literals are left out of
    #: every theory clause either way: on mnist_fc that alone takes the mean refutation clause
    #: from 474 to 4.6 literals (256x2 prop_10_0.05, 82 nodes as before) and from 900 to 49
    #: (256x4 prop_11_0.05).  The re-check then shortened 221 of 238 clauses there (49 -> 38
    #: literals) but cost a third of the nodes per second, and decided nothing more in 45 s
    #: (one worker; six 256x2/256x4 eps 0.05 instances): off by default
    shorten_clauses: bool = False
    #: keep every theory clause in ``stats["clauses"]`` (validity tests on tiny networks)
    record_clauses: bool = False


@dataclass(frozen=True)
class CdclSettings:
    """The hidden-phase CDCL driver (:mod:`dpllnn.search.cdcl`) and its brancher."""

    #: conflicts per Luby unit between restarts
    restart_base: int = 64
    #: relaxation LP (triangle, partial assignment) at nodes with at most this many free unstable
    #: neurons.  On the incremental LayeredLP a warm re-solve costs ~25 ms on mnist 256x2, so it
    #: runs at every node (measured: mnist 256x2 prop_6_0.03 unsat in 43 s at every node, timeout
    #: at 60 s with <= 12 or <= 40; the root relaxation's optimum also seeds PGD, finding
    #: prop_2_0.03's counterexample in 3-4 s)
    lp_unstable: int = 1 << 30
    #: graphs get the cell / relaxation LP (``lp.graph_lp``) only up to this many LP columns (one
    #: per tensor element): the tiny conv nets whose searches reach complete assignments have a
    #: few hundred; resnet_2b has ~30,000 and its searches never complete an assignment.  With
    #: the LP on oval21 cifar_base (13,623 columns; 1 worker): img2908 unsat 7.0 -> 12.4 s, img5303
    #: 7.1 -> 15.1 s, ~0.12 s per LP, 2 of 100 LPs refuting what beta-CROWN had not
    graph_lp_max_columns: int = 5000
    #: relaxation LPs on a background thread when the search has a spare core (the parallel
    #: search's idle workers lend theirs), instead of on the search's path (``asynclp``)
    async_lp: bool = True
    #: alpha-CROWN steps per hidden layer's unstable neurons in the CDCL root bounds.  The
    #: optimised intermediate bounds become the search's root snapshot, which every node's bounds
    #: are intersected with (ReluTheory).  Measured on mnist_fc (root, 2 cores): 256x4
    #: prop_14_0.05 unstable 400 -> 289 (CROWN -> 20 steps), objective bound -6.2 -> -1.5, 0.5 s;
    #: 256x6 prop_7_0.03 unstable 293 -> 148, 3 of 9 disjuncts refuted at the root, 0.5 s
    #: (10 steps: 0.3 s, slightly looser; 40 steps: no better).  Also used in the alpha-CROWN
    #: re-bounding at restarts.
    root_intermediate_iters: int = 20
    #: the same on graphs, where one step of every hidden node costs about a CROWN pass (sri
    #: resnet_3b2 spec 6817: 7.2 s): steps per hidden node, and the share of the time left that
    #: the root's (and every 4th restart's) hidden-layer steps may take; the nodes they do not
    #: reach keep their CROWN bounds.  Measured there (root, 1 core): unstable 1625 -> 1612 /
    #: 1607 / 1587 and the objective's CROWN bound -8.22 -> -7.84 / -7.52 / -6.79 with 1 / 2 / 5
    #: steps (7.6 / 10.0 / 23.0 s); oval21 cifar_base img2908: 504 -> 498 unstable with 10 steps
    #: (2.6 s; 20 or 40 steps, or step size 0.3, no tighter)
    graph_intermediate_iters: int = 5
    graph_intermediate_share: float = 0.1
    #: MILP stabilisation of near-stable root neurons at restarts (:mod:`dpllnn.search.stabilise`;
    #: dense chains): at most ``stabilise_neurons`` per restart, ``stabilise_milp_s`` seconds per
    #: MILP, ``stabilise_call_s`` per restart, and only while its total stays within
    #: ``stabilise_share`` of the search's time.  Off by default: measured side by side (one
    #: worker, 120 s, 2 s per MILP, 32 per restart, share 0.3) it proved 7 of 19 neurons on
    #: mnist 256x4 prop_11_0.05 (27 s of MILP) and 14 of 26 on 256x6 prop_3_0.05 (41 s), and
    #: both still timed out, with 3191 against 5608 and 1321 against 2087 nodes; at 0.5 s per
    #: MILP it proved none
    stabilise: bool = False
    stabilise_neurons: int = 32
    stabilise_milp_s: float = 2.0
    stabilise_call_s: float = 20.0
    stabilise_share: float = 0.3
    #: the exact MILP of each disjunct the root bounds leave open (:mod:`dpllnn.search.
    #: root_milp`), before the search, within ``root_milp_share`` of the time left, where the
    #: root's unstable neurons lie in at most ``root_milp_max_depth`` ReLU layers of a path and
    #: are at most ``root_milp_max_binaries``.  Measured (HiGHS, 1 core): verivital
    #: Convnet_avgpool prop_7_0.04, one unstable layer of 5,299 neurons, both open disjuncts
    #: proved in 10 s each (the search: timeout at 300 s); with two unstable layers it rarely
    #: pays (mnist 256x4 prop_1_0.05: no answer in 30 s; 256x2 prop_10_0.05: 2 s and 30 s)
    root_milp: bool = True
    root_milp_share: float = 0.3
    root_milp_max_depth: int = 1
    root_milp_max_binaries: int = 20000
    #: heuristics cycled over restarts: (kind, layer_bias).  FSB rather than BaBSR, because (one
    #: worker, mnist_fc, BaBSR -> FSB): 256x4 prop_8_0.03 28.1 -> 15.3 s (447 -> 122 nodes), 256x2
    #: prop_10_0.05 19.1 -> 4.3 s; with 2 workers 256x4 prop_14_0.05 went from a 300 s timeout to
    #: 4.5 s.
    schedule: tuple = (("fsb", 1.0), ("fsb", 2.0), ("width", 1.0), ("fsb", 1.0), ("solver", 1.0))
    #: FSB: candidates (by BaBSR score) whose two children are bounded, neurons
    fsb_top: int = 8
    #: the theory's settings
    theory: TheorySettings = field(default_factory=TheorySettings)

    def hidden_alpha(self, is_graph: bool, deadline: float) -> tuple:
        """What a root (re-)bounding gives the hidden layers' alpha-CROWN, from now on:
        ``(steps per hidden node, time.monotonic() after which no node's steps start, or None
        for dense chains, which take milliseconds)``."""
        if not is_graph:
            return self.root_intermediate_iters, None
        now = time.monotonic()
        return (self.graph_intermediate_iters,
                now + self.graph_intermediate_share * max(0.0, deadline - now))


@dataclass(frozen=True)
class ParallelSettings:
    """How worker processes share a case (:mod:`dpllnn.search.portfolio`)."""

    #: how parallel CDCL spreads a case: "hybrid", "portfolio" or "cubes" (``PARALLEL_SCHEMES``;
    #: the portfolio module's docstring).  Measured with 2 workers, one instance at a time, on
    #: mnist_fc (``benchmarks/bench_workers.py``): 256x4 prop_8_0.03 / 256x2 prop_10_0.05 / 256x6
    #: prop_7_0.03 took 16.9 / 13.4 / 4.2 s with the hybrid, 20.2 / 19.7 / 6.4 s with the
    #: portfolio, against 28.1 / 19.1 / 12.6 s with one worker.  The portfolio wins when another
    #: start of the heuristic schedule is luckier (the hybrid's whole-case member uses that
    #: start); cubes win when the case splits evenly (prop_10_0.05: 9.3 s with cubes alone, where
    #: each cube re-learns what the others learn on prop_8_0.03: 63.8 s).
    scheme: str = "hybrid"
    #: "cubes": CDCL phase cubes per worker (rounded up to a power of two in total)
    cubes_per_worker: int = 4
    #: hybrid CDCL: phase cubes per cube worker (``workers - 1`` of them)
    hybrid_cubes_per_worker: int = 8
    #: hybrid CDCL: the first-phase whole-case member's start in the heuristic schedule (cubes and
    #: the focus member start at 0)
    hybrid_variant: int = 1
    #: hybrid CDCL: length of the first phase, in seconds from the start of the parallel search:
    #: the whole-case member at ``hybrid_variant`` and the cube workers stop then (``timeout``; the
    #: focus member covers the case), and the focus member -- the whole case at variant 0, as one
    #: worker would search it -- gets their cores (``workers.Lender``).  Measured with 2 workers
    #: (mnist_fc): the nine instances of the 10 slowest that the first phase speeds up took
    #: 2.3-6.6 s with it; 256x4 prop_13_0.05 (155 s with one worker) took 151 s with the variant-1
    #: member alone on both cores after 10 s, 116.5 s with a variant-0 member.  With the focus
    #: member's relaxation LPs on a background thread (``asynclp``): 256x4 prop_8_0.03 /
    #: prop_14_0.05 / 256x6 prop_7_0.03 took 5.8 / 4.2 / 3.5 s with 10 s, 5.6 / 4.2 / 3.5 s with
    #: 4 s, 10.1 / 4.1 / 3.4 s with 2.5 s; prop_13_0.05 116.4 s with 10 s, 109.9 s with 5 s.
    hybrid_cube_s: float = 5.0

    def __post_init__(self):
        if self.scheme not in PARALLEL_SCHEMES:
            raise ValueError(f"unknown parallel CDCL scheme {self.scheme!r}")


@dataclass(frozen=True)
class SearchSettings:
    """Everything :func:`dpllnn.search.verify.verify` tunes, by the module that reads it."""

    #: inputs at or below this count use input splitting in ``mode="auto"`` (ACAS Xu has 5,
    #: MNIST 784: the two strategies of DESIGN.md §3)
    inputsplit_max_inputs: int = 20
    #: ``mode="auto"`` with input splitting: when no case has more unstable ReLUs at the root
    #: (CROWN) than this, input splitting gets only ``auto_inputsplit_share`` of the time and
    #: CDCL the rest.  Few unstable ReLUs bound CDCL's tree (2**12 leaves), while input splitting
    #: can stall on a small margin: a random net with 5 inputs and 9 ReLUs, unsat by 0.1 % of
    #: its output range, timed out after 10,000 boxes where CDCL proved it in 6 nodes.  On ACAS
    #: Xu no instance has fewer than 16 unstable ReLUs at the root, so its path is unchanged.
    auto_cdcl_max_unstable: int = 12
    auto_inputsplit_share: float = 0.1
    #: CDCL: seconds of the up-front attack before the root alpha-CROWN bounds (the rest after
    #: them).  Instances that alpha-CROWN proves at the root used to wait for the whole attack
    #: budget first (1.5 s of a 120 s limit with 2 workers).
    first_attack_s: float = 0.3
    #: graphs: the memory budget, bytes, of one chunk of backward rows in the bound engine
    #: (:class:`dpllnn.bounds.graph.gpack.GraphPacked`): it keeps a worker's peak memory from
    #: growing with the number of unstable neurons; bounds do not depend on it
    graph_row_chunk_bytes: int = 64 << 20
    inputsplit: InputSplitSettings = field(default_factory=InputSplitSettings)
    cdcl: CdclSettings = field(default_factory=CdclSettings)
    parallel: ParallelSettings = field(default_factory=ParallelSettings)


#: the settings every search uses unless it is given others
DEFAULT = SearchSettings()
