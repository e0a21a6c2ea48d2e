"""Issue 28 on a lent GPU: parallel chat sequences with the starter model's real weights.

bench/parallel.py's clients and numbers (aggregate tokens/s, TTFT) against three
servers on one NVIDIA GPU, all layers there, FA kernels off in both builds:

- `aistack`: the aistack server with `AISTACK_LLM_PARALLEL=4` (the GPU default),
- `aistack-n1`: the same with `AISTACK_LLM_PARALLEL=1` (one sequence at a time),
- `llama-server`: llama.cpp's own server, `--parallel 4 -ngl 99 -c 4 x 4096`,
  built from the same llama.cpp source in the same CMake tree as aistack's CUDA
  libraries (bench/gpu_parallel.sh build),

and optionally `raw-gpu` (llama-cpp-python in this process, all layers on the GPU,
clients one after another). The GPU's used memory (NVML) is read before each server
starts and after its model is loaded and warm (N=1 against N=4), and aistack's
/admin/api/status says where the model runs. Checks: aistack's gain at 4 clients
(aggregate at 4 / at 1) at least 2.5, and at least 0.9 x llama-server's.

The lent machine has no network and takes 64 MiB per call, and the starter GGUF is
98 MB: `prepare` cuts it into parts, one per call, beside what the first call needs
(py3.12 wheels of the server's packages, the `llama_cpp` Python package, the CUDA
build made here when this machine has nvcc, and a trimmed llama.cpp source to
build there if that one does not load). Every call runs the same command; the
last one, holding the last part, runs the bench. Calls must follow each other
while the machine is warm (30 s): a fresh machine has lost the earlier parts.

    .venv/bin/python bench/gpu_parallel.py prepare            # here: fills .cache/gpuparallel/c1, c2, ...
    bash bench/gpu_parallel.sh device                         # there, call k carrying .cache/gpuparallel/c<k>
    .venv/bin/python bench/gpu_parallel.py bench --data-dir .cache/test-data --out /tmp/gp \\
        --clients 1,2 --max-tokens 24 --rounds 1              # here: a rehearsal on the CPU build

Results: $OUT/gpu_parallel.json (every number, rewritten after each run), $OUT/device.log,
$OUT/server_logs.txt (and $OUT/build.log when the first call built llama.cpp there).

On the lent machine (the device tool's `run`), one call per folder that `prepare` printed,
each right after the one before (the machine stays warm 30 s):

    run(command="bash bench/gpu_parallel.sh device", carry=[".cache/gpuparallel/c1"], timeout_s=420)
    run(command="bash bench/gpu_parallel.sh device", carry=[".cache/gpuparallel/c2"], timeout_s=60)
    ...  # the last call runs the bench (about 200 s: --budget-s) and needs timeout_s=330

The first call takes about 20 s with the build made here, about 300 s when it must
build there. A call that says "NO SETUP" met a fresh machine: start again from c1.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE = ROOT / ".cache" / "gpuparallel"
LLAMA_VERSION = "0.3.36"
CARRY_LIMIT = 64 << 20  # per call: the working tree and the carried paths together
MARGIN = 3 << 20  # files that change before the call (logs, caches) and rounding
MODEL_ID = "smollm2-135m-instruct"
# The server's packages the lent machine's image lacks (its list: /work/.library/device/KINDS.md), as this venv has them.
WHEELS = ["fastapi==0.165.0", "starlette==1.10.0", "pydantic==2.14.4", "pydantic-core==2.50.5", "pydantic-settings==2.16.3",
          "python-dotenv==1.2.4", "annotated-types==0.8.0", "annotated-doc==0.0.7", "typing-inspection==0.4.5",
          "typing-extensions==4.16.0", "uvicorn==0.55.0", "python-multipart==0.0.34", "platformdirs==4.14.9",
          "fastapi-offline==1.7.7", "diskcache==5.6.3", "opentelemetry-api==1.45.2"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
TARGET_GAIN = 2.5  # aistack at 4 clients / at 1
TARGET_VS_SERVER = 0.9  # aistack's gain / llama-server's


# Here: what travels ---------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> None:
    BASE.mkdir(parents=True, exist_ok=True)
    for old in BASE.glob("c[0-9]*"):
        shutil.rmtree(old)
    payload = BASE / "c1" / "payload"
    payload.mkdir(parents=True)
    src = _source(args.sdist)
    _tar(payload / "llama-py.tar.xz", [(src / "llama_cpp", "llama-py/llama_cpp")], skip=("lib",))
    _trimmed_source(src, payload / "llama-src.tar.xz")
    _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
         *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(payload / "whl"), *WHEELS)
    built = BASE / "llama-cuda"
    if not args.no_build_here and not (built / "bin" / "llama-server").is_file():
        _build_here(src, built, args.jobs)
    if (built / "bin" / "llama-server").is_file() and not args.no_build_here:
        _strip(built)
        _tar(payload / "llama-cuda.tar.xz", [(built, "llama-cuda")])
    model = args.data_dir / "models" / MODEL_ID
    manifest = json.loads((model / "manifest.json").read_text())
    gguf = model / manifest["files"][0]["name"]
    tree = _tree_bytes()
    first = _bytes(BASE / "c1")
    room = [CARRY_LIMIT - MARGIN - tree - first]
    left = gguf.stat().st_size - max(room[0], 0)
    while left > 0:
        room.append(CARRY_LIMIT - MARGIN - tree)
        left -= room[-1]
    if room[0] < 1 << 20:
        raise SystemExit(f"the first call has no room for the model: tree {tree >> 20} MiB + payload {first >> 20} MiB")
    parts = _split(gguf, [max(r, 0) for r in room])
    listing = "".join(f"{name} {size} {digest}\n" for name, size, digest in parts)
    for k, (name, _, _) in enumerate(parts, start=1):
        folder = BASE / f"c{k}"
        folder.mkdir(exist_ok=True)
        shutil.move(str(BASE / name), folder / name)
        (folder / "parts.txt").write_text(listing)
        shutil.copy(model / "manifest.json", folder / "manifest.json")
    print(f"working tree {tree / 2**20:.1f} MiB; per call (limit {CARRY_LIMIT >> 20} MiB):")
    for k in range(1, len(parts) + 1):
        size = _bytes(BASE / f"c{k}")
        print(f"  call {k}: carry ['.cache/gpuparallel/c{k}'], {size / 2**20:.1f} MiB + tree = {(size + tree) / 2**20:.1f} MiB")
    print("each call: bash bench/gpu_parallel.sh device   (the last one runs the bench; results in $OUT)")


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "-q"], check=True)


def _source(sdist: Path | None) -> Path:
    """The unpacked llama-cpp-python sdist under .cache/gpuparallel/src."""
    src = BASE / "src"
    if (src / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        return src
    if sdist is None:
        cached = Path.home() / ".cache" / "aistack-bench" / f"llama_cpp_python-{LLAMA_VERSION}.tar.gz"
        if cached.is_file():
            sdist = cached
        else:
            work = Path(tempfile.mkdtemp())
            _pip("download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", "-d", str(work),
                 f"llama-cpp-python=={LLAMA_VERSION}")
            sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
    shutil.rmtree(src, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=BASE) as tmp, tarfile.open(sdist) as tar:
        tar.extractall(tmp, filter="data")
        shutil.move(str(next(Path(tmp).glob("llama_cpp_python-*"))), src)
    return src


def _tar(target: Path, members: list[tuple[Path, str]], skip: tuple[str, ...] = ()) -> None:
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if any(p in skip for p in parts[2:]) or "__pycache__" in parts else info

    with tarfile.open(target, "w:xz", preset=9) as tar:
        for path, name in members:
            tar.add(path, arcname=name, filter=keep)


def _trimmed_source(src: Path, target: Path) -> None:
    """vendor/llama.cpp without what `cmake --build --target llama llama-server` never reads.

    Every tool's folder stays (tools/CMakeLists.txt adds them all and CMake wants their
    sources to exist); models, docs, tests, the web UI's sources and other backends go.
    """
    llama = src / "vendor" / "llama.cpp"
    drop = {"models", "docs", "tests", "examples", "benches", "media", "pocs", "app", "conversion", ".devops",
            ".github", "skills", "grammars", "prompts", "gguf-py", "tools/ui/src", "tools/ui/tests", "tools/server/tests",
            "tools/server/bench", "tools/mtmd/test-data", "tools/ui/static"}
    backends = {p.relative_to(llama).as_posix() for p in (llama / "ggml" / "src").glob("ggml-*")
                if p.is_dir() and p.name not in ("ggml-cpu", "ggml-cuda")}

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = Path(info.name).relative_to("llama-src").as_posix() if info.name != "llama-src" else ""
        return None if any(rel == d or rel.startswith(d + "/") for d in drop | backends) else info

    with tarfile.open(target, "w:xz", preset=9) as tar:
        tar.add(llama, arcname="llama-src", filter=keep)


def _build_here(src: Path, out: Path, jobs: int) -> None:
    """The CUDA build on this machine: nvcc here, cuBLAS from NVIDIA's wheel, a stub for the driver library."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        print("no nvcc here: the first call builds llama.cpp there (about 200 s on 16 cores)")
        return
    toolkit = _toolkit_root(Path(nvcc))
    tools = BASE / "toolchain"
    tools.mkdir(exist_ok=True)
    cmake = [f"-DCMAKE_CUDA_COMPILER={toolkit / 'bin' / 'nvcc'}", f"-DCUDAToolkit_ROOT={toolkit}"]
    links: list[Path] = []
    if not any((toolkit / d / "libcublas.so").exists() for d in ("lib64", "lib")):  # a toolkit from NVIDIA's wheels
        cublas = tools / "cublas"
        if not (cublas / "lib" / "libcublas.so.13").exists():
            wheel_dir = tools / "whl"
            _pip("download", "--no-deps", "--only-binary=:all:", *[a for p in PLATFORMS for a in ("--platform", p)],
                 "--python-version", "3.12", "-d", str(wheel_dir), "nvidia-cublas==13.0.0.19")
            import zipfile

            with zipfile.ZipFile(next(wheel_dir.glob("nvidia_cublas-*.whl"))) as archive:
                archive.extractall(tools / "cublas-wheel")
            shutil.rmtree(cublas, ignore_errors=True)
            shutil.move(str(tools / "cublas-wheel" / "nvidia" / "cu13"), cublas)
            shutil.rmtree(tools / "cublas-wheel")
            shutil.rmtree(wheel_dir)
        include = f"-I{cublas / 'include'}"
        cmake += [f"-DCUDA_cublas_LIBRARY={cublas / 'lib' / 'libcublas.so.13'}",
                  f"-DCUDA_cublasLt_LIBRARY={cublas / 'lib' / 'libcublasLt.so.13'}",
                  f"-DCMAKE_CUDA_FLAGS={include}", f"-DCMAKE_CXX_FLAGS={include}", f"-DCMAKE_C_FLAGS={include}"]
        links.append(cublas / "lib")
    if not any((toolkit / d / "stubs" / "libcuda.so").exists() for d in ("lib64", "lib")):
        stub = tools / "stubs"
        _driver_stub(toolkit / "include", stub)
        cmake.append(f"-DCUDA_cuda_driver_LIBRARY={stub / 'libcuda.so'}")
        links.append(stub)
    if links:  # the linker checks the libraries' own needs when it links llama-server
        link = "-Wl,-rpath-link," + ":".join(map(str, links))
        cmake += [f"-DCMAKE_EXE_LINKER_FLAGS={link}", f"-DCMAKE_SHARED_LINKER_FLAGS={link}"]
    print(f"building llama.cpp for CUDA sm_90 here ({jobs} jobs; about 30 min on 2 cores)", flush=True)
    subprocess.run(["bash", str(ROOT / "bench" / "gpu_parallel.sh"), "build", "--src", str(src), "--out", str(out),
                    "--arch", "90", "--jobs", str(jobs), "--", *cmake], check=True)


