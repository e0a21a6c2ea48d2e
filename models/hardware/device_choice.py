"""Where each engine runs, decided in the runner process before the engine loads.

The runner reads the GPU (models.hardware.gpu), asks the engine's own library what it
can use (`EngineCaps`), sizes the model (models.hardware.vram), and writes the decision
into the spec the engine is built from: `device`, `compute_type`, `gpu_layers`,
`device_detail` ("24/32 layers on GPU") and `device_reason` (why not all on the
GPU, in words). Never a silent CPU fallback: every CPU choice on a machine
with an NVIDIA GPU carries its reason, and the status page shows it.

- piper: always the CPU (ONNX Runtime's GPU package cannot sit beside the CPU one).
- faster-whisper (CTranslate2): float16 on the GPU; int8_float16 when VRAM is
  short; the CPU when even that does not fit or CTranslate2 sees no GPU.
- llama.cpp: the CUDA build (picked with LLAMA_CPP_LIB_PATH, set here before
  `llama_cpp` is imported) with as many layers as fit; the portable CPU build
  when there is no CUDA build or no usable GPU. The CPU build is the one inside
  the `llama_cpp` package (a Linux wheel), or a `llama-cpu/lib` folder of its own
  where the package came without one (Windows: installer/build_windows_llama.sh).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from models.hardware import vram
from models.hardware.gpu import GpuProbe, GpuReading

log = logging.getLogger("aistack.device")
DEFAULT_RESERVE_BYTES = 512 << 20  # VRAM left for the desktop and other programs
LLAMA_CUDA_DIR_ENV = "AISTACK_LLAMA_CUDA_DIR"
LLAMA_CPU_DIR_ENV = "AISTACK_LLAMA_CPU_DIR"


@dataclass(frozen=True)
class Choice:
    device: str  # "cpu" | "cuda"
    compute_type: str | None = None  # CTranslate2 only
    gpu_layers: int | None = None  # llama.cpp only: -1 all, 0 none, else that many
    detail: str | None = None  # "24/32 layers on GPU", "float16", ...
    reason: str | None = None  # why not (all of) it on the GPU
    llama_lib: str | None = None  # the CUDA build's folder, for LLAMA_CPP_LIB_PATH
    slots: int | None = None  # llama.cpp only: sequences decoded together

    def to_spec(self) -> dict[str, Any]:
        spec = {"device": self.device, "compute_type": self.compute_type, "gpu_layers": self.gpu_layers,
                "device_detail": self.detail, "device_reason": self.reason}
        return spec if self.slots is None else {**spec, "slots": self.slots}


class EngineCaps(Protocol):
    """What the engines' own libraries say they can use (tests pass a fake)."""

    def ct2_cuda_devices(self) -> int: ...

    def llama_cuda_lib(self) -> Path | None: ...

    def llama_cpu_lib(self) -> Path | None: ...


class InstalledCaps:
    """The real libraries: CTranslate2's device count and the CUDA llama.cpp build on disk."""

    def ct2_cuda_devices(self) -> int:
        try:
            import ctranslate2

            return int(ctranslate2.get_cuda_device_count())
        except Exception:  # noqa: BLE001 - a broken CUDA install means: no CUDA
            return 0

    def llama_cuda_lib(self) -> Path | None:
        return _llama_build(LLAMA_CUDA_DIR_ENV, "llama-cuda")

    def llama_cpu_lib(self) -> Path | None:
        return _llama_build(LLAMA_CPU_DIR_ENV, "llama-cpu")


def _llama_build(env_name: str, folder_name: str) -> Path | None:
    """`<dir>/lib` holding libllama/llama.dll: the folder an environment variable names, else sys.prefix's."""
    configured = os.environ.get(env_name)
    for folder in ([Path(configured)] if configured else []) + [Path(sys.prefix) / folder_name]:
        lib = folder / "lib"
        if any(lib.glob("libllama.*")) or any(lib.glob("llama.dll")):
            return lib
    return None


