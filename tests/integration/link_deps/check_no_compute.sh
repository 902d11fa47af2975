#!/usr/bin/env bash
# Fails, naming what it found, when something that must compute nothing links the compute library.
#   check_no_compute.sh --closure FILE...   each FILE lists what one target links (its CMake link
#                                           closure, written at configure time); no line may name
#                                           moe_kernels or a BLAS.
#   check_no_compute.sh --binary BIN --kernels-lib LIB
#                                           BIN (a built executable) may not define any strong text
#                                           symbol LIB (libmoe_kernels.a) defines, nor any cblas_/
#                                           openblas/sgemm symbol, nor need or search a BLAS library
#                                           (readelf NEEDED/RUNPATH).
set -euo pipefail
mode=${1:-}
shift || true
fail=0
case "$mode" in
  --closure)
    [[ $# -gt 0 ]] || { echo "check_no_compute: --closure needs files" >&2; exit 2; }
    for f in "$@"; do
      [[ -s $f ]] || { echo "check_no_compute: closure file $f is missing or empty" >&2; exit 2; }
      target=$(head -n1 "$f")
      bad=0
      while IFS= read -r item; do
        if [[ $item =~ (^|[/:])moe_kernels($|[^_]) || $item =~ [Bb][Ll][Aa][Ss] ]]; then
          echo "FAIL: $target links the compute library: '$item' is in its link closure ($f)"
          bad=1
          fail=1
        fi
      done < <(tail -n +2 "$f")
      [[ $bad -eq 1 ]] || echo "ok: $target links no compute library ($(($(wc -l < "$f") - 1)) items)"
    done
    ;;
  --binary)
    bin=$1; [[ ${2:-} == --kernels-lib ]] || { echo "check_no_compute: --binary BIN --kernels-lib LIB" >&2; exit 2; }
    lib=$3
    [[ -x $bin ]] || { echo "check_no_compute: no executable at $bin" >&2; exit 2; }
    [[ -f $lib ]] || { echo "check_no_compute: no kernels library at $lib" >&2; exit 2; }
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    nm -C --defined-only "$lib" 2>/dev/null | sed -nE 's/^[0-9a-f]+ T //p' | sort -u > "$tmp/kernels"
    [[ -s $tmp/kernels ]] || { echo "check_no_compute: no text symbols read from $lib" >&2; exit 2; }
    nm -C "$bin" | sed -E 's/^[0-9a-f]* *[A-Za-z] //' | sort -u > "$tmp/bin"
    [[ -s $tmp/bin ]] || { echo "check_no_compute: no symbols read from $bin (stripped?)" >&2; exit 2; }
    while IFS= read -r sym; do
      echo "FAIL: $bin has the compute library's symbol '$sym' (defined in $lib)"; fail=1
    done < <(comm -12 "$tmp/kernels" "$tmp/bin" | head -n 20)
    while IFS= read -r sym; do
      echo "FAIL: $bin has the BLAS symbol '$sym'"; fail=1
    done < <(grep -iE '(^|[^a-z])(cblas_|openblas|sgemm|sgemv)' "$tmp/bin" | head -n 20)
    while IFS= read -r line; do
      echo "FAIL: $bin needs or searches a BLAS library: $line"; fail=1
    done < <(readelf -d "$bin" | grep -E '\((NEEDED|RUNPATH|RPATH)\)' | grep -i blas || true)
    [[ $fail -eq 1 ]] || echo "ok: $bin has no compute symbol ($(wc -l < "$tmp/kernels") checked) and needs no BLAS"
    ;;
  *)
    echo "usage: check_no_compute.sh --closure FILE... | --binary BIN --kernels-lib LIB" >&2; exit 2 ;;
esac
exit $fail
