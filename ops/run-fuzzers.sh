#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, the `fuzz` preset: clang, ASan + UBSan, build-fuzz/) and
# runs each for a bounded time, several at once, starting from the committed seed corpus
# (tests/fuzz/corpus/<target>/, read-only: new inputs go to build-fuzz/corpus/<target>/). A crash, leak,
# sanitizer report or timeout fails the run; its reproducer is kept in build-fuzz/artifacts/<target>/
# and the command to replay it is printed. Turn each one into a unit test beside the code it broke.
#
# Usage: ops/run-fuzzers.sh [TARGET...]     (default: every target)
#   MOE_FUZZ_SECONDS  seconds per target (default 45)
#   MOE_FUZZ_JOBS     targets run at once (default: nproc)
#   MOE_FUZZ_SEED     libFuzzer's random seed (default 1). A fixed seed makes a run a prefix of one
#                     fixed sequence of inputs, so a longer run here covers what CI's 45 s will try;
#                     set another seed (or 0: libFuzzer picks one) to explore new paths.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${MOE_FUZZ_SECONDS:-45}
export MOE_FUZZ_SEED=${MOE_FUZZ_SEED:-1}
jobs=${MOE_FUZZ_JOBS:-$(nproc)}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(fuzz_frame_stream fuzz_envelope fuzz_safetensors fuzz_model_config fuzz_forward_request)
fi

command -v clang++ >/dev/null || { echo "run-fuzzers: clang++ not found (ops/install-deps.sh installs clang)" >&2; exit 1; }
cmake --preset fuzz >/dev/null
start=$SECONDS
cmake --build --preset fuzz -j "$(nproc)" --target "${targets[@]}"
echo "run-fuzzers: build $((SECONDS - start)) s, load $(cut -d' ' -f1-3 /proc/loadavg)"

out=build-fuzz
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {
  local target=$1 seconds=$2 out=$3
  local corpus=$out/corpus/$target artifacts=$out/artifacts/$target log=$out/logs/$target.log
  rm -rf "$artifacts"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a runaway allocation is a finding.
  if "$out/fuzz/$target" "$corpus" "tests/fuzz/corpus/$target" -max_total_time="$seconds" -seed="$MOE_FUZZ_SEED" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1; then
    echo "run-fuzzers: $target: ok, $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs in ${seconds}s"
  else
    echo "run-fuzzers: $target: FAILED (log $log)"
    grep -E "ERROR: |runtime error:|FUZZ_CHECK|SUMMARY" "$log" | head -5 | sed 's/^/    /'
    for crash in "$artifacts"/*; do
      [ -e "$crash" ] && echo "    reproduce: $out/fuzz/$target $crash"
    done
    return 1
  fi
}
export -f run_one

start=$SECONDS
rc=0
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {} "$seconds" "$out" || rc=$?
echo "run-fuzzers: ${#targets[@]} targets, $jobs at a time: $((SECONDS - start)) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
