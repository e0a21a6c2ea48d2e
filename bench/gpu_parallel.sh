#!/usr/bin/env bash
# Issue 28 (parallel chat sequences) on a lent GPU: the shell side of bench/gpu_parallel.py.
#
#   bench/gpu_parallel.sh build --src DIR --out DIR [--arch 90] [--jobs N] [-- CMAKE ARGS]
#       llama.cpp (DIR: an unpacked llama-cpp-python sdist, or its vendor/llama.cpp) for CUDA in
#       one CMake tree, so ggml-cuda compiles once: the shared libraries the `llama_cpp` package
#       loads (OUT/lib, the folder AISTACK_LLAMA_CUDA_DIR names) and `llama-server` (OUT/bin),
#       linked to those same libraries. Flash-attention kernels off, as bench/gpu_check.py builds
#       (the engine does not ask for them). Runs here (bench/gpu_parallel.py prepare) or there.
#   bench/gpu_parallel.sh device [BENCH ARGS]   (GPUPARALLEL_REHEARSE=DIR: a CPU build stands in, for a rehearsal here)
#       there, from the repository root, the same command in every call: takes what this call
#       carried (.cache/gpuparallel/c<k>/), sets up once (wheels, the CUDA build: the one built
#       here if it loads, else built there), and once every part of the model is there, joins it
#       and runs `bench/gpu_parallel.py bench` (BENCH ARGS go to it). Results in $OUT.
# Never touches the GPU's settings.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BASE="$ROOT/.cache/gpuparallel"
STATE="$BASE/state"  # kept on a warm machine between calls: ignored, and never carried

build() {
  local src="" out="" arch="90" jobs extra=()
  jobs="$(nproc 2>/dev/null || echo 4)"
  while [ $# -gt 0 ]; do
    case "$1" in
      --src) src="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      --arch) arch="$2"; shift 2 ;;
      --jobs) jobs="$2"; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      *) echo "build: unknown option $1" >&2; return 2 ;;
    esac
  done
  [ -d "$src/vendor/llama.cpp" ] && src="$src/vendor/llama.cpp"
  [ -f "$src/CMakeLists.txt" ] && [ -n "$out" ] || { echo "build: --src (llama.cpp source) and --out needed" >&2; return 2; }
  command -v nvcc >/dev/null || export PATH="$PATH:$(dirname "$(find /usr/local /opt -name nvcc -type f 2>/dev/null | head -1)")"
  local tree="$out.build" gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  mkdir -p "$tree" "$out/lib" "$out/bin"  # an existing tree goes on where it stopped
  echo "building llama.cpp for CUDA '$arch' with llama-server into $out ($jobs jobs)"
  local t0=$SECONDS
  # Shared libraries (as llama-cpp-python builds them) found next to each other and from bin/.
  cmake -S "$src" -B "$tree" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DGGML_NATIVE=OFF -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN:$ORIGIN/../lib' "${extra[@]}" \
    >"$tree/configure.log" 2>&1 || { tail -40 "$tree/configure.log" >&2; return 1; }
  cmake --build "$tree" --target llama llama-server -j "$jobs" >"$tree/build.log" 2>&1 \
    || { grep -m5 -B2 -A8 "error" "$tree/build.log" >&2 || tail -40 "$tree/build.log" >&2; return 1; }
  find "$tree/bin" -maxdepth 1 -name "lib*.so*" -exec cp -a {} "$out/lib/" \;
  cp "$tree/bin/llama-server" "$out/bin/"
  printf 'llama.cpp from %s\ncuda architectures: %s\nbuilt in %ss\n' "$src" "$arch" "$((SECONDS - t0))" >"$out/VERSION"
  ls "$out/lib" | grep -q "^libllama" && ls "$out/lib" | grep -q "^libggml-cuda" || { echo "no libllama/libggml-cuda in $out/lib" >&2; return 1; }
  echo "built in $((SECONDS - t0)) s: $(ls "$out/lib" | tr '\n' ' ') bin/llama-server"
}

