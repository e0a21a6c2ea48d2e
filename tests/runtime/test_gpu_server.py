"""GET /admin/api/status and game mode through the real server, with a fake NVML for the GPU.

The fake `pynvml` (tests/support/fake_nvml) goes first on the server's PYTHONPATH, so the server and its
runner processes all read the GPU from one JSON file the test rewrites. The engines are real:
CTranslate2 here has no CUDA, which is itself a case the status must explain.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.asr_engines import ENGINES, install_starter_whisper_as

GB = 1 << 30
FAKE_NVML_DIR = Path(__file__).parents[1] / "support" / "fake_nvml"
WHISPER = "whisper-tiny.en"


def test_status_without_a_gpu(http: httpx.Client) -> None:
    """This machine has no NVIDIA driver: CPU mode, with the reason in words, and every installed model listed."""
    body = http.get("/admin/api/status").json()
    assert body["app"] == "aistack" and body["version"] and body["address"].startswith("http://127.0.0.1:")
    assert body["uptime_sec"] >= 0 and body["system"]["ram_total_bytes"] > body["system"]["ram_available_bytes"] > 0
    gpu = body["gpu"]
    assert gpu["available"] is False and gpu["name"] is None and gpu["processes"] == []
    assert gpu["reason"].endswith("aistack runs on the CPU.") and "NVIDIA" in gpu["reason"]
    assert body["game_mode"] == {"enabled": False, "active": False, "reason": None, "hold": "cpu"}
    rows = {row["id"]: row for row in body["models"]}
    assert {WHISPER, "piper-en_US-joe-medium"} <= set(rows)
    for key in ("state", "loaded", "pinned", "busy", "queued", "device", "device_detail", "device_reason", "runner_pid",
                "memory_bytes", "vram_bytes", "expires_in_sec", "error"):
        assert key in rows[WHISPER], key


@pytest.fixture
def fake_gpu(tmp_path: Path) -> Iterator[tuple[Callable[..., None], dict[str, str]]]:
    """A GPU file and the server environment that reads it; `show(**gpu)` changes the GPU."""
    state = tmp_path / "nvml.json"

    def show(**gpu: Any) -> None:
        state.write_text(json.dumps(gpu))

    show(name="NVIDIA GeForce RTX 3050", driver="555.85", cuda=12050, cc=[8, 6], total=8 * GB, used=6 * GB, util=1)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAKE_NVML_DIR), os.environ.get("PYTHONPATH")])),
           "AISTACK_TEST_FAKE_NVML": str(state)}
    yield show, env


def row_of(client: httpx.Client, model_id: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = client.get("/admin/api/status").json()["models"]
    return next(r for r in rows if r["id"] == model_id)


def wait_for(client: httpx.Client, check: Callable[[dict[str, Any]], bool], timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get("/admin/api/status").json()
        if check(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_a_gpu_with_2_gb_free_and_whisper_without_cuda(
    start_server: Any, starter_data_dir: Path, fake_gpu: tuple[Callable[..., None], dict[str, str]]
) -> None:
    show, env = fake_gpu
    server = start_server(data_dir=starter_data_dir, **env)
    with httpx.Client(base_url=server.url, timeout=120, headers=server.admin_headers) as client:
        gpu = client.get("/admin/api/status").json()["gpu"]
        assert (gpu["available"], gpu["name"], gpu["cuda_version"], gpu["compute_capability"]) == (
            True, "NVIDIA GeForce RTX 3050", "12.5", "8.6")
        assert gpu["memory_free_bytes"] == 2 * GB and gpu["reason"] is None
        assert client.post(f"/admin/api/models/{WHISPER}/load").status_code == 200
        row = row_of(client, WHISPER)
        # The GPU is there, but this CTranslate2 has no CUDA: the CPU, and the status says why.
        assert row["loaded"] and row["device"] == "cpu"
        assert "CTranslate2 sees no CUDA GPU" in row["device_reason"]
        client.post(f"/admin/api/models/{WHISPER}/unload")


def test_cuda_failing_at_warm_up_is_shown_in_status(
    start_server: Any, starter_data_dir: Path, tmp_path: Path, fake_gpu: tuple[Callable[..., None], dict[str, str]]
) -> None:
    _, env = fake_gpu
    data_dir = tmp_path / "data"
    install_starter_whisper_as(data_dir, starter_data_dir, "whisper-gpu", "whisper-pretend-gpu")
    server = start_server(data_dir=data_dir, AISTACK_ENGINES=json.dumps(ENGINES), **env)
    with httpx.Client(base_url=server.url, timeout=120, headers=server.admin_headers) as client:
        assert client.post("/admin/api/models/whisper-gpu/load").status_code == 200
        row = row_of(client, "whisper-gpu")
    assert row["device"] == "cpu" and row["device_detail"] is None
    assert row["device_reason"].startswith("CUDA failed at load or warm-up (")
    assert row["device_reason"].endswith("); running on the CPU instead.")


def test_game_mode_through_the_server(
    start_server: Any, starter_data_dir: Path, fake_gpu: tuple[Callable[..., None], dict[str, str]]
) -> None:
    show, env = fake_gpu
    show(name="NVIDIA GeForce RTX 3060", total=12 * GB, used=1 * GB, util=1)
    server = start_server(data_dir=starter_data_dir, AISTACK_GAME_MODE_INTERVAL_SEC="0.2", **env)
    game = subprocess.Popen(["sleep", "60"])  # a real process for NVML to name
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            assert client.post("/admin/api/game-mode", json={"enabled": True}).status_code == 403  # needs the admin token
            client.headers.update(server.admin_headers)
            switched = client.post("/admin/api/game-mode", json={"enabled": True}).json()
            assert switched == {"enabled": True, "active": False, "reason": None, "hold": "cpu"}

            show(name="NVIDIA GeForce RTX 3060", total=12 * GB, used=8 * GB, util=95,
                 graphics=[{"pid": game.pid, "used": 7 * GB}])
            body = wait_for(client, lambda b: b["game_mode"]["active"])
            assert body["game_mode"]["reason"] == "sleep uses 7168 MB (58%) of the GPU's memory."
            assert body["gpu"]["processes"] == [{"pid": game.pid, "name": "sleep", "used_bytes": 7 * GB}]
            assert client.post(f"/admin/api/models/{WHISPER}/load").status_code == 200
            row = row_of(client, WHISPER)
            assert row["device"] == "cpu"
            assert row["device_reason"] == ("Game mode: sleep uses 7168 MB (58%) of the GPU's memory. "
                                            "Running on the CPU until it exits.")
            client.post(f"/admin/api/models/{WHISPER}/unload")

            show(name="NVIDIA GeForce RTX 3060", total=12 * GB, used=1 * GB, util=1)
            body = wait_for(client, lambda b: not b["game_mode"]["active"])
            assert body["game_mode"] == {"enabled": True, "active": False, "reason": None, "hold": "cpu"}
            off = client.post("/admin/api/game-mode", json={"enabled": False}).json()
            assert off["enabled"] is False
    finally:
        game.kill()
        game.wait()
