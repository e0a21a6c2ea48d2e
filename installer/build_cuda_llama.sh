#!/usr/bin/env bash
# Build llama.cpp's shared libraries with CUDA, from the same pinned llama-cpp-python
# source as the portable CPU build, into a folder of their own.
#
# Why a separate folder: the CPU build (the llama-cpp-python wheel in the venv) runs on
# every PC; the CUDA build needs an NVIDIA driver. Both builds come from one version,
# so the Python package `llama_cpp` is the CPU wheel's, and the runner points it at
# the CUDA libraries with LLAMA_CPP_LIB_PATH when a GPU is usable (models/runtime/device.py).
#
# Usage:
#   installer/build_cuda_llama.sh [--src DIR|--sdist FILE] [--out DIR] [--arch LIST] [--jobs N]
#     --src    an unpacked llama-cpp-python source tree (default: download the pinned sdist)
#     --sdist  a llama_cpp_python-<version>.tar.gz to unpack
#     --out    where the libraries go (default: <venv>/llama-cuda, next to the CPU build);
#              the runner looks in <venv>/llama-cuda/lib, or in AISTACK_LLAMA_CUDA_DIR
#     --arch   CUDA architectures, e.g. "90" (H100/H200), "86;89" (RTX 30/40);
#              default "native" (the GPU of this PC), or "75;80;86;89;90" for a package
#     --jobs   parallel compile jobs (default: all cores)
#     -- ARGS  more CMake options, e.g. -- -DGGML_CUDA_FA=off (a faster build without flash-attention kernels)
# Needs: CUDA toolkit (nvcc) matching the driver, CMake >= 3.21, a C++17 compiler, ninja (optional).
# Check: the script ends by loading the library and asking llama_supports_gpu_offload().
set -euo pipefail

VERSION=0.3.36
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="" SDIST="" OUT="" ARCH="native" JOBS="$(nproc 2>/dev/null || echo 4)" EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --src) SRC="$2"; shift 2 ;;
    --sdist) SDIST="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --arch) ARCH="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
if [ -z "$OUT" ]; then OUT="$("$PY" -c 'import sys; print(sys.prefix)')/llama-cuda"; fi
command -v nvcc >/dev/null || { echo "nvcc not found: install the CUDA toolkit (or add it to PATH)" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [ -z "$SRC" ]; then
  if [ -z "$SDIST" ]; then
    "$PY" -m pip download --no-deps --no-binary :all: --no-build-isolation -d "$WORK" "llama-cpp-python==$VERSION" >/dev/null
    SDIST="$(ls "$WORK"/llama_cpp_python-"$VERSION".tar.gz)"
  fi
  tar xzf "$SDIST" -C "$WORK"
  SRC="$WORK/llama_cpp_python-$VERSION"
fi
grep -q "^Version: $VERSION\$" "$SRC/PKG-INFO" 2>/dev/null || echo "warning: $SRC is not llama-cpp-python $VERSION" >&2

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
echo "building llama.cpp $VERSION with CUDA for architectures '$ARCH' into $OUT ($JOBS jobs)"
cmake -S "$SRC" -B "$WORK/build" "${GEN[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$WORK/install" -DSKBUILD_PLATLIB_DIR="$WORK/install" \
  -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DGGML_NATIVE=off \
  -DLLAVA_BUILD=off -DLLAMA_BUILD_MTMD=off -DLLAMA_CURL=off -DGGML_CUDA_NCCL=off "${EXTRA[@]}" >"$WORK/configure.log" 2>&1 \
  || { tail -40 "$WORK/configure.log" >&2; exit 1; }
cmake --build "$WORK/build" --config Release -j "$JOBS" >"$WORK/build.log" 2>&1 \
  || { grep -m5 -B2 -A8 "error" "$WORK/build.log" >&2 || tail -40 "$WORK/build.log" >&2; exit 1; }
cmake --install "$WORK/build" >/dev/null

mkdir -p "$OUT/lib"
find "$WORK/install" -name "lib*.so*" -exec cp -a {} "$OUT/lib/" \;
echo "$VERSION" >"$OUT/VERSION"
echo "cuda architectures: $ARCH" >>"$OUT/VERSION"
ls "$OUT/lib" | grep -q "^libllama" || { echo "no libllama in $OUT/lib" >&2; exit 1; }
echo "built: $(ls "$OUT/lib" | tr '\n' ' ')"
echo "use it: LLAMA_CPP_LIB_PATH=$OUT/lib (the runner sets this itself when the GPU is usable)"
