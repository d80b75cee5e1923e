#!/usr/bin/env bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
# Runs `dpllnn verify` with the time limit; dpllnn writes RESULTS_FILE atomically in the format
# of the instance's VNN-LIB version: 1.0, first line sat/unsat/timeout/unknown and for sat the
# witness ((X_0 v) ... (Y_0 v) ...); 2.0, first line sat/unsat/timed-out/unknown and for sat the
# standard's assignment (NAME TYPE [dims], then the values).  ONNX is a path, or for a
# multi-network query the list literal [('f', 'a.onnx'), ('g', 'b.onnx')] (see networks.sh).
# When dpllnn fails (exit 1 internal error, 2 bad input) it writes nothing and this script exits
# with its code.
set -euo pipefail
VERSION="${1:-}"
if [[ "$VERSION" != "v1" || $# -ne 6 ]]; then
    echo "usage: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT" >&2
    exit 1
fi
CATEGORY="$2"
ONNX="$3"
VNNLIB="$4"
RESULTS_FILE="$5"
TIMEOUT="$6"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DPLLNN="${DPLLNN_BIN:-$REPO/.venv/bin/dpllnn}"
echo "run_instance.sh: category $CATEGORY, timeout $TIMEOUT s, $ONNX, $VNNLIB" >&2
rm -f "$RESULTS_FILE"
source "$REPO/benchmarks/vnncomp/networks.sh"
if is_network_list "$ONNX"; then
    if ! network_args "$ONNX"; then
        echo "run_instance.sh: cannot read the network list $ONNX" >&2
        exit 2
    fi
    exec "$DPLLNN" verify "$VNNLIB" "${NETWORK_ARGS[@]}" --timeout "$TIMEOUT" \
        --results-file "$RESULTS_FILE"
fi
exec "$DPLLNN" verify "$ONNX" "$VNNLIB" --timeout "$TIMEOUT" --results-file "$RESULTS_FILE"
