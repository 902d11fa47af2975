#!/usr/bin/env bash
# One script for a GPU machine (an H200 here): builds the kernels-only project for sm_90a, runs the
# CUDA tests, the benchmark and the torch._grouped_mm peer, and writes everything under $OUT
# (default ./out-gpu): log.txt (all output, the SASS instruction counts too), build.log,
# test_cuda_backend.xml, bench.csv (every expert path per cell), peer.csv, compare.txt,
# worker_parity.txt and worker_parity_cublas.txt (at most 8 files come back from the GPU machine). Then the whole worker: a coordinator + one `moe-worker --backend
# cuda` from the prebuilt bundle device-carry/worker/ (ops/gpu/pack-worker-bundle.sh, carry
# ["device-carry"]) runs the testdata parity (ops/gpu/run-worker-parity.sh: worker_parity.txt).
# Every stage has a time limit and a failed stage does not stop
# the later ones; the exit status is non-zero if any stage failed.
#
#   bash kernels/cuda/run_on_gpu.sh            # from the repository root
#
# Needs: CUDA 13 (nvcc), a host g++, cmake (+ ninja if present), python3 with torch for the peer.
# GoogleTest: the system's, else sources in $MOE_GTEST_SRC or device-carry/googletest (a copy of
# /usr/src/googletest); without either the tests are skipped (the benchmark still checks one row per
# configuration). OpenBLAS is optional (without it the CPU-backend comparison test is not built).
# MOE_EXTRA_CMAKE_ARGS is appended to the configure line (e.g. to rehearse a bare machine:
# "-DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_OpenBLAS=ON -DCMAKE_DISABLE_FIND_PACKAGE_BLAS=ON").
set -u -o pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/out-gpu}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
BUILD=build-gpu
JOBS=$(nproc 2>/dev/null || echo 8)
FAILED=()
stage() { echo; echo "=== $* ($(date +%T), ${SECONDS}s of ${BUDGET}s)"; }
# The whole script stays inside MOE_GPU_BUDGET_S (default 570: a `run` call may last 600 s), so the
# closing stages still write their files: each stage's limit is min(its own, what is left).
BUDGET=${MOE_GPU_BUDGET_S:-570}
limit() {
  local left=$((BUDGET - SECONDS))
  [ "$left" -lt 5 ] && left=5
  [ "$1" -lt "$left" ] && echo "$1" || echo "$left"
}

stage "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 || true
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvcc --version | tail -2
cmake --version | head -1
g++ --version | head -1
python3 -c 'import torch; print("torch", torch.__version__)' 2>&1 || true

stage "configure + build ($JOBS jobs)"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
GTEST_SRC=""
for dir in "${MOE_GTEST_SRC:-}" "$PWD/device-carry/googletest" /usr/src/googletest; do
  if [ -n "$dir" ] && [ -f "$dir/CMakeLists.txt" ]; then GTEST_SRC=$dir; break; fi
done
GTEST_ARGS=()
[ -n "$GTEST_SRC" ] && GTEST_ARGS=(-DMOE_GTEST_SOURCE_DIR="$GTEST_SRC")  # used only if find_package(GTest) fails
if ! timeout "$(limit 300)" cmake -S kernels -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DMOE_ENABLE_CUDA=ON -DMOE_CUDA_PTXAS_VERBOSE=ON "${GTEST_ARGS[@]}" ${MOE_EXTRA_CMAKE_ARGS:-} >"$OUT/build.log" 2>&1 ||
   ! timeout "$(limit 400)" cmake --build "$BUILD" -j "$JOBS" >>"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  echo "BUILD FAILED (full log in build.log)"
  exit 1
fi
grep -E "warning|registers|spill|stack frame" "$OUT/build.log" | grep -v "^--" | sort -u | head -40

stage "SASS: tensor-core, ldmatrix, cp.async and 16-byte load counts per kernel"
CUOBJDUMP=$(command -v cuobjdump || echo "$(dirname "$(command -v nvcc)")/cuobjdump")
if [ -x "$CUOBJDUMP" ]; then
  "$CUOBJDUMP" --dump-sass "$BUILD"/cuda/libmoe_kernels_cuda.a 2>/dev/null | awk '
    /Function :/ { name = $3 }
    /HMMA/ { hmma[name]++ } /LDSM/ { ldsm[name]++ } /LDGSTS/ { ldgsts[name]++ } /LDG[.A-Z0-9]*\.128/ { ldg128[name]++ }
    /LDL|STL/ { local[name]++ }
    END { for (n in hmma) seen[n]; for (n in ldg128) seen[n]; for (n in local) seen[n];
          for (n in seen) printf "%-100s HMMA %d LDSM %d LDGSTS %d LDG128 %d local %d\n", n, hmma[n], ldsm[n], ldgsts[n], ldg128[n], local[n] }' \
    | sort
else
  echo "no cuobjdump"
fi