def _toolkit_root(nvcc: Path) -> Path:
    """The CUDA toolkit's folder, through wrappers (`exec /usr/local/cuda-13.0/bin/nvcc "$@"`)."""
    path = nvcc.resolve()
    if path.stat().st_size < 4096:
        for word in path.read_text(errors="replace").split():
            if word.endswith("/nvcc") and Path(word).is_file():
                path = Path(word).resolve()
    return path.parent.parent


def _driver_stub(include: Path, folder: Path) -> None:
    """libcuda.so.1 with every driver function cuda.h declares, for the linker only (the machine's driver runs)."""
    if (folder / "libcuda.so").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    header = subprocess.run(["gcc", "-E", "-P", f"-I{include}", "-x", "c", "-"], input="#include <cuda.h>\n",
                            capture_output=True, text=True, check=True).stdout
    import re

    names = sorted(set(re.findall(r"\b(cu[A-Z][A-Za-z0-9_]*)\s*\(", header)))
    (folder / "stub.c").write_text("".join(f"int {name}(void) {{ return 999; }}\n" for name in names))
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / "libcuda.so"), str(folder / "stub.c"),
                    "-Wl,-soname,libcuda.so.1"], check=True)
    (folder / "libcuda.so.1").unlink(missing_ok=True)
    (folder / "libcuda.so.1").symlink_to("libcuda.so")


