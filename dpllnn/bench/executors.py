"""Executors for the suite runner: any :class:`concurrent.futures.Executor` will do.

``local``             a :class:`~concurrent.futures.ProcessPoolExecutor` with ``workers`` processes
``dask-local``        a ``dask.distributed`` LocalCluster on this machine (optional extra ``dask``)
``dask://HOST:PORT``  a running dask scheduler (``dask scheduler`` + ``dask worker`` on each node;
                      every worker needs dpllnn installed and the benchmark files at the same path)

There is no cluster code here: dask does the distribution, and each task only launches one
``dpllnn verify`` process and waits for it, so a worker thread per concurrent instance suffices.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
from collections.abc import Iterator

from ..errors import DpllnnError


@contextlib.contextmanager
def make_executor(spec: str = "local", workers: int = 1) -> Iterator[cf.Executor]:
    """Context manager yielding an executor for ``spec``, shut down cleanly on exit.

    Parameters
    ----------
    spec : str -- ``"local"``, ``"dask-local"`` or ``"dask://HOST:PORT"`` (also ``tcp://``)
    workers : int -- instances run at the same time (local pool size; LocalCluster threads)
    """
    if workers < 1:
        raise DpllnnError("--workers must be >= 1")
    if spec == "local":
        with cf.ProcessPoolExecutor(max_workers=workers) as ex:
            yield ex
        return
    if spec == "dask-local" or spec.startswith(("dask://", "tcp://")):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise DpllnnError(f"--executor {spec} needs dask.distributed: "
                              "pip install 'dpllnn[dask]'") from None
        if spec == "dask-local":
            # Threads in one process: each task only waits on its own `dpllnn verify` child
            # process, so threads give the isolation we need and start instantly.
            with LocalCluster(n_workers=1, threads_per_worker=workers, processes=False,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                with client.get_executor(pure=False) as ex:
                    yield ex
            return
        address = "tcp://" + spec.split("://", 1)[1]
        with Client(address) as client:
            with client.get_executor(pure=False) as ex:
                yield ex
        return
    raise DpllnnError(f"unknown executor {spec!r} (local, dask-local or dask://HOST:PORT)")
