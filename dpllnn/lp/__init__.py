"""Linear programming on HiGHS: the plumbing (:mod:`~dpllnn.lp.highs`), the cell LP of a
complete phase assignment (:mod:`~dpllnn.lp.cell`), the incremental layered LP of the CDCL
search (:mod:`~dpllnn.lp.layered`) and its form for graph networks (:mod:`~dpllnn.lp.graph_lp`)."""
from .cell import CellLP, compose_cell
from .highs import lp_minimize
from .layered import LayeredLP

__all__ = ["CellLP", "LayeredLP", "compose_cell", "lp_minimize"]
