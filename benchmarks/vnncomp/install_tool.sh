#!/usr/bin/env bash
# VNN-COMP: install_tool.sh v1
# Creates ./.venv in the repository and installs dpllnn into it (run.sh setup; idempotent).
set -euo pipefail
VERSION="${1:-}"
if [[ "$VERSION" != "v1" ]]; then
    echo "install_tool.sh: expected version string v1, got '$VERSION'" >&2
    exit 1
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$REPO/run.sh" setup
"$REPO/.venv/bin/dpllnn" --version
