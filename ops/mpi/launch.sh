#!/usr/bin/env bash
# Starts a whole moe-cluster with one mpirun: moe-coordinator (rank 0) and N moe-workers on the hosts of a
# hostfile. The workers learn the coordinator's address and their names (rank-N) through MPI; each daemon
# listens on its host's first non-loopback IPv4 address unless --listen is given in the args below.
# SIGTERM / SIGINT to this script stop the job cleanly: it sends SIGUSR1 to mpirun, which forwards it to
# every rank; each stops, MPI_Finalize runs, and the script exits with mpirun's status (0).
#
# Mutual TLS on every connection by default: the daemons get --tls-cert/--tls-key/--tls-ca from the TLS
# folder (node.pem, node.key, ca.pem), made there by ops/tls/make-dev-certs.sh when missing. On several
# hosts that folder must be readable at the same path on each (shared storage, or copied first).
#
# usage: ops/mpi/launch.sh [--hostfile FILE] [--workers N] [--bin DIR] [--tls-dir DIR | --no-tls] -- COORDINATOR_ARGS...
#   e.g. ops/mpi/launch.sh --hostfile ops/mpi/hostfile.example --workers 4 -- --model /models/mixtral
# environment: MOE_WORKER_ARGS (extra moe-worker flags, e.g. "--backend cuda"), MOE_MPIRUN_ARGS (extra
#   mpirun flags, e.g. "--allow-run-as-root --mca btl_tcp_if_include eth0"), MOE_TLS_DIR (the TLS folder;
#   default ~/.local/state/moe-cluster/tls). moectl then needs --tls-cert DIR/node.pem --tls-key
#   DIR/node.key --tls-ca DIR/ca.pem (or MOE_TLS_CERT / MOE_TLS_KEY / MOE_TLS_CA).
set -euo pipefail

hostfile=""
workers=3
bin_dir=""
tls_dir="${MOE_TLS_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/moe-cluster/tls}"
tls=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hostfile) hostfile="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --bin) bin_dir="$2"; shift 2 ;;
    --tls-dir) tls_dir="$2"; shift 2 ;;
    --no-tls) tls=0; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "launch.sh: unknown argument '$1' (coordinator flags go after --)" >&2; exit 2 ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "launch.sh: give the coordinator's model after --, e.g. -- --model DIR or -- --synthetic tiny" >&2
  exit 2
fi
if ! [[ "$workers" =~ ^[1-9][0-9]*$ ]]; then
  echo "launch.sh: --workers must be a positive number, got '$workers'" >&2
  exit 2
fi
if [[ -z "$bin_dir" ]]; then
  if command -v moe-coordinator >/dev/null; then
    bin_dir="$(dirname "$(command -v moe-coordinator)")"
  else
    bin_dir="$(cd "$(dirname "$0")/../.." && pwd)/build/bin"
  fi
fi
for binary in moe-coordinator moe-worker; do
  if [[ ! -x "$bin_dir/$binary" ]]; then
    echo "launch.sh: $bin_dir/$binary not found: build it or pass --bin DIR" >&2
    exit 2
  fi
done

tls_flags=(--tls off)
if [[ $tls -eq 1 ]]; then
  if [[ ! -f "$tls_dir/ca.pem" || ! -f "$tls_dir/node.pem" || ! -f "$tls_dir/node.key" ]]; then
    "$(cd "$(dirname "$0")/.." && pwd)/tls/make-dev-certs.sh" "$tls_dir" node >&2
  fi
  tls_flags=(--tls on --tls-cert "$tls_dir/node.pem" --tls-key "$tls_dir/node.key" --tls-ca "$tls_dir/ca.pem")
  echo "launch.sh: mutual TLS with the certificates in $tls_dir (--no-tls to turn it off)" >&2
fi

command=(mpirun --tag-output)
[[ -n "$hostfile" ]] && command+=(--hostfile "$hostfile")
# shellcheck disable=SC2206  # word splitting of the extra flags is intended
command+=(${MOE_MPIRUN_ARGS:-})
command+=(-np 1 "$bin_dir/moe-coordinator" --min-workers "$workers" "${tls_flags[@]}" "$@")
# shellcheck disable=SC2206
command+=(: -np "$workers" "$bin_dir/moe-worker" "${tls_flags[@]}" ${MOE_WORKER_ARGS:-})

echo "launch.sh: ${command[*]}" >&2
"${command[@]}" &
mpirun_pid=$!
stop() { kill -USR1 "$mpirun_pid" 2>/dev/null || true; }
trap stop TERM INT
status=0
while true; do
  wait "$mpirun_pid" && status=0 || status=$?
  # wait returns early (status > 128) when a trapped signal arrives; keep waiting for mpirun itself.
  if ! kill -0 "$mpirun_pid" 2>/dev/null; then break; fi
done
exit "$status"
