#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything and runs every test (ctest,
# release build), then the unit + integration tests under ASan + UBSan and the net/client/worker tests
# under TSan (ops/run-sanitizers.sh), then each fuzz target for MOE_FUZZ_SECONDS (default 45;
# ops/run-fuzzers.sh). Every phase runs even when an earlier test phase failed; the summary lists each
# phase's result and wall time, and the exit status is 0 only when all passed.
set -euo pipefail
cd "$(dirname "$0")/.."
./ops/install-deps.sh
./ops/setup-python-env.sh

summary=()
failed=0
phase() {  # phase NAME COMMAND...
  local name=$1 start=$SECONDS rc=0
  shift
  echo "test.sh: === $name"
  "$@" || rc=$?
  local took=$((SECONDS - start))
  local load
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  if [ $rc -eq 0 ]; then summary+=("$name: ok (${took} s, load $load)"); else summary+=("$name: FAILED, exit $rc (${took} s, load $load)"); failed=1; fi
}

release_build() { cmake --preset release && cmake --build --preset release -j "$(nproc)"; }
phase "release build" release_build
phase "release tests" ctest --preset release -j "$(nproc)"
phase "asan+ubsan build and tests" ./ops/run-sanitizers.sh asan
phase "tsan build and tests" ./ops/run-sanitizers.sh tsan
phase "fuzzers (${MOE_FUZZ_SECONDS:-45} s each)" ./ops/run-fuzzers.sh

echo "test.sh: summary (total ${SECONDS} s)"
printf '  %s\n' "${summary[@]}"
exit $failed
