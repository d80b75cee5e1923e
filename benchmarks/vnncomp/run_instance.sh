#!/usr/bin/env bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
# Runs `dpllnn verify` with the time limit; dpllnn writes RESULTS_FILE atomically (first line
# sat/unsat/timeout/unknown; for sat the witness ((X_0 v) ... (Y_0 v) ...)).  When dpllnn fails
# (exit 1 internal error, 2 bad input) it writes nothing and this script exits with its code.
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
exec "$DPLLNN" verify "$ONNX" "$VNNLIB" --timeout "$TIMEOUT" --results-file "$RESULTS_FILE"
