#!/usr/bin/env bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX VNNLIB
# Checks that the network and the property load (exit 1 otherwise: the instance is skipped) and
# warms the numba cache: `dpllnn info` loads both; `dpllnn bounds` compiles the bound kernels
# (cache=True) so that run_instance.sh does not pay the compilation inside its time limit.
set -euo pipefail
VERSION="${1:-}"
if [[ "$VERSION" != "v1" || $# -ne 4 ]]; then
    echo "usage: prepare_instance.sh v1 CATEGORY ONNX VNNLIB" >&2
    exit 1
fi
CATEGORY="$2"
ONNX="$3"
VNNLIB="$4"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DPLLNN="${DPLLNN_BIN:-$REPO/.venv/bin/dpllnn}"
echo "prepare_instance.sh: category $CATEGORY, $ONNX, $VNNLIB" >&2
source "$REPO/benchmarks/vnncomp/networks.sh"
if is_network_list "$ONNX"; then          # a multi-network VNN-LIB 2.0 instance
    if ! network_args "$ONNX"; then
        echo "prepare_instance.sh: cannot read the network list $ONNX" >&2
        exit 1
    fi
    for ((k = 1; k < ${#NETWORK_ARGS[@]}; k += 2)); do
        "$DPLLNN" info "${NETWORK_ARGS[k]#*=}"
    done
    exit 0
fi
"$DPLLNN" info "$ONNX" "$VNNLIB"
if ! "$DPLLNN" bounds "$ONNX" "$VNNLIB" > /dev/null; then
    echo "prepare_instance.sh: warning: bound kernels not warmed (dpllnn bounds failed)" >&2
fi
exit 0
