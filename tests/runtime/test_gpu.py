"""The GPU decisions without a GPU: a fake NVML (tests/support/fake_nvml) and fake engine capabilities behind the real interfaces.

Cases from the issue: no GPU; a GPU with 2 GB free; a game appearing and leaving.
(CUDA failing at warm-up runs through the server in test_gpu_server.py.)
Each checks the decision and the words a person reads.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from models.core.errors import Busy
from models.hardware import device_choice, vram
from models.hardware.device_choice import Choice, choose
from models.hardware.game_mode import GameMode
from models.hardware.gpu import GpuProcess, GpuReading, NvmlProbe
from models.store.gguf import read_gguf
from tests.support.gguf_files import gguf_bytes

GB = 1 << 30
MB = 1 << 20
FAKE_NVML = Path(__file__).parents[1] / "support" / "fake_nvml" / "pynvml.py"


# The fake NVML behind the real probe -------------------------------------------------------
@pytest.fixture
def nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install the fake `pynvml` for this test; returns a function that sets the GPU it shows."""
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_NVML)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    state = tmp_path / "nvml.json"
    monkeypatch.setenv("AISTACK_TEST_FAKE_NVML", str(state))

    def show(**gpu: Any) -> None:
        state.write_text(json.dumps(gpu))

    return show


def rtx_3060(used: int, **extra: Any) -> dict[str, Any]:
    return {"name": "NVIDIA GeForce RTX 3060", "driver": "555.85", "cuda": 12050, "cc": [8, 6],
            "total": 12 * GB, "used": used, "util": 2, **extra}


def test_no_driver_means_cpu_mode_with_the_reason(nvml: Any) -> None:
    reading = NvmlProbe().read()  # no state file: the NVML library is missing
    assert not reading.available
    assert reading.reason == "No NVIDIA driver found (the NVML library is missing); aistack runs on the CPU."
    nvml(error="DriverNotLoaded")
    assert NvmlProbe().read().reason == "The NVIDIA driver is not loaded; aistack runs on the CPU."


def test_the_probe_reads_name_driver_memory_and_processes(nvml: Any) -> None:
    nvml(**rtx_3060(3 * GB, compute=[{"pid": os.getpid(), "used": 1 * GB}], graphics=[{"pid": 999_999_999, "used": 2 * GB}]))
    reading = NvmlProbe().read()
    assert reading.available and reading.reason is None
    assert (reading.name, reading.driver_version, reading.cuda_version, reading.compute_capability) == (
        "NVIDIA GeForce RTX 3060", "555.85", "12.5", "8.6")
    assert (reading.memory_total_bytes, reading.memory_used_bytes, reading.memory_free_bytes) == (12 * GB, 3 * GB, 9 * GB)
    assert [(p.pid, p.used_bytes) for p in reading.processes] == [(999_999_999, 2 * GB), (os.getpid(), 1 * GB)]
    assert reading.processes[0].name == "pid 999999999"  # gone or not ours to read: said plainly
    assert "python" in reading.processes[1].name.lower()


def test_a_driver_reset_is_reported_then_recovered(nvml: Any) -> None:
    probe = NvmlProbe()
    nvml(**rtx_3060(1 * GB))
    assert probe.read().available
    nvml(error="GpuIsLost")
    reading = probe.read()
    assert not reading.available and "stopped answering" in (reading.reason or "")
    nvml(**rtx_3060(1 * GB))
    assert probe.read().available  # NVML is initialised again, not stuck on the old error


# Device choice with fake engine capabilities -------------------------------------------------
class Caps:
    def __init__(self, ct2: int = 1, llama: Path | None = Path("/opt/llama-cuda/lib"), llama_cpu: Path | None = None):
        self.ct2, self.llama, self.llama_cpu = ct2, llama, llama_cpu

    def ct2_cuda_devices(self) -> int:
        return self.ct2

    def llama_cuda_lib(self) -> Path | None:
        return self.llama

    def llama_cpu_lib(self) -> Path | None:
        return self.llama_cpu


def model_folder(tmp_path: Path, name: str, size: int) -> dict[str, Any]:
    folder = tmp_path / name
    folder.mkdir()
    with (folder / "model.bin").open("wb") as f:
        f.truncate(size)  # sparse: only the size matters
    return {"id": name, "engine": "faster-whisper", "path": str(folder), "files": ["model.bin"], "device": "auto"}


