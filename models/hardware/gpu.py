"""What the NVIDIA GPU is and how much of it is free, read through NVML.

One small interface, `GpuProbe.read() -> GpuReading`, so the status page,
placement and game mode all see the same numbers, and tests replace the probe
(or the `pynvml` module itself) with a fake. Any NVML problem - the package
missing, no driver, no NVIDIA GPU, an error while reading - is not an error
for the app: the reading says `available: False` and why, in words, and the
app runs on the CPU.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

log = logging.getLogger("aistack.gpu")

CPU_MODE = "aistack runs on the CPU."


@dataclass(frozen=True)
class GpuProcess:
    """Another program (or one of our runners) holding GPU memory."""

    pid: int
    name: str
    used_bytes: int | None  # None where the driver does not say (Windows WDDM)


@dataclass(frozen=True)
class GpuReading:
    available: bool
    reason: str | None = None  # why not available, in words
    name: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    compute_capability: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    utilization_percent: int | None = None
    processes: list[GpuProcess] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def unavailable(cls, reason: str) -> GpuReading:
        return cls(available=False, reason=reason)


class GpuProbe(Protocol):
    def read(self) -> GpuReading: ...


class NvmlProbe:
    """Reads GPU 0 through `pynvml` (the nvidia-ml-py package). Thread-safe; NVML is initialised once."""

    def __init__(self, index: int = 0):
        self.index = index
        self._lock = threading.Lock()
        self._ready = False

    def read(self) -> GpuReading:
        try:
            import pynvml
        except ImportError:
            return GpuReading.unavailable(f"nvidia-ml-py is not installed, so no GPU can be checked; {CPU_MODE}")
        with self._lock:
            try:
                if not self._ready:
                    pynvml.nvmlInit()
                    self._ready = True
                return self._read(pynvml)
            except pynvml.NVMLError as exc:
                self._ready = False  # a driver reset: initialise again next time
                return GpuReading.unavailable(_explain(pynvml, exc))
            except Exception as exc:  # noqa: BLE001 - a broken NVML must never take the status page down
                self._ready = False
                return GpuReading.unavailable(f"Reading the GPU failed ({type(exc).__name__}: {exc}); {CPU_MODE}")

    def _read(self, nvml: Any) -> GpuReading:
        count = nvml.nvmlDeviceGetCount()
        if count <= self.index:
            return GpuReading.unavailable(f"The NVIDIA driver is installed but reports no GPU; {CPU_MODE}")
        handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        cuda = nvml.nvmlSystemGetCudaDriverVersion_v2()
        try:
            utilization: int | None = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except nvml.NVMLError:
            utilization = None
        return GpuReading(
            available=True,
            name=_text(nvml.nvmlDeviceGetName(handle)),
            driver_version=_text(nvml.nvmlSystemGetDriverVersion()),
            cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}",
            compute_capability=f"{major}.{minor}",
            memory_total_bytes=int(memory.total),
            memory_used_bytes=int(memory.used),
            memory_free_bytes=int(memory.free),
            utilization_percent=utilization,
            processes=_processes(nvml, handle),
        )


def _processes(nvml: Any, handle: Any) -> list[GpuProcess]:
    """Compute and graphics processes (a game is a graphics one), each once, biggest first."""
    seen: dict[int, int | None] = {}
    for query in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            found = getattr(nvml, query)(handle)
        except (nvml.NVMLError, AttributeError):
            continue
        for proc in found:
            used = getattr(proc, "usedGpuMemory", None)
            used = int(used) if isinstance(used, int) and used >= 0 and used < (1 << 60) else None
            before = seen.get(int(proc.pid))
            seen[int(proc.pid)] = used if before is None else max(before, used or 0)
    rows = [GpuProcess(pid, _process_name(pid), used) for pid, used in seen.items()]
    return sorted(rows, key=lambda p: -(p.used_bytes or 0))


def _process_name(pid: int) -> str:
    try:
        import psutil

        return str(psutil.Process(pid).name())
    except Exception:  # noqa: BLE001 - gone, or another user's process
        return f"pid {pid}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _explain(nvml: Any, exc: Exception) -> str:
    """The NVML error as a sentence a user can act on."""
    kinds = [
        ("NVMLError_LibraryNotFound", "No NVIDIA driver found (the NVML library is missing)"),
        ("NVMLError_DriverNotLoaded", "The NVIDIA driver is not loaded"),
        ("NVMLError_NoPermission", "No permission to read the NVIDIA GPU"),
        ("NVMLError_GpuIsLost", "The NVIDIA GPU stopped answering (driver reset or sleep); it is checked again shortly"),
    ]
    for name, sentence in kinds:
        kind = getattr(nvml, name, None)
        if isinstance(kind, type) and isinstance(exc, kind):
            return f"{sentence}; {CPU_MODE}"
    return f"NVIDIA driver error ({exc}); {CPU_MODE}"


_default: NvmlProbe | None = None


def default_probe() -> NvmlProbe:
    """The process-wide NVML probe."""
    global _default
    if _default is None:
        _default = NvmlProbe()
    return _default


def wait_released(probe: GpuProbe, pid: int, timeout: float = 5.0) -> bool:
    """After a runner exits: wait (bounded) until NVML no longer lists it, so the next placement sees the memory back."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        reading = probe.read()
        if not reading.available or all(p.pid != pid for p in reading.processes):
            return True
        if time.monotonic() >= deadline:
            log.warning("GPU memory of runner %s still in use after %.0f s", pid, timeout)
            return False
        time.sleep(0.1)
