"""Linear programming on HiGHS: the cell LP of the CDCL ``check_model`` step and helpers."""
from .highs import CellLP, compose_cell, lp_minimize

__all__ = ["CellLP", "compose_cell", "lp_minimize"]
