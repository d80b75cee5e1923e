"""Suite runner: one ``dpllnn verify`` process per instance, a resumable results csv.

Instances csv
    Either the VNN-COMP form (no header; ``onnx,vnnlib,timeout_s`` per row), or with a header
    row naming at least ``onnx``, ``vnnlib``, ``timeout_s`` (optionally ``category``).  Paths are
    relative to the benchmarks root (default: the csv's own folder).

Results csv (``RESULT_COLUMNS``, one header row)
    ``category, onnx, vnnlib, timeout_s`` (effective, after ``--timeout-scale``), ``result``
    (``sat|unsat|timeout|unknown``, or ``error`` when the process crashed or exited non-zero:
    never a verdict), ``time_s`` (wall clock of the whole process: start-up, loading, search),
    ``verify_time_s`` (as reported by dpllnn), ``mode``, ``nodes``, ``conflicts``, ``reason``,
    ``error``, ``expected``, ``correct`` (``yes|no|``), ``stats`` (JSON).

Writing: the main process is the only writer.  After every finished instance the whole file is
rewritten to a temporary file and moved over the old one (``os.replace``), so the file on disk
is always complete: killing the runner loses only the instances still running.  On restart,
rows already present (same onnx and vnnlib) are skipped (``retry_errors`` reruns ``error`` rows).
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DpllnnError, InputFileError
from ..io.gz import strip_gz
from ..io.witness import atomic_write_text
from .reference import Reference, judge

RESULT_COLUMNS = ["category", "onnx", "vnnlib", "timeout_s", "result", "time_s", "verify_time_s",
                  "mode", "nodes", "conflicts", "reason", "error", "expected", "correct", "stats"]
GRACE_S = 10.0  # hard kill of a verify process this long after its timeout


@dataclass(frozen=True)
class Instance:
    """One benchmark instance; ``onnx``/``vnnlib`` as written in the csv, ``*_path`` absolute."""

    onnx: str
    vnnlib: str
    timeout_s: float
    category: str
    onnx_path: str
    vnnlib_path: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.onnx, self.vnnlib)


def read_instances(csv_path, root=None) -> list[Instance]:
    """Parse an instances csv (with or without header); see the module docstring."""
    csv_path = os.fspath(csv_path)
    root = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(csv_path))
    try:
        with open(csv_path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except OSError as e:
        raise InputFileError(csv_path, f"cannot read instances csv: {e.strerror}") from None
    if not rows:
        raise InputFileError(csv_path, "no instances")
    header = [c.strip() for c in rows[0]]
    if "onnx" in header and "vnnlib" in header:
        idx = {name: header.index(name) for name in header}
        t_col = idx.get("timeout_s", idx.get("timeout"))
        if t_col is None:
            raise InputFileError(csv_path, "header without a timeout_s column")
        cols = (idx["onnx"], idx["vnnlib"], t_col, idx.get("category"))
        rows = rows[1:]
    else:
        cols = (0, 1, 2, None)
    default_cat = os.path.basename(os.path.dirname(os.path.abspath(csv_path)))
    out = []
    for r in rows:
        try:
            onnx, vnnlib, t = r[cols[0]].strip(), r[cols[1]].strip(), float(r[cols[2]])
        except (IndexError, ValueError):
            raise InputFileError(csv_path, f"bad instance row {r!r}") from None
        cat = r[cols[3]].strip() if cols[3] is not None and cols[3] < len(r) else default_cat
        out.append(Instance(onnx, vnnlib, t, cat, os.path.join(root, onnx),
                            os.path.join(root, vnnlib)))
    return out


def select_shard(instances: list, shard: str | None) -> list:
    """``shard`` ``"i/N"`` (0 <= i < N) keeps instances ``i, i+N, i+2N, ...``."""
    if not shard:
        return list(instances)
    try:
        i, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise DpllnnError(f"--shard must be i/N, got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise DpllnnError(f"--shard i/N needs 0 <= i < N, got {shard!r}")
    return instances[i::n]


# ---------------------------------------------------------------- the worker (runs anywhere)

def run_verify_process(task: dict) -> dict:
    """Run ``python -m dpllnn.cli verify`` on one instance; return a results row (a dict).

    ``task`` keys: ``onnx_path``, ``vnnlib_path``, ``timeout_s``, and optional ``seed``, ``mode``,
    ``verify_workers``, ``results_file``, ``grace_s``.  The child gets its own session and the
    whole process group is killed at ``timeout_s + grace_s``.  Top-level and picklable, so any
    executor (process pool, dask) can run it.
    """
    cmd = [sys.executable, "-m", "dpllnn.cli", "verify", task["onnx_path"], task["vnnlib_path"],
           "--json", "--timeout", repr(float(task["timeout_s"])),
           "--seed", str(task.get("seed", 0)), "--mode", task.get("mode", "auto")]
    if task.get("verify_workers"):
        cmd += ["--workers", str(task["verify_workers"])]
    if task.get("results_file"):
        cmd += ["--results-file", task["results_file"]]
    limit = float(task["timeout_s"]) + float(task.get("grace_s", GRACE_S))
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    killed = False
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        killed = True
        _kill_group(proc)
        out, err = proc.communicate()
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    wall = time.monotonic() - t0
    row = {"time_s": f"{wall:.3f}", "result": "error"}
    if killed:
        row.update(result="timeout", error=f"killed after {limit:g} s (no answer)")
        return row
    if proc.returncode != 0:
        msg = (err or "").strip().splitlines()
        row["error"] = f"exit {proc.returncode}: " + (msg[-1] if msg else "(no message)")
        return row
    try:
        data = json.loads([ln for ln in out.splitlines() if ln.strip()][-1])
        verdict = str(data["result"])
    except (IndexError, ValueError, KeyError, TypeError):
        row["error"] = "unreadable output: " + (out.strip()[-200:] or "(empty)")
        return row
    if verdict not in ("sat", "unsat", "timeout", "unknown"):
        row["error"] = f"unknown verdict {verdict!r}"
        return row
    stats = data.get("stats") or {}
    row.update(result=verdict, verify_time_s=f"{float(data.get('time_s', 0.0)):.3f}",
               mode=str(stats.get("mode", "")), nodes=str(stats.get("nodes", "")),
               conflicts=str(stats.get("conflicts", "")),
               reason=str(data.get("reason", ""))[:300],
               stats=json.dumps(stats, separators=(",", ":"), sort_keys=True))
    return row


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- results file

def read_results(path) -> list[dict]:
    """Rows of a results csv (empty list when the file does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as fh:
        return [dict(r) for r in csv.DictReader(fh)]


def write_results(path, rows: list[dict]) -> None:
    """Rewrite the whole results csv atomically."""
    extra = [k for r in rows for k in r if k not in RESULT_COLUMNS]
    cols = RESULT_COLUMNS + list(dict.fromkeys(extra))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# ---------------------------------------------------------------- the suite

def run_suite(instances: list[Instance], results_path, executor, *,
              worker: Callable[[dict], dict] = run_verify_process,
              reference: Reference | None = None, timeout_scale: float = 1.0,
              seed: int = 0, mode: str = "auto", verify_workers: int | None = None,
              retry_errors: bool = False, results_dir: str | None = None,
              progress: bool = True, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every instance not yet in ``results_path``; return all rows of the file.

    ``worker(task) -> row`` runs on ``executor`` (see :func:`run_verify_process`); the main
    process fills the instance columns and the reference columns, and rewrites the file after
    every finished instance.
    """
    import concurrent.futures as cf

    results_path = os.fspath(results_path)
    rows = read_results(results_path)
    if retry_errors:
        rows = [r for r in rows if r.get("result") != "error"]
    done = {(r.get("onnx", ""), r.get("vnnlib", "")) for r in rows}
    todo = [inst for inst in instances if inst.key not in done]
    seen: set = set()
    todo = [i for i in todo if not (i.key in seen or seen.add(i.key))]
    if results_dir:
        os.makedirs(results_dir, exist_ok=True)
    bar = _progress(len(todo), len(instances) - len(todo), progress)
    futures = {}
    try:
        for inst in todo:
            task = {"onnx_path": inst.onnx_path, "vnnlib_path": inst.vnnlib_path,
                    "timeout_s": inst.timeout_s * timeout_scale, "seed": seed, "mode": mode,
                    "verify_workers": verify_workers}
            if results_dir:
                name = f"{_stem(inst.onnx)}__{_stem(inst.vnnlib)}.txt"
                task["results_file"] = os.path.abspath(os.path.join(results_dir, name))
            futures[executor.submit(worker, task)] = (inst, task)
        for fut in cf.as_completed(futures):
            inst, task = futures[fut]
            try:
                got = dict(fut.result())
            except Exception as e:  # the worker itself failed: an error row, never a verdict
                got = {"result": "error", "error": f"worker failed: {type(e).__name__}: {e}"}
            row = {"category": inst.category, "onnx": inst.onnx, "vnnlib": inst.vnnlib,
                   "timeout_s": f"{task['timeout_s']:g}"}
            row.update({k: v for k, v in got.items() if k not in row})
            if reference is not None:
                ref = reference.lookup(inst.onnx, inst.vnnlib)
                if ref is not None:
                    row["expected"] = ref.expected
                    row["correct"] = judge(row.get("result", ""), ref.expected)
            rows.append(row)
            write_results(results_path, rows)
            if on_row is not None:
                on_row(row)
            bar.update(row)
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    finally:
        bar.close()
    return rows


def _stem(path: str) -> str:
    return os.path.splitext(strip_gz(os.path.basename(path)))[0]


class _progress:
    """tqdm progress bar on stderr (a plain line per instance when tqdm is missing)."""

    def __init__(self, total: int, skipped: int, enabled: bool):
        self.bar, self.enabled, self.n, self.total = None, enabled, 0, total
        if not enabled:
            return
        if skipped:
            print(f"dpllnn bench: {skipped} instance(s) already in the results file, "
                  f"{total} to run", file=sys.stderr)
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="inst", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass

    def update(self, row: dict) -> None:
        self.n += 1
        if not self.enabled:
            return
        msg = f"{os.path.basename(row['onnx'])} {os.path.basename(row['vnnlib'])}: " \
              f"{row.get('result')} {row.get('time_s', '')} s"
        if self.bar is not None:
            self.bar.set_postfix_str(msg[-60:])
            self.bar.update(1)
        else:
            print(f"[{self.n}/{self.total}] {msg}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
