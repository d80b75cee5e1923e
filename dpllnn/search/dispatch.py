"""One case's search by mode: the sequential driver (:mod:`dpllnn.search.verify`) and the
parallel workers (:mod:`dpllnn.search.portfolio`) both call :func:`search_case_dispatch`; it sits
below both so that only verify imports portfolio."""
from __future__ import annotations

__all__ = ["search_case_dispatch"]


def search_case_dispatch(chosen, network, spec, ci, open_idx, **kw):
    """Run the chosen search module's ``search_case`` on one case."""
    if chosen == "inputsplit":
        from .inputsplit import search_case
    else:
        from .cdcl import search_case
    return search_case(network, spec, ci, open_idx, **kw)