def _strip(built: Path) -> None:
    if shutil.which("strip"):
        files = [str(p) for p in (built / "lib").glob("lib*.so*") if p.is_file() and not p.is_symlink()]
        subprocess.run(["strip", "--strip-unneeded", *files, str(built / "bin" / "llama-server")], check=False)


def _tree_bytes() -> int:
    """What travels besides the carried paths: tracked files and untracked ones git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _split(gguf: Path, room: list[int]) -> list[tuple[str, int, str]]:
    """Cut the GGUF into parts of at most room[k] bytes under BASE: (name, size, sha256) each."""
    parts = []
    with gguf.open("rb") as f:
        for k, size in enumerate(room):
            data = f.read(size)
            if not data:
                break
            name = f"model.part.{k + 1:02d}"
            (BASE / name).write_bytes(data)
            parts.append((name, len(data), hashlib.sha256(data).hexdigest()))
    return parts


# There: the model, the servers, the numbers ---------------------------------------------------
def join_model(parts_dir: Path, listing: Path, manifest_file: Path, data: Path) -> Path:
    """Lay the model out as aistack finds an installed one: <data>/models/<id>/{<gguf>, manifest.json}."""
    manifest = json.loads(manifest_file.read_text())
    entry = manifest["files"][0]
    folder = data / "models" / manifest["id"]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / entry["name"]
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for line in listing.read_text().split("\n"):
            if not line.strip():
                continue
            name, size, sha = line.split()
            data_part = (parts_dir / name).read_bytes()
            if len(data_part) != int(size) or hashlib.sha256(data_part).hexdigest() != sha:
                raise SystemExit(f"part {name} is damaged")
            out.write(data_part)
            digest.update(data_part)
    if digest.hexdigest() != entry["sha256"]:
        raise SystemExit("the joined model's sha256 is not the manifest's")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return target


class Report:
    """Every number so far, rewritten to $OUT/gpu_parallel.json after each step."""

    def __init__(self, out: Path, config: dict[str, Any]):
        self.path = out / "gpu_parallel.json"
        out.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, Any] = {"config": config, "gpu": None, "build": None, "servers": [], "runs": [],
                                     "checks": [], "targets": [], "notes": []}
        self.started = time.monotonic()

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.path.write_text(json.dumps(self.data, indent=1))


def gpu_used() -> int | None:
    from models.hardware.gpu import default_probe

    return default_probe().read().memory_used_bytes


def mib(value: int | None) -> int | None:
    return None if value is None else round(value / 2**20)


def settle_vram(baseline: int | None, timeout: float = 15) -> int | None:
    """After a server stops: NVML until used memory is back within 64 MiB of the baseline (bounded)."""
    deadline = time.monotonic() + timeout
    used = gpu_used()
    while baseline is not None and used is not None and used > baseline + (64 << 20) and time.monotonic() < deadline:
        time.sleep(0.2)
        used = gpu_used()
    return used


@contextmanager
def aistack_server(data: Path, parallel: int) -> Iterator[Any]:
    from bench.harness import ServerProcess

    server = ServerProcess(data, env={"AISTACK_LLM_PARALLEL": str(parallel)})
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def llama_server(binary: Path, model_file: Path, parallel: int, threads: int, context: int, log_path: Path,
                 gpu_layers: int) -> Iterator[str]:
    """llama.cpp's server as bench/parallel.py starts it, with -ngl (all layers on the GPU)."""
    from bench.harness import free_port
    from bench.parallel import _wait_healthy, stop_process

    port = free_port()
    cmd = [str(binary), "-m", str(model_file), "--parallel", str(parallel), "-c", str(parallel * context), "-t", str(threads),
           "-ngl", str(gpu_layers), "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            if not _wait_healthy(proc, f"http://127.0.0.1:{port}/health"):
                raise RuntimeError(f"llama-server did not start:\n{log_path.read_text(errors='replace')[-1500:]}")
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(proc)


def log_lines(text: str, words: tuple[str, ...], limit: int = 40) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if any(w in line.lower() for w in words)]
    return lines[:limit]


