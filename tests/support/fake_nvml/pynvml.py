"""A fake `pynvml` (nvidia-ml-py) for the tests: the functions aistack calls, with a GPU that a JSON file describes.

Put this folder first on PYTHONPATH and name the file in AISTACK_TEST_FAKE_NVML; the
server and its runner processes then see that GPU. The file is read on every call,
so a test changes the GPU (a game starts, the driver goes away) by rewriting it.

    {"error": null | "LibraryNotFound" | "DriverNotLoaded" | "GpuIsLost" | "Unknown",
     "name": "NVIDIA GeForce RTX 3060", "driver": "555.85", "cuda": 12050, "cc": [8, 6],
     "total": 12884901888, "used": 1073741824, "util": 3,
     "compute": [{"pid": 1, "used": 123}], "graphics": [{"pid": 2, "used": null}]}
A missing or empty file means a machine with no NVIDIA driver at all.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


class NVMLError_GpuIsLost(NVMLError):
    pass


_ERRORS = {"LibraryNotFound": NVMLError_LibraryNotFound, "DriverNotLoaded": NVMLError_DriverNotLoaded,
           "NoPermission": NVMLError_NoPermission, "GpuIsLost": NVMLError_GpuIsLost}


def _state() -> dict[str, Any]:
    path = os.environ.get("AISTACK_TEST_FAKE_NVML", "")
    try:
        with open(path, encoding="utf-8") as f:
            state: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        state = {"error": "LibraryNotFound"}
    error = state.get("error")
    if error:
        raise _ERRORS.get(error, NVMLError)(f"fake NVML: {error}")
    return state


def nvmlInit() -> None:
    _state()


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return 1 if _state().get("name") else 0


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    return index


def nvmlDeviceGetName(handle: int) -> str:
    return str(_state()["name"])


def nvmlSystemGetDriverVersion() -> str:
    return str(_state().get("driver", "555.85"))


def nvmlSystemGetCudaDriverVersion_v2() -> int:
    return int(_state().get("cuda", 12050))


def nvmlDeviceGetCudaComputeCapability(handle: int) -> tuple[int, int]:
    major, minor = _state().get("cc", [8, 6])
    return int(major), int(minor)


def nvmlDeviceGetMemoryInfo(handle: int) -> SimpleNamespace:
    state = _state()
    total, used = int(state["total"]), int(state["used"])
    return SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetUtilizationRates(handle: int) -> SimpleNamespace:
    return SimpleNamespace(gpu=int(_state().get("util", 0)), memory=0)


def _processes(kind: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(pid=int(p["pid"]), usedGpuMemory=p.get("used")) for p in _state().get(kind, [])]


def nvmlDeviceGetComputeRunningProcesses(handle: int) -> list[SimpleNamespace]:
    return _processes("compute")


def nvmlDeviceGetGraphicsRunningProcesses(handle: int) -> list[SimpleNamespace]:
    return _processes("graphics")
