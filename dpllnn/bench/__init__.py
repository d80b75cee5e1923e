"""dpllnn.bench: suite runner (resumable csv, --shard i/N, any concurrent.futures Executor,
dask optional), comparison with reference answers, VNN-COMP score, cactus plot.

Modules: ``runner`` (instances, worker process, results csv), ``executors`` (local / dask),
``reference`` (refdata csv, score), ``compare`` (summaries, per-tool tables), ``plot`` (cactus),
``cli_bench`` (the ``dpllnn bench`` subcommand).
"""
