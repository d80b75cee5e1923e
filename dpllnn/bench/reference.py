"""Reference answers and published times (the refdata csv files), and the VNN-COMP score.

A reference csv has the columns ``onnx``, ``vnnlib``, ``resolved`` (the answer to trust: ``sat``,
``unsat``, or anything else for "not known"), ``timeout_s``, one column per tool holding its
wall-clock time in seconds when it answered, and ``answers`` (``tool:answer;tool:answer;...``).
The tool columns are the names that occur in ``answers``.

Matching an instance to a reference row: the reference paths may be relative to a benchmark's
folder while ours are relative to a ``--benchmarks-root`` above it, so we try our (onnx, vnnlib)
with 0, 1, 2, ... leading folders stripped from both, then the pair of basenames (when unique).

Score (VNN-COMP 2022 rules): +10 for a correct ``sat``/``unsat``, -150 for a wrong one, 0 for
timeout/unknown/error; no time bonus.  A decided answer without a known expected answer scores
+10 (as in VNN-COMP, where an unchallenged answer counts) and is reported as "unchecked".
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

from ..errors import InputFileError
from ..io.gz import strip_gz

SCORE_CORRECT = 10
SCORE_WRONG = -150  # VNN-COMP 2022 (2021 used -100)
DECIDED = ("sat", "unsat")


@dataclass
class RefEntry:
    """One reference row: the trusted answer and each tool's (answer, time_s)."""

    onnx: str
    vnnlib: str
    expected: str  # "sat", "unsat", or "" when not known
    timeout_s: float | None
    tools: dict[str, tuple[str, float | None]] = field(default_factory=dict)

    def correct_time(self, tool: str) -> float | None:
        """The tool's time when its answer is decided and correct, else None."""
        ans, t = self.tools.get(tool, ("", None))
        if self.expected in DECIDED and ans == self.expected and t is not None:
            return t
        return None


def _norm(path: str) -> str:
    p = path.strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return strip_gz(p)               # a.onnx.gz matches the reference's a.onnx


def _float(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


class Reference:
    """The rows of one or more reference csv files, looked up by instance paths."""

    def __init__(self, entries: list[RefEntry], sources: list[str] | None = None):
        self.entries = entries
        self.sources = sources or []
        self._by_path: dict[tuple[str, str], RefEntry] = {}
        base: dict[tuple[str, str], list[RefEntry]] = {}
        for e in entries:
            self._by_path.setdefault((_norm(e.onnx), _norm(e.vnnlib)), e)
            base.setdefault((os.path.basename(e.onnx), os.path.basename(e.vnnlib)), []).append(e)
        self._by_base = {k: v[0] for k, v in base.items() if len(v) == 1}

    @property
    def tools(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.entries:
            for t in e.tools:
                seen.setdefault(t, None)
        return list(seen)

    def lookup(self, onnx: str, vnnlib: str) -> RefEntry | None:
        a, b = _norm(onnx).split("/"), _norm(vnnlib).split("/")
        for k in range(min(len(a), len(b))):
            e = self._by_path.get(("/".join(a[k:]), "/".join(b[k:])))
            if e is not None:
                return e
        return self._by_base.get((a[-1], b[-1]))

    @classmethod
    def load(cls, paths) -> "Reference":
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        entries: list[RefEntry] = []
        for path in paths:
            entries.extend(read_reference_csv(path))
        return cls(entries, [os.fspath(p) for p in paths])


def read_reference_csv(path) -> list[RefEntry]:
    """Parse one refdata csv (see the module docstring)."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as e:
        raise InputFileError(path, f"cannot read reference csv: {e.strerror}") from None
    if rows and not {"onnx", "vnnlib", "resolved"} <= set(rows[0]):
        raise InputFileError(path, "reference csv needs the columns onnx, vnnlib, resolved")
    out = []
    for r in rows:
        answers = {}
        for part in (r.get("answers") or "").split(";"):
            if ":" in part:
                tool, ans = part.split(":", 1)
                answers[tool.strip()] = ans.strip()
        tools = {t: (a, _float(r.get(t, ""))) for t, a in answers.items()}
        resolved = (r.get("resolved") or "").strip()
        out.append(RefEntry(r["onnx"], r["vnnlib"], resolved if resolved in DECIDED else "",
                            _float(r.get("timeout_s", "")), tools))
    return out


def judge(result: str, expected: str) -> str:
    """``"yes"``/``"no"`` when ``result`` is decided and ``expected`` known, else ``""``."""
    if result in DECIDED and expected in DECIDED:
        return "yes" if result == expected else "no"
    return ""


def score(result: str, expected: str) -> int:
    """VNN-COMP 2022 points of one answer (see the module docstring)."""
    if result not in DECIDED:
        return 0
    if expected in DECIDED and result != expected:
        return SCORE_WRONG
    return SCORE_CORRECT
