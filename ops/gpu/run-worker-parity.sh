#!/usr/bin/env bash
# The whole worker on the GPU (issue 4, item 5): from the bundle that ops/gpu/pack-worker-bundle.sh packs
# into device-carry/worker/ (bin/, lib/, testdata/), starts for every testdata checkpoint a moe-coordinator
# and ONE moe-worker (--backend ${MOE_WORKER_BACKEND:-cuda}) on loopback, waits until the worker hosts the
# experts (moectl status), runs every case (each MoE layer, T=1 and T=37) through
# `moectl forward --cluster` and compares with the float64 expected output.
#
#   bash ops/gpu/run-worker-parity.sh                          # from the repository root, on the GPU machine
#   MOE_WORKER_BACKEND=cpu bash ops/gpu/run-worker-parity.sh   # rehearsal anywhere
#
# A case passes when both its relative L2 error ||got-want||/||want|| and the project's relative error
# max|got-want|/max|want| are below MOE_PARITY_TOLERANCE (default 1e-2: the CUDA backend keeps weights and
# activations in bf16; the cpu backend is ~1e-6). Writes ONE file, $OUT/worker_parity.txt (OUT default
# ./out-gpu; one file because run returns at most 8 files and run_on_gpu.sh writes 7 others): one line
# per case (errors, PASS/FAIL), the summary line ("PASS: ..." or "FAIL: ..."), then the coordinator,
# worker and moectl logs of every checkpoint after a "===== logs" line (they live in
# $OUT/worker_parity_logs/ while it runs). Exit status non-zero on any failure.
# Needs python3 with numpy (else .venv/bin/python is tried).
# Settings: MOE_WORKER_BUNDLE (bundle folder), MOE_WIRE_DTYPE (f32|bf16, default f32 so that only the
# backend's precision is measured), MOE_READY_TIMEOUT_S (default 60), MOE_FORWARD_TIMEOUT_S (default 60),
# MOE_PARITY_BUDGET_S (default 240: checkpoints not started by then are recorded FAIL, so the report
# is complete inside run_on_gpu.sh's 300 s limit of this stage).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUNDLE=${MOE_WORKER_BUNDLE:-$ROOT/device-carry/worker}
OUT=${OUT:-$ROOT/out-gpu}
BACKEND=${MOE_WORKER_BACKEND:-cuda}
TOL=${MOE_PARITY_TOLERANCE:-1e-2}
WIRE=${MOE_WIRE_DTYPE:-f32}
READY_S=${MOE_READY_TIMEOUT_S:-60}
BUDGET_S=${MOE_PARITY_BUDGET_S:-240}
FORWARD_S=${MOE_FORWARD_TIMEOUT_S:-60}
DAEMON_S=900  # no coordinator or worker outlives this, whatever happens to this script
BIN=$BUNDLE/bin
CASES_PY=$ROOT/ops/gpu/parity_cases.py

die() { echo "run-worker-parity: $*" >&2; exit 2; }

# ---- preconditions, each with the reason it failed
for b in moe-coordinator moe-worker moectl; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run ops/gpu/pack-worker-bundle.sh on the build machine and carry [\"device-carry\"]"
done
[ -d "$BUNDLE/testdata" ] || die "$BUNDLE/testdata is missing (pack-worker-bundle.sh copies ../shared/testdata/hf_moe there)"
case "$BACKEND" in cpu | cuda) ;; *) die "MOE_WORKER_BACKEND=$BACKEND: want cpu or cuda" ;; esac
case "$WIRE" in f32 | bf16) ;; *) die "MOE_WIRE_DTYPE=$WIRE: want f32 or bf16" ;; esac
export LD_LIBRARY_PATH="$BUNDLE/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing=$(ldd "$BIN"/* 2>&1 | grep 'not found' | sort -u || true)
[ -z "$missing" ] || die "shared libraries not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH):
$missing"
PY=${PYTHON:-python3}
if ! timeout 60 "$PY" -c 'import numpy' 2>/dev/null; then
  [ -x "$ROOT/.venv/bin/python" ] && timeout 60 "$ROOT/.venv/bin/python" -c 'import numpy' 2>/dev/null ||
    die "no python3 with numpy (tried '$PY' and .venv/bin/python; set PYTHON=...)"
  PY=$ROOT/.venv/bin/python
