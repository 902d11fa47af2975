#!/usr/bin/env bash
# Builds here (Debian 12, nvcc, capnp, prometheus-cpp, OpenBLAS) a Release moe-worker / moe-coordinator /
# moectl with the CUDA backend for sm_90a, and packs what the bare GPU machine lacks into the git-ignored
# folder device-carry/worker/ (carried there with run's carry ["device-carry"]):
#   bin/       the three binaries (stripped)
#   lib/       every shared library ldd lists except glibc, libstdc++, libgcc_s, the loader and CUDA's
#   testdata/  a copy of ../shared/testdata/hf_moe (the checkout's ../shared does not travel)
# ops/gpu/run-worker-parity.sh then runs a coordinator + one `--backend cuda` worker from it.
#
#   ops/gpu/pack-worker-bundle.sh            # from anywhere; MOE_TESTDATA_DIR overrides the testdata folder
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=$ROOT/build-gpu-worker
BUNDLE=$ROOT/device-carry/worker
TESTDATA=${MOE_TESTDATA_DIR:-$ROOT/../shared/testdata}/hf_moe
LIMIT_MIB=60
JOBS=$(nproc 2>/dev/null || echo 2)

die() { echo "pack-worker-bundle: $*" >&2; exit 1; }

git check-ignore -q device-carry/worker/x ||
  die "device-carry/ is not git-ignored (add /device-carry/ to .gitignore), so the bundle would travel as tracked-size files"
[ -f "$TESTDATA/README.md" ] || [ -d "$TESTDATA/mixtral_f32" ] ||
  die "no testdata checkpoints in $TESTDATA (set MOE_TESTDATA_DIR to the folder holding hf_moe/)"
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
  die "no nvcc on PATH or in /usr/local/cuda/bin: the CUDA backend cannot be built here"

echo "== configure + build $BUILD ($JOBS jobs)"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
# Without MPI: the daemons are started directly there, and OpenMPI would bring libmpi, libopen-pal,
# libhwloc ... and plugins it dlopens from paths that do not exist on the GPU machine.
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DMOE_ENABLE_CUDA=ON -DBUILD_TESTING=OFF -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON >"$BUILD/configure.log" 2>&1 ||
  { tail -30 "$BUILD/configure.log"; die "cmake configure failed (log: $BUILD/configure.log)"; }
cmake --build "$BUILD" -j "$JOBS" --target moe-worker moe-coordinator moectl ||
  die "build failed (targets moe-worker moe-coordinator moectl in $BUILD)"
grep -q '^MOE_ENABLE_CUDA:STRING=ON' "$BUILD/CMakeCache.txt" || die "$BUILD was not configured with MOE_ENABLE_CUDA=ON"

echo "== bundle $BUNDLE"
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/testdata"
for b in moe-worker moe-coordinator moectl; do
  [ -x "$BUILD/bin/$b" ] || die "$BUILD/bin/$b was not built"
  cp "$BUILD/bin/$b" "$BUNDLE/bin/$b"
  strip --strip-unneeded "$BUNDLE/bin/$b"
done
ldd "$BUNDLE/bin/moe-worker" | grep -q 'libcudart' || die "moe-worker does not link libcudart: no CUDA backend in it"

# Libraries: what the GPU machine has is left out: glibc's (libc, libm, libdl, libpthread, librt, ...),
# the loader, libstdc++/libgcc_s (Ubuntu 24.04's are newer than Debian 12's g++ 12 needs) and CUDA's
# (libcudart, libcuda ...: /usr/local/cuda there). Everything else is copied under its soname.
is_system_lib() {
  case "$1" in
    linux-vdso.so.* | ld-linux*.so.* | libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | \
      libresolv.so.* | libutil.so.* | libanl.so.* | libmvec.so.* | libBrokenLocale.so.* | libnss_*.so.* | \
      libstdc++.so.* | libgcc_s.so.*) return 0 ;;
    libcuda.so.* | libcudart.so.* | libcublas*.so.* | libnvrtc*.so.* | libnvidia-*.so.* | libcudadevrt*) return 0 ;;
  esac
  return 1
}
for b in "$BUNDLE"/bin/*; do
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    [ "$path" = "not" ] && die "ldd $b: $name not found here"
    is_system_lib "$name" && continue
    [ -f "$BUNDLE/lib/$name" ] || cp -L "$path" "$BUNDLE/lib/$name"
  done < <(ldd "$b")
done
# The copied libraries' own needs are in ldd's (transitive) list already; check that nothing is missing.
missing=$(LD_LIBRARY_PATH="$BUNDLE/lib" ldd "$BUNDLE"/bin/* "$BUNDLE"/lib/* 2>&1 | grep 'not found' || true)
[ -z "$missing" ] || die "with LD_LIBRARY_PATH=$BUNDLE/lib something is not found: $missing"

cp -r "$TESTDATA"/. "$BUNDLE/testdata/"
chmod -R u+w "$BUNDLE/testdata"
[ -f "$TESTDATA/../README.md" ] && cp "$TESTDATA/../README.md" "$BUNDLE/testdata/README.testdata.md"

{
  echo "built $(date -u +%FT%TZ) on $(hostname) from $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (+ local changes)')"
  echo "cmake -S . -B build-gpu-worker -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DMOE_ENABLE_CUDA=ON -DBUILD_TESTING=OFF -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON"
  echo "left to the GPU machine: $(ldd "$BUNDLE/bin/moe-worker" | awk '$2 == "=>" {print $1}' | while read -r n; do
    [ -f "$BUNDLE/lib/$n" ] || printf '%s ' "$n"; done)"
} >"$BUNDLE/MANIFEST.txt"

echo "== contents"
(cd "$BUNDLE" && du -b bin/* lib/* | sort -k2 | awk '{printf "%10.1f KiB  %s\n", $1 / 1024, $2}')
echo "testdata: $(du -sb "$BUNDLE/testdata" | cut -f1 | awk '{printf "%.1f KiB", $1 / 1024}') ($(ls "$BUNDLE/testdata" | grep -vc README) checkpoints)"
sed -n 3p "$BUNDLE/MANIFEST.txt"
bytes=$(du -sb "$ROOT/device-carry" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "bundle size: device-carry/ = $mib MiB ($bytes bytes; limit $LIMIT_MIB MiB, run carries 64 MiB with the working tree)"
[ "$bytes" -le $((LIMIT_MIB * 1048576)) ] || die "device-carry/ is $mib MiB, over the $LIMIT_MIB MiB limit"
echo "OK: carry [\"device-carry\"] and run: bash ops/gpu/run-worker-parity.sh"
