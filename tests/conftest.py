"""Shared fixtures: where the VNN-COMP benchmarks live (../shared or $DPLLNN_BENCHMARKS)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def benchmarks_root() -> Path | None:
    env = os.environ.get("DPLLNN_BENCHMARKS")
    cands = [Path(env)] if env else []
    cands.append(REPO.parent / "shared" / "benchmarks")
    for c in cands:
        if c.is_dir():
            return c
    return None


def refdata_root() -> Path | None:
    b = benchmarks_root()
    if b is None:
        return None
    r = b.parent / "refdata"
    return r if r.is_dir() else None


@pytest.fixture(scope="session")
def bench_root() -> Path:
    root = benchmarks_root()
    if root is None:
        pytest.skip("VNN-COMP benchmarks not found: set DPLLNN_BENCHMARKS or put ../shared beside the repo")
    return root


def read_instances(folder: Path) -> list[tuple[Path, Path, float]]:
    """Rows of a benchmark's instances csv as (onnx path, vnnlib path, timeout s)."""
    csvs = sorted(folder.glob("*instances.csv"))
    rows = []
    with open(csvs[0]) as fh:
        for r in csv.reader(fh):
            if len(r) >= 3 and r[0].strip():
                rows.append((folder / r[0].strip(), folder / r[1].strip(), float(r[2])))
    return rows


def all_onnx(root: Path) -> list[Path]:
    return sorted(root.rglob("*.onnx"))


def all_vnnlib(root: Path) -> list[Path]:
    return sorted(root.rglob("*.vnnlib"))
