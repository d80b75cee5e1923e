"""One case's search by mode: the sequential driver (:mod:`dpllnn.search.verify`) and the
parallel workers (:mod:`dpllnn.search.portfolio`) both call :func:`search_case_dispatch`; it sits
below both so that only verify imports portfolio."""
from __future__ import annotations

__all__ = ["search_case_dispatch"]


def search_case_dispatch(chosen, network, spec, ci, open_idx, settings=None, **kw):
    """Run the chosen search module's ``search_case`` on one case, with that module's part of
    ``settings`` (a :class:`dpllnn.settings.SearchSettings`; None: the defaults)."""
    if chosen == "inputsplit":
        from .inputsplit import search_case
        sub = None if settings is None else settings.inputsplit
    else:
        from .cdcl import search_case
        sub = None if settings is None else settings.cdcl
    return search_case(network, spec, ci, open_idx, settings=sub, **kw)
