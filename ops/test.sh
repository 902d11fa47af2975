#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test (ctest). The README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
./ops/install-deps.sh
./ops/setup-python-env.sh
cmake --preset release
cmake --build --preset release -j "$(nproc)"
ctest --preset release -j "$(nproc)"
