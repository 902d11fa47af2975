#!/usr/bin/env bash
# Creates or updates the Python virtual environment that the peer tests (tests/peer/) and the Python
# client (python/, built against its pybind11; tests/python/) run in:
# CPU torch + HF transformers + safetensors + numpy + pycapnp + prometheus-client + pybind11, pinned in
# ops/requirements-test.txt. Idempotent: when the venv already holds exactly that list and imports,
# it returns in a few seconds without touching pip.
#
# torch is installed from PyPI without its declared CUDA dependencies (several GB); see the comment
# at the top of ops/requirements-test.txt. Only when `import torch` then fails (no CUDA toolkit in the
# loader's path) are torch's CUDA runtime libraries below installed as well (about 1.4 GB).
#
# Usage: bash ops/setup-python-env.sh [VENV_DIR]     (default: <repo>/.venv; python: $PYTHON or python3)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv_dir=${1:-$repo_root/.venv}
requirements=$repo_root/ops/requirements-test.txt
base_python=${PYTHON:-python3}

# torch 2.15.0's CUDA runtime libraries (versions from its cuda-toolkit==13.2.2 and
# nvidia-cudnn-cu13 requirements), needed only where the system provides no CUDA 13 toolkit.
TORCH_CUDA_RUNTIME=(
  nvidia-cuda-runtime==13.2.86
  nvidia-cublas==13.4.1.3
  nvidia-cufft==12.2.0.57
  nvidia-cusparse==12.7.10.12
  nvidia-cuda-nvrtc==13.2.86
  nvidia-nvjitlink==13.2.86
  nvidia-cuda-cupti==13.2.86
  nvidia-cudnn-cu13==9.26.0.51
)

log() { echo "setup-python-env: $*"; }
die() { echo "setup-python-env: error: $*" >&2; exit 1; }

venv_python=$venv_dir/bin/python
stamp=$venv_dir/.moe-requirements.sha256
wanted_stamp=$(cat "$requirements" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)

import_check() {
  "$venv_python" - <<'EOF'
import torch, transformers, safetensors, numpy, capnp, prometheus_client, pybind11
x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
assert torch.equal(x @ x.T, torch.tensor([[5.0, 14.0], [14.0, 50.0]])), "torch CPU matmul is wrong"
assert torch.ones(2, dtype=torch.bfloat16).float().sum().item() == 2.0
print(f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {numpy.__version__}")
EOF
}

if [[ -x $venv_python && -f $stamp && $(cat "$stamp") == "$wanted_stamp" ]] && versions=$(import_check 2>/dev/null); then
  log "$venv_dir is up to date: $versions"
  exit 0
fi

if [[ ! -x $venv_python ]]; then
  command -v "$base_python" >/dev/null || die "no '$base_python' on PATH (set PYTHON to a Python 3.10+ interpreter)"
  log "creating $venv_dir with $($base_python --version 2>&1)"
  "$base_python" -m venv "$venv_dir" || die "'$base_python -m venv $venv_dir' failed (on Debian: apt-get install python3-venv)"
fi
rm -f "$stamp"

export PIP_DISABLE_PIP_VERSION_CHECK=1
log "installing $requirements (--no-deps: a complete pinned list)"
"$venv_python" -m pip install --quiet --no-deps --requirement "$requirements" ||
  die "pip install --no-deps -r $requirements failed"

if ! import_check >/dev/null 2>&1; then
  log "torch does not import with the system's CUDA libraries; installing its CUDA runtime wheels"
  "$venv_python" -m pip install --quiet --no-deps "${TORCH_CUDA_RUNTIME[@]}" ||
    die "pip install of torch's CUDA runtime libraries failed: ${TORCH_CUDA_RUNTIME[*]}"
fi

if ! versions=$(import_check 2>&1); then
  echo "$versions" >&2
  die "the packages are installed but do not import (see the Python error above)"
fi
echo "$wanted_stamp" >"$stamp"
log "ready: $versions ($venv_python)"
