#!/usr/bin/env bash
# Builds and runs the tests under sanitizers (part of the README's test command, ops/test.sh):
#   asan: ASan + UBSan (-O1, preset `debug`, build-debug/): the daemons, moectl and every unit and
#         integration test (not the python/peer/cuda groups); integration tests start the sanitized
#         daemons from build-debug/bin.
#   tsan: TSan (-O1, preset `tsan`, build-tsan/): the net, client and worker unit tests (label unit;
#         no daemons are built).
# A sanitizer finding fails the test that meets it (ASan aborts, UBSan is built with
# -fno-sanitize-recover, TSan exits 66). ASan, LSan and TSan reports, also those of a daemon a test
# started, are written under build-*/sanitizer-logs/ and fail the run even when the test passed; the
# reports are printed. UBSan reports ignore log_path in gcc 12's runtime: a daemon's UBSan finding
# aborts that daemon and shows in its log (the test then fails on the dead daemon).
# Suppressions (ops/sanitizers/*.supp) are for findings in system libraries only, each with its reason.
#
# Usage: ops/run-sanitizers.sh [asan] [tsan]     (default: both)
#   MOE_SANITIZER_CTEST_ARGS  extra ctest arguments (e.g. "-R Framing")
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(asan tsan)

supp() {  # ":suppressions=FILE" when ops/sanitizers/FILE exists
  [ -f "$repo/ops/sanitizers/$1" ] && echo ":suppressions=$repo/ops/sanitizers/$1" || true
}

status=0
for run in "${runs[@]}"; do
  case $run in
    asan) preset=debug; dir=build-debug; targets=(all) ;;
    tsan) preset=tsan; dir=build-tsan; targets=(test_net test_client test_worker) ;;
    *) echo "run-sanitizers: unknown run '$run' (asan, tsan)" >&2; exit 2 ;;
  esac
  start=$SECONDS
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$(nproc)" --target "${targets[@]}"
  built=$SECONDS
  logs=$repo/$dir/sanitizer-logs
  rm -rf "$logs"
  mkdir -p "$logs"
  rc=0
  (
    # quarantine_size_mb=32 (default 256): freed memory ASan holds back to catch use-after-free counts in
    # a daemon's RSS, and the integration tests bound that (SlowReader: growth under 256 MiB); 32 MiB
    # still catches a use of recently freed memory.
    export ASAN_OPTIONS="detect_leaks=1:quarantine_size_mb=32:log_path=$logs/asan$(supp asan.supp)"
    # print_suppressions=0: a run whose only leaks were suppressed writes no report file.
    export LSAN_OPTIONS="print_suppressions=0:log_path=$logs/lsan$(supp lsan.supp)"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1$(supp ubsan.supp)"
    export TSAN_OPTIONS="second_deadlock_stack=1:log_path=$logs/tsan$(supp tsan.supp)"
    # shellcheck disable=SC2086
    if [ "$run" = asan ]; then
      # Ranks started by mpirun: OpenMPI leaks its state at MPI_Finalize from plugins it has unloaded by
      # exit, so LSan's stacks end in "<unknown module>" and no suppression can name them: those tests
      # run with leak checking off (every other ASan and UBSan check stays on).
      ctest --preset "$preset" -j "$(nproc)" -E '^MpirunCluster[.]' ${MOE_SANITIZER_CTEST_ARGS:-} || exit 1
      ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" ctest --preset "$preset" -j "$(nproc)" -R '^MpirunCluster[.]' \
        ${MOE_SANITIZER_CTEST_ARGS:-}
    else
      ctest --preset "$preset" -j "$(nproc)" ${MOE_SANITIZER_CTEST_ARGS:-}
    fi
  ) || rc=$?
  reports=$(find "$logs" -type f | sort)
  if [ -n "$reports" ]; then
    echo "run-sanitizers: $run: sanitizer reports:"
    for f in $reports; do
      echo "==== $f"
      head -c 20000 "$f"
    done
    rc=1
  fi
  times="build $((built - start)) s, tests $((SECONDS - built)) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ $rc -eq 0 ]; then
    echo "run-sanitizers: $run: ok ($times)"
  else
    echo "run-sanitizers: $run: FAILED ($times)"
    status=1
  fi
done
exit $status