# There: the CUDA runtime, cuBLAS and the driver where the loader finds them (the toolkit's, PyTorch's wheels',
# the driver's mount), when ldconfig does not know them. Never a forward-compatibility (compat/) or stub copy.
cuda_library_path() {
  local dirs="" name found
  for name in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcuda.so.1; do
    ldconfig -p | grep -q "$name " && continue
    found="$(find /usr/local /opt /usr/lib /usr/lib64 -name "$name" -not -path "*/compat/*" -not -path "*/stubs/*" 2>/dev/null | sort | head -1)"
    [ -n "$found" ] && case ":$dirs:" in *":$(dirname "$found"):"*) ;; *) dirs="$dirs:$(dirname "$found")" ;; esac
  done
  echo "${dirs#:}"
}

# There, once per machine: wheels, the llama_cpp package, the CUDA build. Writes $STATE/env.sh.
setup() {
  local payload="$1"
  mkdir -p "$STATE"
  nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv || true
  python3 --version
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$STATE/site" "$payload"/whl/*.whl || return 1
  tar xJf "$payload/llama-py.tar.xz" -C "$STATE" || return 1  # the llama_cpp package (Python), no library
  local libpath cuda="$STATE/llama-cuda"
  libpath="$(cuda_library_path)"
  echo "library path added: ${libpath:-none}"
  cat >"$STATE/env.sh" <<EOF
export PYTHONPATH="$STATE/site:$STATE/llama-py:$ROOT" PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH="$cuda/lib${libpath:+:$libpath}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export AISTACK_LLAMA_CUDA_DIR="$cuda" LLAMA_CPP_LIB_PATH="$cuda/lib" GPUPARALLEL_SERVER="$cuda/bin/llama-server"
EOF
  if [ -n "${GPUPARALLEL_REHEARSE:-}" ]; then  # here, on the CPU: a CPU build (lib/, bin/llama-server) stands in
    rm -rf "$cuda" && cp -a "$GPUPARALLEL_REHEARSE" "$cuda" && echo "export AISTACK_LLAMA_CPU_DIR=\"$cuda\"" >>"$STATE/env.sh"
    echo "rehearsal: $GPUPARALLEL_REHEARSE stands in for the CUDA build"; return 0
  fi
  # shellcheck source=/dev/null
  . "$STATE/env.sh"
  if [ -f "$payload/llama-cuda.tar.xz" ]; then
    tar xJf "$payload/llama-cuda.tar.xz" -C "$STATE" && cat "$cuda/VERSION"
    if check_build "$cuda"; then echo "prebuilt CUDA build: loads"; return 0; fi
    nvidia-smi -L 2>/dev/null | grep -q "^GPU " || { echo "nvidia-smi lists no GPU: a build here would not help"; return 1; }
    echo "prebuilt CUDA build does not load here: building it here"
    rm -rf "$cuda"
  fi
  local src="$STATE/llama-src"
  rm -rf "$src" && mkdir -p "$src" && tar xJf "$payload/llama-src.tar.xz" -C "$src" --strip-components=1 || return 1
  build --src "$src" --out "$cuda" --arch "${CUDA_ARCH:-90}" --jobs "$(nproc)" >"$OUT/build.log" 2>&1
  local code=$?
  cat "$OUT/build.log" | tail -5
  [ $code -eq 0 ] && check_build "$cuda"
}

check_build() {  # the libraries and llama-server load, and llama.cpp sees the GPU
  local missing
  missing="$(ldd "$1"/lib/*.so "$1/bin/llama-server" 2>/dev/null | grep "not found" | sort -u)"
  [ -n "$missing" ] && { echo "missing libraries: $missing"; return 1; }
  "$1/bin/llama-server" --version 2>&1 | tail -2
  "$1/bin/llama-server" --list-devices 2>&1 | tail -4 | tee "$STATE/devices.txt"
  grep -q "CUDA0" "$STATE/devices.txt" || { echo "llama-server lists no CUDA device"; return 1; }
  python3 -c 'import llama_cpp; ok = llama_cpp.llama_supports_gpu_offload(); print("llama_supports_gpu_offload:", ok); raise SystemExit(0 if ok else 1)'
}

device() {
  OUT="${OUT:-$ROOT/gpuparallel-out}"
  mkdir -p "$OUT" "$STATE/parts"
  exec > >(tee -a "$OUT/device.log") 2>&1
  echo "== $(date -u +%FT%TZ) gpu_parallel device: carried $(ls -d "$BASE"/c* 2>/dev/null | xargs -n1 basename | tr '\n' ' ')"
  local dir
  for dir in "$BASE"/c*/; do  # what this call carried: parts and, once, the setup payload
    [ -d "$dir" ] || continue
    [ -f "$dir/parts.txt" ] && cp "$dir/parts.txt" "$STATE/parts.txt"
    [ -f "$dir/manifest.json" ] && cp "$dir/manifest.json" "$STATE/manifest.json"
    for part in "$dir"/model.part.*; do [ -f "$part" ] && mv "$part" "$STATE/parts/"; done
    if [ -d "$dir/payload" ] && [ ! -f "$STATE/env.sh" ]; then
      local t0=$SECONDS
      setup "$dir/payload" || { echo "SETUP FAILED"; rm -f "$STATE/env.sh"; return 1; }
      echo "setup took $((SECONDS - t0)) s"
    fi
  done
  [ -f "$STATE/env.sh" ] || { echo "NO SETUP on this machine (a fresh one?): run again from the first call's carry"; return 1; }
  # shellcheck source=/dev/null
  . "$STATE/env.sh"
  local want have
  want="$(grep -c . "$STATE/parts.txt" 2>/dev/null || echo 0)"
  have="$(ls "$STATE/parts" | grep -c . || true)"
  echo "model parts here: $have of $want"
  if [ "$want" -eq 0 ] || [ "$have" -lt "$want" ]; then echo "WAITING for more parts"; return 0; fi
  python3 bench/gpu_parallel.py bench --parts "$STATE/parts" --parts-list "$STATE/parts.txt" --manifest "$STATE/manifest.json" --work "$STATE" --out "$OUT" "$@"
}

case "${1:-}" in
  build) shift; build "$@" ;;
  device) shift; device "$@" ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
