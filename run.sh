#!/usr/bin/env bash
# dpllnn entry point: set-up on first use, then demo / test / any dpllnn subcommand.
#   ./run.sh setup              create ./.venv, install dpllnn with its test, bench and dask
#                               extras and compile the bound kernels (idempotent)
#   ./run.sh demo               verify the bundled example network
#   ./run.sh test [pytest args] run the test suite
#   ./run.sh <subcommand> ...   any dpllnn subcommand (verify, info, bounds, ...)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.dpllnn-setup"

setup() {
    local want
    want="$(cat "$HERE/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
        return 0
    fi
    echo "dpllnn: setting up $VENV (first use) ..." >&2
    if [[ ! -x "$PY" ]]; then
        "${PYTHON:-python3}" -m venv "$VENV"
    fi
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    # bench (cactus plot, progress bar) and dask (--executor dask-local / dask://) are extras
    # the README's commands and the tests use
    "$PY" -m pip install -q --disable-pip-version-check -e "$HERE[test,bench,dask]" >&2
    # numba compiles the bound kernels once (cache=True): do it here, not in the first verify
    (cd "$HERE" && "$PY" -m dpllnn.jitcache)
    echo "$want" > "$STAMP"
    echo "dpllnn: set-up done" >&2
}

cmd="${1:-help}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    setup)
        setup ;;
    demo)
        setup
        ex="$HERE/dpllnn/examples"
        echo "== dpllnn verify digits_mlp.onnx digits_robust.vnnlib (expected: unsat)"
        "$VENV/bin/dpllnn" verify "$ex/digits_mlp.onnx" "$ex/digits_robust.vnnlib" --timeout 60 "$@"
        echo "== dpllnn verify digits_mlp.onnx digits_fragile.vnnlib (expected: sat)"
        "$VENV/bin/dpllnn" verify "$ex/digits_mlp.onnx" "$ex/digits_fragile.vnnlib" --timeout 60 "$@" ;;
    test)
        setup
        cd "$HERE"
        exec "$PY" -m pytest -q "$@" ;;
    help|-h|--help)
        sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' ;;
    *)
        setup
        exec "$VENV/bin/dpllnn" "$cmd" "$@" ;;
esac