def choose(engine: str, spec: dict[str, Any], gpu: GpuReading, caps: EngineCaps,
           reserve_bytes: int = DEFAULT_RESERVE_BYTES) -> Choice:
    """The device for one model. `spec["device"]` "cpu" forces the CPU (game mode, or the user)."""
    if engine == "piper":
        return Choice("cpu", reason=None, detail="piper runs on the CPU")
    requested = str(spec.get("device") or "auto")
    cpu_slots = _slots(spec, "cpu") if engine == "llama.cpp" else None
    if requested == "cpu":
        return Choice("cpu", reason=str(spec.get("device_reason") or "The CPU was asked for."), slots=cpu_slots)
    if not gpu.available:
        return Choice("cpu", reason=gpu.reason, slots=cpu_slots)
    free = int(gpu.memory_free_bytes or 0)
    if engine == "faster-whisper":
        return _whisper(spec, free, caps, reserve_bytes)
    if engine == "llama.cpp":
        return _llama(spec, free, caps, reserve_bytes)
    return Choice("cpu", reason=f"The {engine} engine has no GPU support in aistack.")


def _whisper(spec: dict[str, Any], free: int, caps: EngineCaps, reserve: int) -> Choice:
    if caps.ct2_cuda_devices() < 1:
        return Choice("cpu", "int8", reason="CTranslate2 sees no CUDA GPU (its CUDA libraries are missing or "
                      "too old for this driver); Whisper runs on the CPU.")
    size = _model_bytes(spec)
    for compute_type in ("float16", "int8_float16"):
        need = vram.whisper_need(size, compute_type)
        if need <= free - reserve:
            short = compute_type != "float16"
            reason = (f"Only {free >> 20} MB of GPU memory free (float16 needs about "
                      f"{vram.whisper_need(size, 'float16') >> 20} MB): using int8_float16.") if short else None
            return Choice("cuda", compute_type, detail=compute_type, reason=reason)
    need = vram.whisper_need(size, "int8_float16")
    return Choice("cpu", "int8", reason=f"Not enough GPU memory: Whisper needs about {need >> 20} MB, "
                  f"{free >> 20} MB are free; running on the CPU.")


def _llama(spec: dict[str, Any], free: int, caps: EngineCaps, reserve: int) -> Choice:
    lib = caps.llama_cuda_lib()
    if lib is None:
        return Choice("cpu", gpu_layers=0, reason="No CUDA build of llama.cpp is installed "
                      "(installer/build_cuda_llama.sh makes one); chat runs on the CPU.", slots=_slots(spec, "cpu"))
    slots = _slots(spec, "cuda")
    need = _llama_need(spec, slots)
    if need is None:  # the header could not be read: the load itself will say why
        return Choice("cuda", gpu_layers=-1, llama_lib=str(lib), slots=slots)
    # Fewer sequences before fewer layers: a model split with the CPU loses more than parallel answers gain.
    while slots > 1 and fit_layers_for(spec, need, free, reserve) < need.layers:
        slots //= 2
        need = _llama_need(spec, slots) or need
        log.info("%s: fewer parallel sequences (%d) so the model fits in GPU memory", spec.get("id"), slots)
    layers = fit_layers_for(spec, need, free, reserve)
    if layers == 0:
        return Choice("cpu", gpu_layers=0, reason=f"Not enough GPU memory for even one layer "
                      f"({free >> 20} MB free); chat runs on the CPU.", slots=_slots(spec, "cpu"))
    detail = vram.split_text(layers, need.layers)
    if layers >= need.layers:
        return Choice("cuda", gpu_layers=-1, detail=detail, llama_lib=str(lib), slots=slots)
    reason = (f"The model needs about {need.full_bytes >> 20} MB of GPU memory and {free >> 20} MB are free: "
              f"{detail}, the rest on the CPU (slower).")
    return Choice("cuda", gpu_layers=layers, detail=detail, reason=reason, llama_lib=str(lib), slots=slots)


def default_slots(device: str, cores: int | None = None) -> int:
    """Sequences a chat model decodes together when `AISTACK_LLM_PARALLEL` is 0 (auto).

    4 on a GPU, where decoding is bound by memory bandwidth and four sequences cost
    little more than one; on a CPU one per physical core, at least 2 and at most 4
    (more sequences than cores only share the same arithmetic).
    """
    if device == "cuda":
        return 4
    if cores is None:
        import psutil

        cores = psutil.cpu_count(logical=False) or 2
    return max(2, min(4, cores))


def chat_slots(setting: int, device: str) -> int:
    """The sequences wanted: the user's `AISTACK_LLM_PARALLEL`, else the default for the device."""
    return setting if setting > 0 else default_slots(device)


