#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: `moectl demo`, a local cluster on loopback
# serving the embedded default model. Extra arguments go to moectl demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./ops/install-deps.sh
cmake --preset release
cmake --build --preset release -j "$(nproc)" --target moectl moe-worker moe-coordinator
exec ./build/bin/moectl demo "$@"
