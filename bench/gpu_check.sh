#!/usr/bin/env bash
# The GPU check's device side (see bench/gpu_check.py): run from the repository root on the lent
# GPU machine, with .gpucheck carried (made here by `python bench/gpu_check.py prepare`).
# Writes results.json, log.txt and build.log to $OUT. Never touches the GPU's settings.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpucheck-out}"
mkdir -p "$OUT" /tmp/gpucheck
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv || true
command -v nvcc >/dev/null || export PATH="$PATH:$(dirname "$(find /usr/local /opt -name nvcc -type f 2>/dev/null | head -1)")"
nvcc --version | tail -2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpucheck/whl/*.whl || exit 1
tar xJf .gpucheck/llama-src.tar.xz -C /tmp/gpucheck
# CTranslate2's wheel is built for CUDA 12 and opens libcublas.so.12; where only CUDA 13's cuBLAS
# is installed, offer it under the old name (same API for what CTranslate2 calls).
shim=/tmp/gpucheck/cublas-shim; mkdir -p "$shim"
if ! ldconfig -p | grep -q "libcublas.so.12"; then
  for name in libcublas libcublasLt; do
    found="$(find /opt /usr/local /usr/lib \( -name "$name.so.12" -o -name "$name.so.13" \) 2>/dev/null | sort | head -1)"
    [ -n "$found" ] && ln -sf "$found" "$shim/$name.so.12" && echo "shim: $shim/$name.so.12 -> $found"
  done
fi
export LD_LIBRARY_PATH="$shim:${LD_LIBRARY_PATH:-}"
export PYTHONPATH="/tmp/site:$PWD/.gpucheck/stubs:/tmp/gpucheck/llama-src:$PWD" PYTHONUNBUFFERED=1 GPUCHECK_WORK=/tmp/gpucheck
python3 bench/gpu_check.py device --out "$OUT" "$@"
code=$?
nvidia-smi --query-gpu=memory.used --format=csv || true
exit $code
