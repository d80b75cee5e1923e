#!/usr/bin/env bash
# ACAS Xu (VNN-COMP 2021, 186 instances) with the input-splitting search, one instance at a time.
#
#   benchmarks/run_acasxu.sh [OUT.csv] [TIMEOUT_S] [extra `dpllnn bench` args, e.g. --limit 20]
#
# Results csv (resumable: rerun the same command to continue), summary and cactus plot next to it.
# BLAS is pinned to one thread: the bound kernels' small GEMMs gain nothing from BLAS threads, and
# on a loaded machine OpenBLAS's spinning threads made them 5-100x slower (measured on 2 cores).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
out="${1:-/tmp/acasxu_inputsplit.csv}"
timeout_s="${2:-20}"
shift $(( $# > 2 ? 2 : $# ))
root="${DPLLNN_BENCHMARKS:-$repo/../shared/benchmarks}"
ref="$root/../refdata/2021_acasxu.csv"
refarg=()
[ -f "$ref" ] && refarg=(--reference "$ref")
scale=$(python3 -c "print($timeout_s / 116)")   # every ACAS Xu instance has a 116 s limit
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec "$repo/.venv/bin/dpllnn" bench "$repo/benchmarks/vnncomp/instances/vnncomp2021_acasxu.csv" \
    --benchmarks-root "$root" -o "$out" --mode inputsplit --workers 1 --verify-workers 1 \
    --timeout-scale "$scale" "${refarg[@]}" "$@"
