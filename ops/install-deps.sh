#!/usr/bin/env bash
# Installs every Debian package moe-cluster needs to build, test and run, and nothing when all are present.
# Usage: ops/install-deps.sh            (as root, or with sudo available)
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libcapnp-dev capnproto                     # wire protocol
  libboost-dev                               # Boost.Asio (header-only)
  libssl-dev openssl                         # mutual TLS (Boost.Asio SSL), dev certificates
  libucx-dev                                 # UCX transport (--transport ucx): shared memory, RDMA, ...
  prometheus-cpp-dev                         # /metrics
  libgtest-dev libgmock-dev                  # unit tests
  libopenmpi-dev openmpi-bin                 # mpirun bootstrap
  libopenblas-dev                            # CPU expert backend
  nlohmann-json3-dev libcli11-dev            # config / command lines
  prometheus                                 # real Prometheus server + promtool for tests
  python3 python3-venv python3-pip           # peer tests (torch, transformers) in a venv
  iproute2 procps                            # integration tests: processes and ports
  clang libclang-rt-dev                      # fuzz targets (libFuzzer, ASan, UBSan runtimes)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