GPU_WORDS = ("offload", "cuda", "gpu", "vram", "n_parallel", "n_ctx", "slots", "flash", "kv", "layers", "device")


def status_row(url: str) -> dict[str, Any] | None:
    import httpx

    try:
        rows = httpx.get(url + "/admin/api/status", timeout=10).json()["models"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    row = next((r for r in rows if r.get("id") == MODEL_ID), None)
    return row


def end_tokens_isolated(model_file: Path) -> tuple[list[int], int]:
    """bench/parallel.py's end tokens, read in a spawned process: this one never opens the GPU."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        eog, prompt = pool.apply(_end_tokens, (str(model_file),))
    return list(eog), int(prompt)


def _end_tokens(model_file: str) -> tuple[list[int], int]:
    from bench.parallel import end_tokens

    return end_tokens(Path(model_file))


class Bench:
    def __init__(self, args: argparse.Namespace, report: Report, model_file: Path, data: Path):
        from bench import parallel as p

        self.p = p
        self.args = args
        self.report = report
        self.model_file = model_file
        self.data = data
        self.threads = p.physical_cores()
        self.eog, self.prompt_tokens = end_tokens_isolated(model_file)
        self.runs: list[Any] = []
        self.logs: list[str] = []
        report.data["config"].update(threads=self.threads, banned_tokens=self.eog, prompt_tokens=self.prompt_tokens,
                                     sampling=p.SAMPLING, context_per_sequence=p.CONTEXT, model=model_file.name,
                                     model_bytes=model_file.stat().st_size)

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.report.started)

    def _requests(self, system: str, round_: int, clients: int) -> list[Any]:
        return self.p.requests_for(f"Tale {round_ + 1}.{clients}", clients)  # the same prompts for every system

    def measure(self, system: str, url: str, counts: list[int], round_: int, extra: dict[str, Any]) -> None:
        p = self.p
        for clients in counts:
            bodies = [p.http_body(r, self.args.max_tokens, self.eog, extra) for r in self._requests(system, round_, clients)]
            run = p.Run(system, clients, round_, p.run_clients(url, bodies))
            self.runs.append(run)
            p.progress(run)
            self.report.data["runs"].append(run.summary())
            self.report.save()

    def warm(self, name: str, url: str, extra: dict[str, Any]) -> None:
        import httpx

        p = self.p
        with httpx.Client(timeout=600) as http:
            warm = p.stream_once(http, url, p.http_body(p.Request(p.messages("Warm-up", 0), 0), 16, self.eog, extra), 0)
        if warm.status != "answered":
            raise RuntimeError(f"{name} did not answer the warm-up request: {warm.error}")

    def aistack(self, system: str, parallel: int, counts: list[int], round_: int) -> None:
        base = gpu_used()
        t0 = time.monotonic()
        with aistack_server(self.data, parallel) as server:
            self.warm(system, server.url, {})
            loaded = gpu_used()
            row = status_row(server.url)
            info: dict[str, Any] = {"system": system, "round": round_, "parallel_env": parallel,
                                    "load_and_warm_s": round(time.monotonic() - t0, 2), "vram_before_mib": mib(base),
                                    "vram_loaded_mib": mib(loaded),
                                    "vram_added_mib": None if base is None or loaded is None else mib(loaded - base),
                                    "status_row": row}
            self.report.data["servers"].append(info)
            self.report.save()
            print(f"  {system}: status {json.dumps({k: (row or {}).get(k) for k in ('device', 'device_detail', 'slots', 'vram_bytes')})}, "
                  f"VRAM +{info['vram_added_mib']} MiB", flush=True)
            self.measure(system, server.url, counts, round_, {})
            info["vram_after_runs_mib"] = mib(gpu_used())
            text = server.log()
        info["log_lines"] = log_lines(text, GPU_WORDS)
        info["vram_after_stop_mib"] = mib(settle_vram(base))
        self.logs.append(f"==== {system} round {round_ + 1} (server log)\n{text[-20000:]}")
        self.report.save()

    def llama_server(self, counts: list[int], round_: int) -> None:
        binary = self.args.llama_server
        base = gpu_used()
        t0 = time.monotonic()
        log_path = self.args.work / f"llama-server-{round_}.log"
        with llama_server(binary, self.model_file, self.args.parallel, self.threads, self.p.CONTEXT, log_path,
                          self.args.server_gpu_layers) as url:
            self.warm("llama-server", url, {"ignore_eos": True})
            loaded = gpu_used()
            info: dict[str, Any] = {"system": "llama-server", "round": round_, "parallel": self.args.parallel,
                                    "binary": str(binary), "load_and_warm_s": round(time.monotonic() - t0, 2),
                                    "vram_before_mib": mib(base), "vram_loaded_mib": mib(loaded),
                                    "vram_added_mib": None if base is None or loaded is None else mib(loaded - base)}
            self.report.data["servers"].append(info)
            print(f"  llama-server: VRAM +{info['vram_added_mib']} MiB", flush=True)
            self.measure("llama-server", url, counts, round_, {"ignore_eos": True})
            info["vram_after_runs_mib"] = mib(gpu_used())
        text = log_path.read_text(errors="replace")
        info["log_lines"] = log_lines(text, GPU_WORDS)
        info["vram_after_stop_mib"] = mib(settle_vram(base))
        self.logs.append(f"==== llama-server round {round_ + 1}\n{text[-20000:]}")
        self.report.save()

    def raw(self, round_: int) -> None:
        """llama-cpp-python in this process with all layers on the GPU, one client (last: it keeps a CUDA context here)."""
        import llama_cpp

        original = llama_cpp.Llama

        class OnGpu(original):  # type: ignore[misc,valid-type]
            def __init__(self, *a: Any, **kw: Any) -> None:
                kw.setdefault("n_gpu_layers", -1)
                super().__init__(*a, **kw)

        llama_cpp.Llama = OnGpu  # type: ignore[misc]
        out: list[Any] = []
        try:
            plan = [(1, self._requests("raw-gpu", round_, 1))]
            call = (self.model_file, self.threads, self.eog, plan, round_, self.args.max_tokens)
            run_raw: Any = self.p.run_raw
            if "out" in inspect.signature(run_raw).parameters:
                run_raw(*call, out)
            else:  # bench/parallel.py before it took `out`
                out = list(run_raw(*call))
        finally:
            llama_cpp.Llama = original  # type: ignore[misc]
        for run in out:
            run.system = "raw-gpu"
            self.runs.append(run)
            self.report.data["runs"].append(run.summary())
        self.report.save()


def bench(args: argparse.Namespace) -> int:
    out: Path = args.out
    args.work.mkdir(parents=True, exist_ok=True)
    config = {"max_tokens": args.max_tokens, "parallel": args.parallel, "clients": args.clients, "clients_n1": args.clients_n1,
              "rounds": args.rounds, "budget_s": args.budget_s, "systems": args.systems}
    report = Report(out, config)
    from models.hardware.gpu import default_probe

    reading = default_probe().read()
    report.data["gpu"] = {k: v for k, v in reading.to_json().items() if k != "processes"}
    cuda_dir = os.environ.get("AISTACK_LLAMA_CUDA_DIR")
    if cuda_dir and (Path(cuda_dir) / "VERSION").is_file():
        report.data["build"] = (Path(cuda_dir) / "VERSION").read_text().strip().splitlines()
    if args.parts is not None:
        data = args.work / "data"
        t0 = time.monotonic()
        model_file = join_model(args.parts, args.parts_list, args.manifest, data)
        report.data["notes"].append(f"model joined from {len(list(args.parts.iterdir()))} parts, sha256 checked, "
                                    f"in {time.monotonic() - t0:.1f} s")
    else:
        data = args.data_dir
        from bench.parallel import model_file_of

        model_file = model_file_of(data)
    report.save()
    if args.llama_server is None and os.environ.get("GPUPARALLEL_SERVER"):
        args.llama_server = Path(os.environ["GPUPARALLEL_SERVER"])
    systems = [s for s in args.systems.split(",") if s]
    if "llama-server" in systems and (args.llama_server is None or not args.llama_server.is_file()):
        report.data["notes"].append(f"llama-server skipped: no binary ({args.llama_server})")
        systems.remove("llama-server")
    b = Bench(args, report, model_file, data)
    print(f"model {model_file.name}, {b.threads} threads, parallel {args.parallel}, {args.max_tokens} tokens per answer, "
          f"prompts of ~{b.prompt_tokens} tokens, GPU {reading.name or reading.reason}, systems {systems}", flush=True)
    counts = [int(c) for c in args.clients.split(",")]
    counts_n1 = [int(c) for c in args.clients_n1.split(",")]
    durations: list[float] = []
    try:
        for round_ in range(args.rounds):
            if round_ > 0 and durations and b.left() < 1.2 * max(durations):
                report.data["notes"].append(f"stopped after {round_} round(s): {b.left():.0f} s of the budget left")
                break
            t0 = time.monotonic()
            for system in systems:
                try:
                    if system == "aistack":
                        b.aistack("aistack", args.parallel, counts, round_)
                    elif system == "llama-server":
                        b.llama_server(counts, round_)
                    elif system == "aistack-n1":
                        b.aistack("aistack-n1", 1, counts_n1, round_)
                except Exception as exc:  # noqa: BLE001 - recorded; the other systems still run
                    report.data["notes"].append(f"{system} round {round_ + 1} failed: {type(exc).__name__}: {exc}"[:3000])
                    print(f"  {system} failed: {exc}", flush=True)
                report.save()
            durations.append(time.monotonic() - t0)
        if "raw-gpu" in systems and b.left() > 20:
            try:
                b.raw(0)
            except Exception as exc:  # noqa: BLE001
                report.data["notes"].append(f"raw-gpu failed: {type(exc).__name__}: {exc}"[:3000])
    except KeyboardInterrupt:
        report.data["notes"].append("interrupted")
    finally:
        (out / "server_logs.txt").write_text("\n\n".join(b.logs))
        summarize(b, report)
    return 0


def summarize(b: Bench, report: Report) -> None:
    p = b.p
    runs = b.runs
    if runs:
        p.table(runs)
    report.data["checks"] = p.checks(runs)

    def agg(system: str, clients: int) -> float | None:
        return p.median_of(runs, system, clients, lambda r: r.aggregate or None)

    def ttft(system: str, clients: int) -> float | None:
        return p.median_of(runs, system, clients, lambda r: r.ttft)

    def ratio(a: float | None, c: float | None) -> float | None:
        return a / c if a is not None and c else None

    gain = ratio(agg("aistack", 4), agg("aistack", 1))
    peer = ratio(agg("llama-server", 4), agg("llama-server", 1))
    versus = ratio(gain, peer)
    targets: list[dict[str, Any]] = [
        {"check": f"aistack (N={b.args.parallel}) gain at 4 clients >= {TARGET_GAIN}", "value": gain,
         "pass": None if gain is None else gain >= TARGET_GAIN},
        {"check": "llama-server gain at 4 clients", "value": peer, "pass": None},
        {"check": f"aistack gain / llama-server gain at 4 clients >= {TARGET_VS_SERVER}", "value": versus,
         "pass": None if versus is None else versus >= TARGET_VS_SERVER},
        {"check": "aistack-n1 gain at 4 clients (one sequence at a time)", "value": ratio(agg("aistack-n1", 4), agg("aistack-n1", 1)),
         "pass": None},
    ]
    vram: dict[str, list[int | None]] = {}
    for server in report.data["servers"]:
        vram.setdefault(server["system"], []).append(server.get("vram_added_mib"))
    summary = {f"{s}@{n}": {"aggregate_tok_s": agg(s, n), "ttft_ms": None if ttft(s, n) is None else 1000 * ttft(s, n)}  # type: ignore[operator]
               for s in ("aistack", "aistack-n1", "llama-server", "raw-gpu") for n in (1, 2, 4, 8) if agg(s, n) is not None}
    report.data["targets"] = targets
    report.data["summary"] = {"medians": summary, "vram_added_mib": vram}
    print()
    for t in targets:
        mark = {True: "PASS", False: "FAIL", None: "    "}[t["pass"]]
        print(f"{mark}  {t['check']}: {'n/a' if t['value'] is None else format(t['value'], '.3f')}")
    print(f"VRAM added after load and warm-up (MiB): {json.dumps(vram)}")
    for note in report.data["notes"]:
        print(f"note: {note}")
    report.save()
    print(f"wrote {report.path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="here: fill .cache/gpuparallel/c1, c2, ... (one folder per call)")
    prep.add_argument("--sdist", type=Path, help=f"llama_cpp_python-{LLAMA_VERSION}.tar.gz (default: the bench cache, else pip)")
    prep.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "test-data", help="where the starter model is installed")
    prep.add_argument("--no-build-here", action="store_true", help="carry no CUDA build: the first call builds it there")
    prep.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    run = sub.add_parser("bench", help="the measurements (there, from gpu_parallel.sh device; or here as a rehearsal)")
    run.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpuparallel-out")))
    run.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gpuparallel")
    run.add_argument("--parts", type=Path, help="the model's parts (there)")
    run.add_argument("--parts-list", type=Path, help="parts.txt: name, size and sha256 of each part")
    run.add_argument("--manifest", type=Path, help="the model's manifest.json (with --parts)")
    run.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "test-data", help="an installed model (without --parts)")
    run.add_argument("--systems", default="aistack,llama-server,aistack-n1,raw-gpu", help="of aistack, llama-server, aistack-n1, raw-gpu")
    run.add_argument("--clients", default="1,2,4,8", help="client counts for aistack (N=parallel) and llama-server")
    run.add_argument("--clients-n1", default="1,4", help="client counts for aistack with AISTACK_LLM_PARALLEL=1")
    run.add_argument("--max-tokens", type=int, default=256)
    run.add_argument("--parallel", type=int, default=4)
    run.add_argument("--rounds", type=int, default=3, help="at most; a round starts only while the budget lasts")
    run.add_argument("--budget-s", type=float, default=200, help="no new round after this many seconds (estimated)")
    run.add_argument("--llama-server", type=Path, help="the llama-server binary (default: $GPUPARALLEL_SERVER)")
    run.add_argument("--server-gpu-layers", type=int, default=99, help="llama-server's -ngl")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args)
        return 0
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