def _slots(spec: dict[str, Any], device: str) -> int:
    """Sequences for a llama.cpp context: AISTACK_LLM_PARALLEL or the device's default, within the
    manager's cap (`spec["slots"]`: what fits in RAM)."""
    settings = spec.get("settings") or {}
    wanted = chat_slots(int(settings.get("llm_parallel") or 0), device)
    cap = spec.get("slots")
    return min(wanted, int(cap)) if isinstance(cap, int) and cap > 0 else wanted


def fit_layers_for(spec: dict[str, Any], need: vram.LlamaNeed, free: int, reserve: int) -> int:
    """Layers to offload: what fits, or fewer if the spec caps it (`gpu_layers` set by the manager or the user)."""
    layers = vram.fit_layers(need, free, reserve)
    cap = spec.get("gpu_layers")
    if isinstance(cap, int) and cap >= 0:
        layers = min(layers, cap)
    return layers


def _llama_need(spec: dict[str, Any], slots: int = 1) -> vram.LlamaNeed | None:
    from models.store.gguf import GgufError, read_gguf

    names = [n for n in spec.get("files") or [] if str(n).lower().endswith(".gguf")]
    if not names:
        return None
    try:
        header = read_gguf(Path(str(spec["path"])) / names[0], keep_array_items=0)
    except (GgufError, OSError):
        return None
    settings = spec.get("settings") or {}
    limit = int(settings.get("llm_context") or 4096)
    model = (spec.get("options") or {}).get("context") or header.context_length or limit
    return vram.llama_need(header, min(int(model), limit), slots)


def _model_bytes(spec: dict[str, Any]) -> int:
    folder = Path(str(spec.get("path", ".")))
    return sum((folder / str(n)).stat().st_size for n in spec.get("files") or [] if (folder / str(n)).is_file())


def prepare_runner(spec: dict[str, Any], probe: GpuProbe | None = None, caps: EngineCaps | None = None) -> dict[str, Any]:
    """In the runner, before the engine is imported: decide, point llama_cpp at the right build, return the spec."""
    from models.hardware.gpu import default_probe

    engine = str(spec.get("engine", ""))
    reading = (probe or default_probe()).read() if engine != "piper" else GpuReading.unavailable("piper")
    caps = caps or InstalledCaps()
    choice = choose(engine, spec, reading, caps)
    if engine == "llama.cpp":
        _point_llama_cpp_at(choice.llama_lib if choice.device == "cuda" else caps.llama_cpu_lib(), caps)
    if choice.reason:
        log.info("%s: %s", spec.get("id"), choice.reason)
    return {**spec, **choice.to_spec()}


def _point_llama_cpp_at(lib: str | Path | None, caps: EngineCaps) -> None:
    """LLAMA_CPP_LIB_PATH for the build chosen; unset means the library inside the `llama_cpp` package."""
    if lib is not None:
        os.environ["LLAMA_CPP_LIB_PATH"] = str(lib)
    elif os.environ.get("LLAMA_CPP_LIB_PATH") == str(caps.llama_cuda_lib()):
        # The CUDA build with no layers offloaded still takes GPU memory (measured: 675 MB on an H200)
        # and runs big prompt batches there: on the CPU, use the portable build.
        os.environ.pop("LLAMA_CPP_LIB_PATH")


def device_info(spec: dict[str, Any]) -> dict[str, Any]:
    """What the runner reports beside the engine's own info (the engine's keys win: it knows if it fell back)."""
    return {"device": spec.get("device"), "device_detail": spec.get("device_detail"),
            "device_reason": spec.get("device_reason")}


def is_cuda_failure(exc: BaseException) -> bool:
    """An exception from the GPU itself (driver reset, sleep and resume, out of memory), not from the input."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("cuda", "cublas", "cudnn", "gpu"))


def gpu_lost_error(provider: str, exc: BaseException) -> Exception:
    """The 503 for a job the GPU failed; the runner exits after it, and the next request starts a fresh one."""
    from models.core.errors import EngineUnavailable

    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return EngineUnavailable(
        f"The GPU failed during this request ({reason}). The model is reloaded on the next request; "
        "if this repeats, update the NVIDIA driver or turn on game mode to keep aistack on the CPU.",
        provider=provider,
    )
