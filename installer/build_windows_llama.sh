#!/usr/bin/env bash
# Cross-compile llama.cpp's Windows DLLs (portable CPU build) on Linux with Debian's mingw-w64,
# from the same pinned llama-cpp-python source as every other build.
#
# Why: PyPI has no Windows wheel of llama-cpp-python, so a Windows build of aistack made on
# Linux (under Wine, `make test-windows`) would have no chat. The DLLs end in the layout the
# CUDA build uses (<out>/lib/llama.dll, ggml*.dll, plus the three mingw runtime DLLs), and the
# unchanged `llama_cpp` package loads them through LLAMA_CPP_LIB_PATH, which the runner sets
# (models/hardware/device_choice.py, `llama_cpu_lib`). release.yml's native MSVC builds end in the same
# layout, so one runner code path serves all of them.
#
# Usage:
#   installer/build_windows_llama.sh [--src DIR|--sdist FILE] --out DIR [--jobs N]
#     --src    an unpacked llama-cpp-python source tree (default: download the pinned sdist)
#     --sdist  a llama_cpp_python-<version>.tar.gz to unpack
#     --out    where the DLLs go: DIR/lib/*.dll, DIR/VERSION; DIR/python/llama_cpp is the package's
#              pure-Python part from the same source, for a Windows Python that has no wheel of it
#     --jobs   parallel compile jobs (default: all cores)
# Needs: g++-mingw-w64-x86-64-posix (the posix thread model: llama.cpp uses std::thread), cmake.
# Takes about 5 minutes on 2 cores.
set -euo pipefail

VERSION=0.3.36
SRC="" SDIST="" OUT="" JOBS="$(nproc 2>/dev/null || echo 4)"
while [ $# -gt 0 ]; do
  case "$1" in
    --src) SRC="$2"; shift 2 ;;
    --sdist) SDIST="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "--out DIR is needed" >&2; exit 2; }
CC=x86_64-w64-mingw32-gcc-posix CXX=x86_64-w64-mingw32-g++-posix
command -v "$CXX" >/dev/null || { echo "$CXX not found: apt-get install g++-mingw-w64-x86-64-posix" >&2; exit 1; }
command -v cmake >/dev/null || { echo "cmake not found" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [ -z "$SRC" ]; then
  if [ -z "$SDIST" ]; then
    python3 -m pip download -q --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$VERSION" >/dev/null
    SDIST="$(ls "$WORK"/llama_cpp_python-"$VERSION".tar.gz)"
  fi
  tar xzf "$SDIST" -C "$WORK"
  SRC="$WORK/llama_cpp_python-$VERSION"
fi
grep -q "^Version: $VERSION\$" "$SRC/PKG-INFO" 2>/dev/null || echo "warning: $SRC is not llama-cpp-python $VERSION" >&2

# Debian 12's mingw headers declare ThreadPowerThrottling but not its state struct (Windows 11 SDK):
# declare it, so ggml keeps the call that stops Windows 11 from parking its threads' cores.
cat >"$WORK/power_throttling.h" <<'EOF'
#pragma once
#include <windows.h>
#ifndef THREAD_POWER_THROTTLING_CURRENT_VERSION
typedef struct _THREAD_POWER_THROTTLING_STATE { ULONG Version; ULONG ControlMask; ULONG StateMask; } THREAD_POWER_THROTTLING_STATE;
#define THREAD_POWER_THROTTLING_CURRENT_VERSION 1
#define THREAD_POWER_THROTTLING_EXECUTION_SPEED 0x1
#endif
EOF

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
echo "cross-compiling llama.cpp $VERSION for Windows x64 into $OUT ($JOBS jobs)"
# Only the `llama` target: `common` pulls in cpp-httplib, which needs Windows 10 headers that mingw lacks.
cmake -S "$SRC" -B "$WORK/build" "${GEN[@]}" \
  -DCMAKE_SYSTEM_NAME=Windows -DCMAKE_SYSTEM_PROCESSOR=x86_64 \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_RC_COMPILER=x86_64-w64-mingw32-windres \
  -DCMAKE_C_FLAGS="-include $WORK/power_throttling.h" -DCMAKE_CXX_FLAGS="-include $WORK/power_throttling.h" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF \
  -DLLAVA_BUILD=off -DLLAMA_BUILD_MTMD=off -DLLAMA_CURL=off -DLLAMA_BUILD_COMMON=off \
  -DLLAMA_BUILD_TESTS=off -DLLAMA_BUILD_EXAMPLES=off -DLLAMA_BUILD_TOOLS=off -DLLAMA_BUILD_SERVER=off \
  >"$WORK/configure.log" 2>&1 || { tail -40 "$WORK/configure.log" >&2; exit 1; }
cmake --build "$WORK/build" --config Release --target llama -j "$JOBS" >"$WORK/build.log" 2>&1 \
  || { grep -m5 -B2 -A8 "error" "$WORK/build.log" >&2 || tail -40 "$WORK/build.log" >&2; exit 1; }

rm -rf "$OUT/lib" "$OUT/python"
mkdir -p "$OUT/lib" "$OUT/python"
find "$WORK/build" -name "*.dll" -exec cp {} "$OUT/lib/" \;
for dll in libstdc++-6.dll libgcc_s_seh-1.dll libwinpthread-1.dll; do
  found="$("$CXX" -print-file-name="$dll")"
  [ -f "$found" ] || found="$(find /usr/lib/gcc/x86_64-w64-mingw32 /usr/x86_64-w64-mingw32 -name "$dll" | grep posix -m1 || find /usr/x86_64-w64-mingw32 -name "$dll" | head -1)"
  [ -f "$found" ] || { echo "mingw runtime $dll not found" >&2; exit 1; }
  cp "$found" "$OUT/lib/"
done
cp -r "$SRC/llama_cpp" "$OUT/python/"
rm -rf "$OUT/python/llama_cpp/lib"
echo "$VERSION" >"$OUT/VERSION"
echo "windows x64, mingw-w64, GGML_NATIVE=OFF" >>"$OUT/VERSION"
ls "$OUT/lib" | grep -q "^llama.dll$\|^libllama.dll$" || { echo "no llama.dll in $OUT/lib" >&2; ls "$OUT/lib" >&2; exit 1; }
echo "built: $(ls "$OUT/lib" | tr '\n' ' ')"
