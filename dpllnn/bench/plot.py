"""Cactus plot: per tool, its sorted solve times against the number of instances solved.

Only correct answers count (ours: decided and not judged wrong), on the instances of this run.
matplotlib is imported lazily with the Agg backend (no display needed).
"""
from __future__ import annotations

from .compare import OURS, solve_times
from .reference import Reference


def cactus_plot(rows: list[dict], path, reference: Reference | None = None,
                title: str = "", ours: str = OURS) -> str:
    """Write the cactus plot PNG at ``path``; return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = solve_times(rows, reference, ours)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    order = sorted(times, key=lambda t: (t != ours, -len(times[t]), t))
    for tool in order:
        v = sorted(max(t, 1e-3) for t in times[tool].values())
        if not v and tool != ours:
            continue
        xs = list(range(1, len(v) + 1))
        style = dict(lw=2.5, color="black", zorder=5) if tool == ours else dict(lw=1.2)
        ax.plot(xs, v, marker=".", ms=4,
                label=f"{tool} ({len(v)})", **style)
    ax.set_yscale("log")
    ax.set_xlabel(f"instances solved (of {len(rows)})")
    ax.set_ylabel("time per instance, s (log)")
    ax.set_xlim(0, max(1, len(rows)))
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title or "cactus plot (reference times: published, other hardware)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