fi
mapfile -t CHECKPOINTS < <(find "$BUNDLE/testdata" -mindepth 2 -maxdepth 2 -name cases.safetensors -printf '%h\n' | sort)
[ ${#CHECKPOINTS[@]} -gt 0 ] || die "no checkpoint with cases.safetensors under $BUNDLE/testdata"

mkdir -p "$OUT"
REPORT=$OUT/worker_parity.txt
LOGS=$OUT/worker_parity_logs
rm -rf "$LOGS" "$REPORT"
mkdir -p "$LOGS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/worker-parity.XXXXXX")
COORD_PID=""
WORKER_PID=""

# Stops one daemon we started (its `timeout` wrapper passes the signal on): TERM, then KILL after 10 s.
stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_cluster() {
  stop "$WORKER_PID"; WORKER_PID=""
  stop "$COORD_PID"; COORD_PID=""
}
cleanup() {
  stop_cluster
  if [ -d "$LOGS" ]; then
    {
      echo
      echo "===== logs (coordinator, worker, moectl forward) of every checkpoint"
      for f in "$LOGS"/*; do
        [ -s "$f" ] || continue
        printf '===== %s\n' "$(basename "$f")"
        cat "$f"
      done
    } >>"$REPORT"
    rm -rf "$LOGS"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "run-worker-parity: interrupted" >&2; exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
tail_log() { echo "---- last lines of $(basename "$1"):"; tail -n "${2:-15}" "$1" | sed 's/^/    /'; }

# Waits until the coordinator answers and, with want_worker, until a placement epoch is committed with
# the worker active on $BACKEND and hosting experts. Fails at once when a daemon exits.
wait_ready() {
  local addr=$1 want_worker=$2 name=$3 deadline=$((SECONDS + READY_S)) status
  while :; do
    if ! kill -0 "$COORD_PID" 2>/dev/null; then
      echo "$name: moe-coordinator exited before the cluster was ready"; tail_log "$LOGS/$name.coordinator.log"; return 1
    fi
    if [ "$want_worker" = 1 ] && ! kill -0 "$WORKER_PID" 2>/dev/null; then
      echo "$name: moe-worker (--backend $BACKEND) exited before it hosted any expert"; tail_log "$LOGS/$name.worker.log"; return 1
    fi
    if status=$(timeout 10 "$BIN/moectl" status --cluster "$addr" --timeout-ms 2000 </dev/null 2>&1); then
      [ "$want_worker" = 1 ] || return 0
      if awk -v be="$BACKEND" '
          NR == 1 { for (i = 1; i < NF; i++) if ($i == "epoch") epoch = $(i + 1) }
          NR > 2 && $3 == "active" && $5 == be && $6 > 0 { ok = 1 }
          END { exit !(epoch >= 1 && ok) }' <<<"$status"; then
        echo "$status" | sed 's/^/    /'
        return 0
      fi
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "$name: not ready after ${READY_S}s (want: epoch >= 1, the worker active on $BACKEND with experts); last moectl status:"
      echo "$status" | sed 's/^/    /'
      tail_log "$LOGS/$name.coordinator.log"; tail_log "$LOGS/$name.worker.log"
      return 1
    fi
    sleep 0.5
  done
}

TOTAL=0
FAILED=0
record() {  # record NAME LAYER TAG T REL_L2 MAX_REL VERDICT [NOTE]
  local line
  line=$(printf '%-22s layer %-2s %-6s T=%-3s rel_l2 %-9s max_rel %-9s %s%s' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${8:+  ($8)}")
  echo "$line" | tee -a "$REPORT"
  TOTAL=$((TOTAL + 1))
  [ "$7" = PASS ] || FAILED=$((FAILED + 1))
}

{
  echo "# whole worker parity: one moe-worker --backend $BACKEND per checkpoint, moectl forward --cluster, wire $WIRE"
  echo "# pass: rel_l2 = ||got-want||/||want|| < $TOL and max_rel = max|got-want|/max|want| < $TOL"
  [ -f "$BUNDLE/MANIFEST.txt" ] && sed 's/^/# bundle: /' "$BUNDLE/MANIFEST.txt"
} | tee "$REPORT"

for ckpt in "${CHECKPOINTS[@]}"; do
  name=$(basename "$ckpt")
  work=$WORK/$name
  mkdir -p "$work"
  echo
  echo "== $name ($(date +%T))"
  if [ $SECONDS -ge "$BUDGET_S" ]; then
    record "$name" - - - - - FAIL "not run: the ${BUDGET_S}s budget (MOE_PARITY_BUDGET_S) is spent"
    continue
  fi
  if ! timeout 120 "$PY" "$CASES_PY" split "$ckpt" "$work" </dev/null >"$work/cases.txt" 2>"$LOGS/$name.cases.log"; then
    tail_log "$LOGS/$name.cases.log"
    record "$name" - - - - - FAIL "cannot read cases.safetensors"
    continue
  fi
  port=$(free_port)
  addr=127.0.0.1:$port
  timeout -k 5 $DAEMON_S "$BIN/moe-coordinator" --listen "$addr" --model "$ckpt" --min-workers 1 \
    </dev/null >"$LOGS/$name.coordinator.log" 2>&1 &
  COORD_PID=$!
  cluster_ok=1
  if ! wait_ready "$addr" 0 "$name"; then
    cluster_ok=0
  else
    timeout -k 5 $DAEMON_S "$BIN/moe-worker" --coordinator "$addr" --listen 127.0.0.1:0 --backend "$BACKEND" \
      --name "parity-$BACKEND" </dev/null >"$LOGS/$name.worker.log" 2>&1 &
    WORKER_PID=$!
    wait_ready "$addr" 1 "$name" || cluster_ok=0
  fi

  while read -r layer tag t; do
    if [ $cluster_ok = 0 ]; then
      record "$name" "$layer" "$tag" "$t" - - FAIL "no cluster: see above"
      continue
    fi
    if ! kill -0 "$WORKER_PID" 2>/dev/null; then
      tail_log "$LOGS/$name.worker.log"
      cluster_ok=0
      record "$name" "$layer" "$tag" "$t" - - FAIL "moe-worker exited"
      continue
    fi
    got=$work/$layer.$tag.got.safetensors
    flog=$LOGS/$name.moectl-forward.log
    echo "--- layer $layer $tag: moectl forward --cluster $addr --layer $layer --wire-dtype $WIRE" >>"$flog"
    rc=0
    timeout -k 5 "$FORWARD_S" "$BIN/moectl" forward --cluster "$addr" --layer "$layer" \
      --input "$work/$layer.$tag.input.safetensors" --output "$got" --wire-dtype "$WIRE" \
      --deadline-ms $(((FORWARD_S - 5) * 1000)) </dev/null >>"$flog" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
      tail_log "$flog" 5
      record "$name" "$layer" "$tag" "$t" - - FAIL "moectl forward exit $rc$([ $rc = 124 ] && echo ": timed out after ${FORWARD_S}s")"
      continue
    fi
    if ! errs=$(timeout 60 "$PY" "$CASES_PY" compare "$got" "$work/$layer.$tag.expected.npy" "$TOL" </dev/null 2>&1); then
      record "$name" "$layer" "$tag" "$t" - - FAIL "compare: $errs"
      continue
    fi
    read -r rel_l2 max_rel verdict <<<"$errs"
    if [ "$verdict" = PASS ]; then
      record "$name" "$layer" "$tag" "$t" "$rel_l2" "$max_rel" PASS
    else
      record "$name" "$layer" "$tag" "$t" "$rel_l2" "$max_rel" FAIL "not below $TOL"
    fi
  done <"$work/cases.txt"
  stop_cluster
done

echo
if [ $FAILED -eq 0 ] && [ $TOTAL -gt 0 ]; then
  echo "PASS: $TOTAL/$TOTAL cases (backend $BACKEND, ${#CHECKPOINTS[@]} checkpoints, tolerance $TOL)" | tee -a "$REPORT"
  exit 0
fi
echo "FAIL: $FAILED of $TOTAL cases failed (backend $BACKEND, ${#CHECKPOINTS[@]} checkpoints, tolerance $TOL; logs at the end of $REPORT)" |
  tee -a "$REPORT"
exit 1
