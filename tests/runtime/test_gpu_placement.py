"""VRAM-aware placement: idle GPU models make room, least recently used first, never the user's.

The manager, runners and HTTP stack are real (a scripted engine that says it runs on CUDA);
the GPU is a fake probe behind the real `GpuProbe` interface whose free memory is what the
loaded models leave, and whose process list drops a runner when it exits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.hardware.gpu import GpuProcess, GpuReading
from tests.support.gpu_engines import ENGINES, install_gpu_model
from tests.support.inprocess import InProcessServer

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

GB = 1 << 30
MODELS = ("first", "second", "third")


class FakeGpu:
    """8 GB, 1 GB of it the desktop's; each loaded model holds 3 GB under its runner's pid."""

    def __init__(self, server: InProcessServer):
        self.server = server

    def read(self) -> GpuReading:
        held = [self.server.status(m) for m in MODELS]
        held = [s for s in held if s["loaded"] and s["device"] == "cuda"]
        used = 1 * GB + 3 * GB * len(held)
        return GpuReading(available=True, name="NVIDIA GeForce RTX 4060", memory_total_bytes=8 * GB,
                          memory_used_bytes=used, memory_free_bytes=8 * GB - used,
                          processes=[GpuProcess(s["runner_pid"], "python", 3 * GB) for s in held])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    data_dir = tmp_path / "data"
    for model_id in MODELS:
        install_gpu_model(data_dir, model_id, vram_bytes=3 * GB)
    server = InProcessServer(data_dir, engines=ENGINES, vram_reserve_mb=0)
    server.manager.gpu = FakeGpu(server)
    yield server
    server.stop()


def run(server: InProcessServer, model_id: str) -> httpx.Response:
    with server.client() as client:
        return client.post(f"/test/run/{model_id}", json={"job": {}})


def on_gpu(server: InProcessServer) -> set[str]:
    return {m for m in MODELS if server.status(m)["loaded"]}


def test_the_least_recently_used_idle_gpu_model_makes_room(server: InProcessServer) -> None:
    assert run(server, "first").status_code == 200
    assert run(server, "second").status_code == 200
    assert on_gpu(server) == {"first", "second"}  # 7 GB free held two, 1 GB is left
    assert run(server, "first").status_code == 200  # now "second" is the least recently used
    assert run(server, "third").status_code == 200
    assert on_gpu(server) == {"first", "third"}


def test_a_model_the_user_loaded_stays_on_the_gpu(server: InProcessServer) -> None:
    with server.client() as client:
        assert client.post("/admin/api/models/first/load", headers=server.admin_headers).status_code == 200
    assert run(server, "second").status_code == 200
    assert run(server, "third").status_code == 200
    assert on_gpu(server) == {"first", "third"}  # "second" went, though "first" was used longer ago
    with server.client() as client:
        assert client.post("/admin/api/models/third/load", headers=server.admin_headers).status_code == 200
    # Nothing left to evict: the model still loads (device choice puts it on the CPU or splits it), nobody is unloaded.
    assert run(server, "second").status_code == 200
    assert on_gpu(server) == {"first", "second", "third"}


def test_a_cuda_error_mid_job_is_a_503_and_the_next_request_gets_a_fresh_runner(server: InProcessServer) -> None:
    first = run(server, "first").json()["result"]["pid"]
    with server.client() as client:
        failed = client.post("/test/run/first", json={"job": {"cuda_error": True}})
    assert failed.status_code == 503
    error = failed.json()["error"]
    assert error["message"].startswith("The GPU failed during this request (CUDA error: an illegal memory access")
    assert "reloaded on the next request" in error["message"]
    again = run(server, "first")
    assert again.status_code == 200, again.text
    assert again.json()["result"]["pid"] != first
