#!/bin/sh
# Entry point of the moe-cluster image (ops/Dockerfile): chooses moe-coordinator's model, then runs the
# command. A Hugging Face checkpoint mounted at $MOE_MODELS_DIR (default /models, recognised by its
# config.json) is served with --model; with nothing mounted, the embedded synthetic preset
# $MOE_SYNTHETIC (default "default") is. An explicit MOE_MODEL / MOE_SYNTHETIC or --model / --synthetic
# flag wins. Workers need no choice: the coordinator tells them where the weights are.
set -eu
[ $# -gt 0 ] || { echo "moe-entrypoint: give the command, e.g. moe-coordinator --listen 0.0.0.0:7400" >&2; exit 2; }
models_dir=${MOE_MODELS_DIR:-/models}
case "$(basename "$1")" in
  moe-coordinator)
    explicit=no
    for arg in "$@"; do
      case "$arg" in --model|--model=*|--synthetic|--synthetic=*) explicit=yes ;; esac
    done
    if [ "$explicit" = no ] && [ -z "${MOE_MODEL:-}" ] && [ -z "${MOE_SYNTHETIC:-}" ]; then
      if [ -f "$models_dir/config.json" ]; then
        export MOE_MODEL="$models_dir"
      else
        export MOE_SYNTHETIC=default
      fi
    fi
    ;;
esac
exec "$@"
