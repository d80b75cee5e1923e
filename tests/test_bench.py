"""dpllnn bench: instances/results csv, reference and score, resumability, executors."""
from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpllnn.bench.cli_bench import main as bench_main
from dpllnn.bench.compare import common_stats, solve_times, summarize
from dpllnn.bench.reference import Reference, RefEntry, judge, score
from dpllnn.bench.runner import (read_instances, read_results, run_suite, run_verify_process,
                                 select_shard, write_results)

REPO = Path(__file__).resolve().parent.parent
LISTS = REPO / "benchmarks" / "vnncomp" / "instances"


# ------------------------------------------------------------------ a fake worker (picklable)

def fake_worker(task: dict) -> dict:
    """Sleeps a little, logs the call (env DPLLNN_FAKE_LOG), answers from the file name."""
    time.sleep(float(os.environ.get("DPLLNN_FAKE_SLEEP", "0")))
    log = os.environ.get("DPLLNN_FAKE_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, (os.path.basename(task["onnx_path"]) + "\n").encode())
        os.close(fd)
    name = os.path.basename(task["onnx_path"])
    verdict = "sat" if "sat" in name and "unsat" not in name else "unsat"
    # time_s doubles as a marker: a recomputed row would carry a different value
    return {"result": verdict, "time_s": f"{time.time():.6f}", "mode": "fake"}


def _write_instances(tmp: Path, n: int, header: bool = True) -> Path:
    p = tmp / "inst.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(["category", "onnx", "vnnlib", "timeout_s"])
        for i in range(n):
            name = "net_sat" if i % 2 else "net_unsat"
            row = [f"sub/{name}{i}.onnx", f"sub/p{i}.vnnlib", "10"]
            w.writerow(["cat"] + row if header else row)
    return p


# ------------------------------------------------------------------ unit tests

def test_read_instances_both_forms(tmp_path):
    a = read_instances(_write_instances(tmp_path, 3, header=True), root="/R")
    assert [i.onnx for i in a] == ["sub/net_unsat0.onnx", "sub/net_sat1.onnx",
                                   "sub/net_unsat2.onnx"]
    assert a[0].category == "cat" and a[0].onnx_path == "/R/sub/net_unsat0.onnx"
    b = read_instances(_write_instances(tmp_path, 3, header=False))
    assert [i.key for i in b] == [i.key for i in a] and b[1].timeout_s == 10.0
    assert b[0].onnx_path == str(tmp_path / "sub/net_unsat0.onnx")


def test_shards_partition(tmp_path):
    inst = read_instances(_write_instances(tmp_path, 7))
    parts = [select_shard(inst, f"{i}/3") for i in range(3)]
    assert sorted(k.key for p in parts for k in p) == sorted(k.key for k in inst)
    assert sum(map(len, parts)) == 7
    with pytest.raises(Exception):
        select_shard(inst, "3/3")


def test_reference_lookup_and_score(bench_root):
    ref = Reference.load(bench_root.parent / "refdata" / "2022_mnist_fc.csv")
    e = ref.lookup("vnncomp2022/mnist_fc/onnx/mnist-net_256x2.onnx",
                   "vnncomp2022/mnist_fc/vnnlib/prop_0_0.03.vnnlib")
    assert e is not None and e.expected == "unsat" and "nnenum" in ref.tools
    assert e.correct_time("nnenum") == pytest.approx(1.247)
    acas = Reference.load(bench_root.parent / "refdata" / "2023_acasxu.csv")  # onnx/ prefix
    assert acas.lookup("vnncomp2021/acasxu/ACASXU_run2a_1_1_batch_2000.onnx",
                       "vnncomp2021/acasxu/prop_1.vnnlib").expected == "unsat"
    assert score("sat", "sat") == 10 and score("sat", "unsat") == -150
    assert score("unsat", "") == 10 and score("timeout", "sat") == 0 and score("error", "") == 0
    assert judge("unsat", "sat") == "no" and judge("unknown", "sat") == ""


def test_summary_counts_wrong_answers():
    ref = Reference([RefEntry("a.onnx", "p.vnnlib", "sat", 10, {"T": ("sat", 1.0)}),
                     RefEntry("b.onnx", "p.vnnlib", "unsat", 10, {"T": ("sat", 2.0)})])
    rows = [{"onnx": "a.onnx", "vnnlib": "p.vnnlib", "result": "unsat", "time_s": "1",
             "expected": "sat", "correct": "no"},
            {"onnx": "b.onnx", "vnnlib": "p.vnnlib", "result": "unsat", "time_s": "3",
             "expected": "unsat", "correct": "yes"}]
    s = summarize(rows, ref)
    assert (s["decided"], s["wrong"], s["correct"], s["score"]) == (2, 1, 1, -140)
    tools = {t["tool"]: t for t in s["tools"]}
    assert tools["T"]["solved"] == 1 and tools["T"]["wrong"] == 1
    times = solve_times(rows, ref)
    assert times["dpllnn"] == {("b.onnx", "p.vnnlib"): 3.0}
    assert common_stats(times["dpllnn"], times["T"])["n"] == 0


def test_results_roundtrip(tmp_path):
    rows = [{"onnx": "a,b.onnx", "vnnlib": "p.vnnlib", "result": "sat", "reason": 'say "x"\ny'}]
    write_results(tmp_path / "r.csv", rows)
    back = read_results(tmp_path / "r.csv")
    assert back[0]["onnx"] == "a,b.onnx" and back[0]["reason"] == 'say "x"\ny'


def test_run_suite_resumes_and_never_recomputes(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("DPLLNN_FAKE_LOG", str(log))
    inst = read_instances(_write_instances(tmp_path, 6))
    out = tmp_path / "res.csv"
    with cf.ThreadPoolExecutor(2) as ex:
        first = run_suite(inst[:4], out, ex, worker=fake_worker, progress=False)
    with cf.ThreadPoolExecutor(2) as ex:
        rows = run_suite(inst, out, ex, worker=fake_worker, progress=False)
    assert len(first) == 4 and len(rows) == 6
    assert len(log.read_text().split()) == 6  # the 4 earlier rows were not recomputed
    by_key = {(r["onnx"], r["vnnlib"]): r for r in rows}
    for r in first:
        assert by_key[(r["onnx"], r["vnnlib"])]["time_s"] == r["time_s"]


def test_worker_errors_are_never_verdicts(tmp_path):
    bad = tmp_path / "missing.onnx"
    row = run_verify_process({"onnx_path": str(bad), "vnnlib_path": str(bad), "timeout_s": 5})
    assert row["result"] == "error" and "exit 2" in row["error"]
    # hard kill: the process gets less time than it needs to start
    row = run_verify_process({"onnx_path": str(bad), "vnnlib_path": str(bad),
                              "timeout_s": 0.5, "grace_s": -0.49})
    assert row["result"] == "timeout" and "killed" in row["error"]

    def boom(task):
        raise RuntimeError("worker died")

    inst = read_instances(_write_instances(tmp_path, 1))
    with cf.ThreadPoolExecutor(1) as ex:
        rows = run_suite(inst, tmp_path / "r.csv", ex, worker=boom, progress=False)
    assert rows[0]["result"] == "error" and "worker died" in rows[0]["error"]


# ------------------------------------------------------------------ resumability under SIGKILL

def test_kill_midway_loses_no_finished_row(tmp_path):
    inst_csv = _write_instances(tmp_path, 6)
    out = tmp_path / "res.csv"
    log = tmp_path / "calls.log"
    env = dict(os.environ, DPLLNN_FAKE_LOG=str(log), DPLLNN_FAKE_SLEEP="0.4",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent),
                                           os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "dpllnn.bench", str(inst_csv), "-o", str(out), "--quiet",
           "--no-plot", "--worker", "test_bench:fake_worker"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and len(read_results(out)) < 2:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its pool workers
        proc.wait()
    before = read_results(out)
    assert 2 <= len(before) < 6, proc.stderr.read().decode()
    r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    after = read_results(out)
    assert len(after) == 6 and len({(a["onnx"], a["vnnlib"]) for a in after}) == 6
    assert after[:len(before)] == before  # finished rows kept verbatim, not recomputed
    calls = log.read_text().split()
    for row in before:
        assert calls.count(os.path.basename(row["onnx"])) == 1
    assert Path(str(out)[:-4] + ".summary.json").exists()


# ------------------------------------------------------------------ the real thing

def _have_loaders() -> bool:
    try:
        import dpllnn.io.onnx_import  # noqa: F401
        import dpllnn.io.vnnlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _have_loaders(), reason="ONNX/VNN-LIB loaders not available yet")
def test_bench_local_and_dask_local_agree(bench_root, tmp_path, monkeypatch):
    # no importorskip: the set-up installs the dask and bench extras, so CI runs this
    monkeypatch.chdir(REPO)
    lst = LISTS / "vnncomp2021_test.csv"
    ref = bench_root.parent / "refdata" / "2021_test.csv"
    results = {}
    for ex in ("local", "dask-local"):
        out = tmp_path / f"{ex}.csv"
        code = bench_main([str(lst), "--benchmarks-root", str(bench_root), "-o", str(out),
                           "--executor", ex, "--workers", "2", "--timeout-scale", "0.25",
                           "--reference", str(ref), "--quiet"])
        assert code == 0
        rows = read_results(out)
        assert len(rows) == 5
        assert not [r for r in rows if r["result"] == "error"], rows
        assert not [r for r in rows if r["correct"] == "no"], rows
        results[ex] = {(r["onnx"], r["vnnlib"]): r["result"] for r in rows}
        summary = json.loads((tmp_path / f"{ex}.summary.json").read_text())
        assert summary["instances"] == 5 and summary["wrong"] == 0
        assert (tmp_path / f"{ex}.png").stat().st_size > 1000
    assert results["local"] == results["dask-local"]
    assert results["local"][("vnncomp2021/test/test_sat.onnx",
                             "vnncomp2021/test/test_prop.vnnlib")] == "sat"


def test_instance_lists_point_at_files(bench_root):
    lists = sorted(LISTS.glob("*.csv"))
    assert len(lists) >= 5
    for lst in lists:
        assert lst.read_text().startswith("category,onnx,vnnlib,timeout_s\n")
        for inst in read_instances(lst, bench_root):
            assert os.path.isfile(inst.onnx_path) and os.path.isfile(inst.vnnlib_path)


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


@pytest.fixture
def dask_scheduler(tmp_path):
    """A real ``dask scheduler`` and one ``dask worker`` as separate processes on a free port
    (what a user starts on a cluster); yields the ``dask://`` address, then stops both."""
    from distributed import Client
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO / "tests"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    log = open(tmp_path / "dask.log", "w")
    common = dict(env=env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], **common)]
    procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker",
                                   f"tcp://127.0.0.1:{port}", "--nthreads", "2", "--no-nanny",
                                   "--host", "127.0.0.1", "--no-dashboard"], **common))
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        yield f"dask://127.0.0.1:{port}"
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


def test_bench_on_a_running_dask_scheduler(bench_root, tmp_path, monkeypatch, dask_scheduler):
    monkeypatch.chdir(REPO)
    out = tmp_path / "r.csv"
    code = bench_main([str(LISTS / "vnncomp2021_test.csv"), "--benchmarks-root",
                       str(bench_root), "-o", str(out), "--executor", dask_scheduler, "--quiet",
                       "--no-plot", "--limit", "2", "--worker", "test_bench:fake_worker"])
    assert code == 0 and [r["mode"] for r in read_results(out)] == ["fake", "fake"]
