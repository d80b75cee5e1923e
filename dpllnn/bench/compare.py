"""Summaries and comparisons of a results csv against reference tools (VNN-COMP refdata).

Reusable in reports: :func:`solve_times` gives, per tool, the time of every instance it
solved correctly; :func:`common_stats` compares two tools on the instances both solved;
:func:`summarize` and :func:`format_summary` make the table printed by ``dpllnn bench``.
Times of the reference tools are the published ones (other hardware); ours are wall-clock
seconds of the whole ``dpllnn verify`` process on this machine.
"""
from __future__ import annotations

import statistics
from collections import Counter

from .reference import DECIDED, Reference, score

OURS = "dpllnn"


def _f(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def solve_times(rows: list[dict], reference: Reference | None = None,
                ours: str = OURS) -> dict[str, dict[tuple[str, str], float]]:
    """``{tool: {(onnx, vnnlib): time_s}}`` over the instances of ``rows``.

    Ours: decided rows not judged wrong (unchecked answers count).  Reference tools: their
    correct answers only, on the same instances (matched through ``reference.lookup``).
    """
    out: dict[str, dict[tuple[str, str], float]] = {ours: {}}
    for r in rows:
        key = (r["onnx"], r["vnnlib"])
        t = _f(r.get("time_s"))
        if r.get("result") in DECIDED and r.get("correct") != "no" and t is not None:
            out[ours][key] = t
        ref = reference.lookup(*key) if reference is not None else None
        if ref is None:
            continue
        for tool in ref.tools:
            tt = ref.correct_time(tool)
            if tt is not None:
                out.setdefault(tool, {})[key] = tt
    if reference is not None:
        for tool in reference.tools:
            out.setdefault(tool, {})
    return out


def common_stats(times_a: dict, times_b: dict) -> dict:
    """Both tools on the instances both solved: count, total and median time of each."""
    keys = sorted(set(times_a) & set(times_b))
    if not keys:
        return {"n": 0}
    a, b = [times_a[k] for k in keys], [times_b[k] for k in keys]
    return {"n": len(keys), "total_a_s": sum(a), "total_b_s": sum(b),
            "median_a_s": statistics.median(a), "median_b_s": statistics.median(b),
            "a_faster": sum(x < y for x, y in zip(a, b))}


def tool_table(rows: list[dict], reference: Reference | None, ours: str = OURS) -> list[dict]:
    """Per tool on the instances of ``rows``: solved (correct), wrong, score, times."""
    times = solve_times(rows, reference, ours)
    table = []
    for tool, tt in times.items():
        wrong = 0
        if tool == ours:
            wrong = sum(r.get("correct") == "no" for r in rows)
            pts = sum(score(r.get("result", ""), r.get("expected", "")) for r in rows)
        else:
            for r in rows:
                ref = reference.lookup(r["onnx"], r["vnnlib"])
                if ref is not None and tool in ref.tools:
                    ans = ref.tools[tool][0]
                    wrong += ans in DECIDED and ref.expected in DECIDED and ans != ref.expected
            pts = 10 * len(tt) - 150 * wrong
        v = list(tt.values())
        table.append({"tool": tool, "solved": len(tt), "wrong": wrong, "score": pts,
                      "total_s": sum(v), "median_s": statistics.median(v) if v else None})
    table.sort(key=lambda d: (-d["score"], d["total_s"]))
    return table


def summarize(rows: list[dict], reference: Reference | None = None) -> dict:
    """Counts, score and per-tool table of a run (``rows`` of the results csv)."""
    c = Counter(r.get("result", "") for r in rows)
    decided = c["sat"] + c["unsat"]
    correct = sum(r.get("correct") == "yes" for r in rows)
    wrong = sum(r.get("correct") == "no" for r in rows)
    times = [t for r in rows if r.get("result") in DECIDED
             if (t := _f(r.get("time_s"))) is not None]
    s = {"instances": len(rows), "decided": decided, "sat": c["sat"], "unsat": c["unsat"],
         "timeout": c["timeout"], "unknown": c["unknown"], "error": c["error"],
         "correct": correct, "wrong": wrong, "unchecked": decided - correct - wrong,
         "score": sum(score(r.get("result", ""), r.get("expected", "")) for r in rows),
         "score_rules": "VNN-COMP 2022: +10 correct, -150 wrong, no time bonus",
         "decided_total_s": round(sum(times), 3),
         "decided_median_s": round(statistics.median(times), 3) if times else None}
    if reference is not None:
        s["reference"] = reference.sources
        s["tools"] = tool_table(rows, reference)
        s["in_reference"] = sum(reference.lookup(r["onnx"], r["vnnlib"]) is not None
                                for r in rows)
    return s


def format_summary(s: dict) -> str:
    """The summary as a small text table."""
    lines = [f"instances {s['instances']}: decided {s['decided']} (sat {s['sat']}, "
             f"unsat {s['unsat']}), timeout {s['timeout']}, unknown {s['unknown']}, "
             f"error {s['error']}",
             f"correct {s['correct']}, wrong {s['wrong']}, unchecked {s['unchecked']}; "
             f"score {s['score']} ({s['score_rules']})"]
    if s["decided_median_s"] is not None:
        lines.append(f"decided: total {s['decided_total_s']:.1f} s, "
                     f"median {s['decided_median_s']:.2f} s")
    if s.get("tools"):
        lines.append(f"{'tool':<18}{'solved':>7}{'wrong':>6}{'score':>7}{'total_s':>10}"
                     f"{'median_s':>10}")
        for t in s["tools"]:
            med = f"{t['median_s']:.2f}" if t["median_s"] is not None else "-"
            lines.append(f"{t['tool']:<18}{t['solved']:>7}{t['wrong']:>6}{t['score']:>7}"
                         f"{t['total_s']:>10.1f}{med:>10}")
    return "\n".join(lines)