stage "tests"
if [ -x "$BUILD/tests/test_cuda_backend" ]; then
  if ! timeout "$(limit 240)" "$BUILD/tests/test_cuda_backend" --gtest_output="xml:$OUT/test_cuda_backend.xml" 2>&1 |
      grep -v -E "^\[ *(RUN|OK) *\]"; then
    FAILED+=(tests)
  fi
else
  echo "test_cuda_backend not built (no GoogleTest?)"
  FAILED+=(tests-not-built)
fi

stage "whole worker (--backend cuda, auto)"
# Correctness before speed: one coordinator + one cuda worker per testdata checkpoint.
WORKER_BUNDLE_OK=0
if [ -x device-carry/worker/bin/moe-worker ]; then
  WORKER_BUNDLE_OK=1
  OUT="$OUT" timeout -k 5 "$(limit 150)" bash ops/gpu/run-worker-parity.sh || FAILED+=(whole-worker)
else
  echo "no device-carry/worker/bin/moe-worker: run ops/gpu/pack-worker-bundle.sh on the build machine"
  echo "(it needs capnp, prometheus-cpp, OpenBLAS, CLI11 and nvcc) and give run carry [\"device-carry\"]"
  FAILED+=(whole-worker-no-bundle)
fi

stage "benchmark (moe_cuda)"
# --paths all: auto's pick (impl moe_cuda in the CSV), then every path on the same inputs.
timeout "$(limit 300)" "$BUILD/bin/bench_kernels" --paths all --csv "$OUT/bench.csv" || FAILED+=(bench)

stage "peer (torch._grouped_mm)"
PYTHONUNBUFFERED=1 timeout "$(limit 180)" python3 tools/torch_grouped_mm_peer.py --csv "$OUT/peer.csv" || FAILED+=(peer)

stage "side by side"
python3 - "$OUT/bench.csv" "$OUT/peer.csv" <<'EOF' | tee "$OUT/compare.txt"
import csv, os, sys
quoted = {  # torch._grouped_mm on an H200, ms, as given in the issue
    "mixtral": [0.51, 1.41, 1.24, 1.92, 5.45, 21.2],
    "qwen3": [0.58, 0.59, 0.69, 0.87, 1.98, 6.05],
    "deepseek": [0.47, 3.14, 7.30, 7.85, 13.4, 33.0],
}
token_counts = [1, 16, 128, 1024, 4096, 16384]
def rows(path):
    return list(csv.DictReader(open(path))) if os.path.exists(path) else []
def load(path, impl):
    return {(r["shape"], int(r["T"])): r for r in rows(path) if r["impl"] == impl}
ours, peer = load(sys.argv[1], "moe_cuda"), load(sys.argv[2], "torch_grouped_mm")
fastest = {}  # (shape, T) -> the fastest row of any path (forced paths and auto)
for r in rows(sys.argv[1]):
    key = (r["shape"], int(r["T"]))
    if key not in fastest or float(r["ms"]) < float(fastest[key]["ms"]):
        fastest[key] = r
print(f"{'shape':<9} {'T':>6} {'auto path':<16} {'ours_ms':>9} {'peer_ms':>9} {'quoted':>8} {'floor_ms':>9} "
      f"{'ours/floor':>10} {'peer/ours':>9} {'err':>9}  fastest path (ms)")
for (shape, t) in sorted(set(ours) | set(peer), key=lambda k: (list(quoted).index(k[0]) if k[0] in quoted else 9, k[1])):
    o, p = ours.get((shape, t)), peer.get((shape, t))
    q = quoted.get(shape, [None] * 6)[token_counts.index(t)] if t in token_counts else None
    f = lambda v, w=9: f"{float(v):{w}.4f}" if v not in (None, "") else f"{'-':>{w}}"
    speed = f"{float(p['ms']) / float(o['ms']):9.2f}" if o and p else f"{'-':>9}"
    best = fastest.get((shape, t))
    best_text = f"{best['path']} ({float(best['ms']):.4f})" if best else "-"
    print(f"{shape:<9} {t:>6} {(o['path'] if o else '-'):<16} {f(o and o['ms'])} {f(p and p['ms'])} {f(q, 8)} "
          f"{f((o or p)['floor_ms'])} {(float(o['ratio']) if o else float('nan')):10.2f} {speed} "
          f"{(float(o['err']) if o else float('nan')):9.2e}  {best_text}")
EOF

stage "whole worker (--backend cuda, --cuda-path cublas)"
# The testdata cases are small (auto runs the streaming kernels): once more through the cuBLAS path.
if [ "$WORKER_BUNDLE_OK" = 1 ]; then
  mkdir -p "$OUT/cublas-pass"
  OUT="$OUT/cublas-pass" MOE_CUDA_PATH=cublas timeout -k 5 "$(limit 150)" bash ops/gpu/run-worker-parity.sh ||
    FAILED+=(whole-worker-cublas)
  mv "$OUT/cublas-pass/worker_parity.txt" "$OUT/worker_parity_cublas.txt" 2>/dev/null
  rm -rf "$OUT/cublas-pass"
fi

stage "done"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED stages: ${FAILED[*]}"
  exit 1
fi
echo "all stages passed"
