#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` from the llama-cpp-python sdist that aistack pins, so
# bench/parallel.py compares aistack with the peer on the very same llama.cpp source.
#
#   bench/build_llama_server.sh [--out DIR] [--jobs N]
#
# DIR defaults to ~/.cache/aistack-bench/llama-server-<version> (outside the checkout: the build
# takes about 10 minutes on 2 cores and is kept between runs). Prints the binary's path.
# Built with -DGGML_NATIVE=OFF, as the engine is (the native build crashes in the AMX kernel on
# some CPUs), and CPU only.
set -euo pipefail

VERSION=0.3.36
OUT="${HOME}/.cache/aistack-bench/llama-server-${VERSION}"
JOBS="$(nproc 2>/dev/null || echo 2)"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -x "$OUT/bin/llama-server" ]; then
  echo "$OUT/bin/llama-server"
  exit 0
fi
command -v cmake >/dev/null || { echo "cmake not found: apt-get install cmake" >&2; exit 1; }

CACHE="$(dirname "$OUT")"
mkdir -p "$CACHE"
SDIST="$CACHE/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
  python3 -m pip download -q --no-deps --no-binary :all: -d "$CACHE" "llama-cpp-python==$VERSION" >&2
fi
WORK="$CACHE/build-$VERSION"
rm -rf "$WORK"
mkdir -p "$WORK"
tar xzf "$SDIST" -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$WORK/build" --target llama-server -j "$JOBS" >&2
mkdir -p "$OUT/bin"
cp "$WORK/build/bin/llama-server" "$OUT/bin/"
echo "$VERSION" >"$OUT/VERSION"
rm -rf "$WORK"
echo "$OUT/bin/llama-server"