def llama_8b(tmp_path: Path) -> dict[str, Any]:
    """An 8B-shaped GGUF (32 layers of 4096 wide, 8 KV heads), F32 tensors at Q4_K_M-like sizes, sparse on disk."""
    tensors: list[tuple[str, tuple[int, ...], int]] = [(f"blk.{i}.ffn_up.weight", (4096, 8960), 0) for i in range(32)]
    tensors += [("token_embd.weight", (4096, 32000), 0), ("output.weight", (4096, 32000), 0)]
    metadata: dict[str, Any] = {"llama.block_count": 32, "llama.context_length": 8192, "llama.embedding_length": 4096,
                "llama.attention.head_count": 32, "llama.attention.head_count_kv": 8}
    head = gguf_bytes(metadata, tensors, data_bytes=0)
    data = sum(-(-(4 * shape[0] * shape[1]) // 32) * 32 for _, shape, _ in tensors)
    path = tmp_path / "llama-8b" / "model.gguf"
    path.parent.mkdir()
    with path.open("wb") as f:
        f.write(head)
        f.truncate(len(head) + data)
    return {"id": "llama-8b", "engine": "llama.cpp", "path": str(path.parent), "files": [path.name], "device": "auto",
            "settings": {"llm_context": 4096}}


def reading(free: int, total: int = 8 * GB) -> GpuReading:
    return GpuReading(available=True, name="NVIDIA GeForce RTX 3050", memory_total_bytes=total,
                      memory_used_bytes=total - free, memory_free_bytes=free)


def test_no_gpu_every_engine_on_the_cpu_with_the_reason(tmp_path: Path) -> None:
    none = GpuReading.unavailable("No NVIDIA driver found (the NVML library is missing); aistack runs on the CPU.")
    whisper = choose("faster-whisper", model_folder(tmp_path, "w", 500 * MB), none, Caps())
    chat = choose("llama.cpp", llama_8b(tmp_path), none, Caps())
    assert (whisper.device, chat.device) == ("cpu", "cpu")
    assert whisper.reason == chat.reason == none.reason
    assert choose("piper", {}, reading(8 * GB), Caps()) == Choice("cpu", detail="piper runs on the CPU")


def test_a_gpu_with_2_gb_free(tmp_path: Path) -> None:
    gpu = reading(free=2 * GB)
    small = choose("faster-whisper", model_folder(tmp_path, "whisper-small", 484 * MB), gpu, Caps())
    assert (small.device, small.compute_type) == ("cuda", "int8_float16")
    assert small.reason == "Only 2048 MB of GPU memory free (float16 needs about 1572 MB): using int8_float16."
    turbo = choose("faster-whisper", model_folder(tmp_path, "whisper-turbo", 1618 * MB), gpu, Caps())
    assert turbo.device == "cpu"
    assert turbo.reason == "Not enough GPU memory: Whisper needs about 1897 MB, 2048 MB are free; running on the CPU."

    spec = llama_8b(tmp_path)
    chat = choose("llama.cpp", spec, gpu, Caps())
    need = vram.llama_need(read_gguf(Path(spec["path"]) / "model.gguf"), 4096)
    layers = vram.fit_layers(need, 2 * GB, device_choice.DEFAULT_RESERVE_BYTES)
    assert 0 < layers < 32 and chat.gpu_layers == layers
    assert chat.device == "cuda" and chat.detail == f"{layers}/32 layers on GPU"
    assert chat.reason == (f"The model needs about {need.full_bytes >> 20} MB of GPU memory and 2048 MB are free: "
                           f"{layers}/32 layers on GPU, the rest on the CPU (slower).")
    assert need.gpu_bytes(layers) <= 2 * GB - device_choice.DEFAULT_RESERVE_BYTES < need.gpu_bytes(layers + 1)
    assert chat.llama_lib == "/opt/llama-cuda/lib"
    roomy = choose("llama.cpp", spec, reading(free=11 * GB, total=12 * GB), Caps())
    assert (roomy.gpu_layers, roomy.detail, roomy.reason) == (-1, "32/32 layers on GPU", None)


def test_parallel_sequences_shrink_before_layers_leave_the_gpu(tmp_path: Path) -> None:
    """4 sequences by default on a GPU; with room for 2 sequences of the 8B model (all layers), 2; the user's
    AISTACK_LLM_PARALLEL where it fits; on the CPU one per core, 2 to 4, whatever the GPU."""
    spec = llama_8b(tmp_path)
    header = read_gguf(Path(spec["path"]) / "model.gguf")
    reserve = device_choice.DEFAULT_RESERVE_BYTES
    need = {n: vram.llama_need(header, 4096, n).full_bytes for n in (1, 2, 4, 8)}
    assert need[1] < need[2] < need[4] < need[8]
    roomy = choose("llama.cpp", spec, reading(free=need[4] + reserve, total=80 * GB), Caps())
    assert (roomy.slots, roomy.gpu_layers) == (4, -1)
    two = choose("llama.cpp", spec, reading(free=need[2] + reserve + MB, total=80 * GB), Caps())
    assert (two.slots, two.gpu_layers, two.reason) == (2, -1, None)
    asked = {**spec, "settings": {**spec["settings"], "llm_parallel": 8}}
    assert choose("llama.cpp", asked, reading(free=need[8] + reserve, total=80 * GB), Caps()).slots == 8
    capped = {**asked, "slots": 3}  # the manager's RAM check allows 3
    assert choose("llama.cpp", capped, reading(free=need[8] + reserve, total=80 * GB), Caps()).slots == 3
    split = choose("llama.cpp", spec, reading(free=need[1] - GB, total=80 * GB), Caps())
    assert split.slots == 1 and 0 < (split.gpu_layers or 0) < 32
    cpu = choose("llama.cpp", {**spec, "device": "cpu"}, reading(free=80 * GB, total=80 * GB), Caps())
    assert cpu.device == "cpu" and cpu.slots == device_choice.default_slots("cpu")
    assert [device_choice.default_slots("cpu", cores) for cores in (1, 2, 3, 8)] == [2, 2, 3, 4]


def test_engine_libraries_without_cuda_say_so(tmp_path: Path) -> None:
    gpu = reading(free=8 * GB)
    whisper = choose("faster-whisper", model_folder(tmp_path, "w", 484 * MB), gpu, Caps(ct2=0))
    assert whisper.device == "cpu" and "CTranslate2 sees no CUDA GPU" in (whisper.reason or "")
    chat = choose("llama.cpp", llama_8b(tmp_path), gpu, Caps(llama=None))
    assert chat.device == "cpu" and "installer/build_cuda_llama.sh" in (chat.reason or "")


def test_the_runner_points_llama_cpp_at_the_cuda_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLAMA_CPP_LIB_PATH", raising=False)

    class Probe:
        def read(self) -> GpuReading:
            return reading(free=11 * GB, total=12 * GB)

    spec = device_choice.prepare_runner(llama_8b(tmp_path), Probe(), Caps())
    assert os.environ["LLAMA_CPP_LIB_PATH"] == "/opt/llama-cuda/lib"
    assert (spec["device"], spec["gpu_layers"], spec["device_detail"]) == ("cuda", -1, "32/32 layers on GPU")
    held = device_choice.prepare_runner({**spec, "device": "cpu", "device_reason": "Game mode: ..."}, Probe(), Caps())
    assert held["device"] == "cpu" and held["device_reason"] == "Game mode: ..."
    assert "LLAMA_CPP_LIB_PATH" not in os.environ  # the portable CPU build: the CUDA one would still take VRAM


def test_a_cpu_build_of_its_own_is_used_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows: the `llama_cpp` package has no library inside; the portable build sits in llama-cpu/lib."""
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", "")  # recorded as unset: the runner code's change is undone after
    monkeypatch.delenv("LLAMA_CPP_LIB_PATH")

    class NoGpu:
        def read(self) -> GpuReading:
            return GpuReading.unavailable("no NVIDIA GPU")

    caps = Caps(llama=Path("/opt/llama-cuda/lib"), llama_cpu=Path("/opt/llama-cpu/lib"))
    spec = device_choice.prepare_runner(llama_8b(tmp_path), NoGpu(), caps)
    assert spec["device"] == "cpu" and os.environ["LLAMA_CPP_LIB_PATH"] == "/opt/llama-cpu/lib"


def test_the_cpu_build_folder_is_found_beside_the_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "llama-cpu" / "lib"
    lib.mkdir(parents=True)
    monkeypatch.delenv(device_choice.LLAMA_CPU_DIR_ENV, raising=False)
    monkeypatch.setattr(device_choice.sys, "prefix", str(tmp_path))
    assert device_choice.InstalledCaps().llama_cpu_lib() is None  # a folder without the library is no build
    (lib / "llama.dll").write_bytes(b"MZ")
    assert device_choice.InstalledCaps().llama_cpu_lib() == lib
    monkeypatch.setenv(device_choice.LLAMA_CPU_DIR_ENV, str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere" / "lib").mkdir(parents=True)
    (tmp_path / "elsewhere" / "lib" / "libllama.so").write_bytes(b"")
    assert device_choice.InstalledCaps().llama_cpu_lib() == tmp_path / "elsewhere" / "lib"


# Game mode: a game appears, then leaves ------------------------------------------------------
class FakeManager:
    """What game mode asks of the manager: installed models, their status, unload, our runner pids."""

    def __init__(self, rows: dict[str, dict[str, Any]]):
        self.rows = rows
        self.unloaded: list[str] = []
        self.store = self

    def installed(self) -> list[Any]:
        return [type("Model", (), {"id": model_id})() for model_id in self.rows]

    def status(self, model_id: str) -> dict[str, Any]:
        return self.rows[model_id]

    async def unload(self, model_id: str) -> None:
        self.unloaded.append(model_id)
        self.rows[model_id] = {"loaded": False, "device": None, "busy": False}

    def runner_pids(self) -> list[int]:
        return [4242]


class Screen:
    """The GPU as game mode reads it; a test changes what it shows."""

    def __init__(self) -> None:
        self.now = reading(free=6 * GB)

    def read(self) -> GpuReading:
        return self.now


def game_mode(manager: FakeManager, screen: Screen, hold: str = "cpu") -> GameMode:
    return GameMode(screen, manager, enabled=True, vram_share=0.25, busy_percent=70, interval=3, hold=hold)


def with_game(used_by_game: int, util: int = 40) -> GpuReading:
    ours = GpuProcess(4242, "python", 1 * GB)
    game = GpuProcess(777, "eldenring.exe", used_by_game)
    return GpuReading(available=True, name="NVIDIA GeForce RTX 3060", memory_total_bytes=12 * GB,
                      memory_used_bytes=1 * GB + used_by_game, memory_free_bytes=11 * GB - used_by_game,
                      utilization_percent=util, processes=[game, ours])


def test_a_game_appearing_and_leaving() -> None:
    manager = FakeManager({
        "whisper-small": {"loaded": True, "device": "cuda", "busy": False},
        "llama-8b": {"loaded": True, "device": "cuda", "busy": True},
        "piper-voice": {"loaded": True, "device": "cpu", "busy": False},
    })
    screen = Screen()
    mode = game_mode(manager, screen)
    screen.now = with_game(1 * GB)  # a browser's worth of VRAM: not a game
    asyncio.run(mode.check())
    assert mode.status() == {"enabled": True, "active": False, "reason": None, "hold": "cpu"}
    assert mode.device_policy("faster-whisper") == {"device": "auto"}

    screen.now = with_game(6 * GB)
    asyncio.run(mode.check())
    assert mode.active and mode.reason == "eldenring.exe uses 6144 MB (50%) of the GPU's memory."
    assert manager.unloaded == ["whisper-small"]  # idle and on the GPU; the busy one finishes its job first
    assert mode.device_policy("llama.cpp") == {
        "device": "cpu", "device_reason": "Game mode: eldenring.exe uses 6144 MB (50%) of the GPU's memory. "
        "Running on the CPU until it exits."}
    assert mode.device_policy("piper") == {"device": "auto"}

    manager.rows["llama-8b"]["busy"] = False  # its job ended while the game still runs
    asyncio.run(mode.check())
    assert manager.unloaded == ["whisper-small", "llama-8b"]

    screen.now = with_game(0)
    asyncio.run(mode.check())
    assert mode.active  # one quiet check could be a loading screen
    asyncio.run(mode.check())
    assert mode.status() == {"enabled": True, "active": False, "reason": None, "hold": "cpu"}
    assert mode.device_policy("llama.cpp") == {"device": "auto"}


def test_a_busy_gpu_counts_only_when_we_are_not_the_ones_using_it() -> None:
    manager = FakeManager({"llama-8b": {"loaded": True, "device": "cuda", "busy": True}})
    screen = Screen()
    mode = game_mode(manager, screen, hold="wait")
    screen.now = with_game(256 * MB, util=97)
    asyncio.run(mode.check())
    assert not mode.active  # our own chat job keeps it busy
    manager.rows["llama-8b"]["busy"] = False
    asyncio.run(mode.check())
    assert mode.active and mode.reason == "eldenring.exe keeps the GPU 97% busy."
    with pytest.raises(Busy) as refused:
        mode.device_policy("faster-whisper")
    assert "Game mode: eldenring.exe keeps the GPU 97% busy. GPU models wait until it exits" in refused.value.message
    assert asyncio.run(mode.set_enabled(False)) == {"enabled": False, "active": False, "reason": None, "hold": "wait"}
    assert mode.device_policy("faster-whisper") == {"device": "auto"}


def test_windows_without_per_process_memory_still_sees_the_game() -> None:
    manager = FakeManager({})
    screen = Screen()
    mode = game_mode(manager, screen)
    game = GpuProcess(777, "game.exe", None)
    screen.now = GpuReading(available=True, memory_total_bytes=8 * GB, memory_used_bytes=5 * GB,
                            memory_free_bytes=3 * GB, utilization_percent=20, processes=[game])
    asyncio.run(mode.check())
    assert mode.reason == "game.exe uses 5120 MB (62%) of the GPU's memory."
