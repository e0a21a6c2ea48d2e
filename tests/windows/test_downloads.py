"""Downloads on Windows: a `.part` file survives the app being ended mid-download and is resumed.

The stand-in Hugging Face (tests/support/fake_hub.py, stdlib only) runs in the test process;
the app downloads from it exactly as from the real hub (HF_ENDPOINT).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_hub import FakeHub
from tests.windows.support import STARTER_MODELS, App, wait_until

REPO = "someone/SmolLM2-GGUF"
Q4 = "SmolLM2-135M-Instruct-Q4_K_M.gguf"
Q4_ID = "smollm2-135m-instruct-q4_k_m"
SOURCE = STARTER_MODELS / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def hub_server() -> Iterator[FakeHub]:
    fake = FakeHub()
    fake.add_file(REPO, Q4, SOURCE)
    yield fake
    fake.close()


def download_row(app: App) -> dict[str, Any] | None:
    rows = httpx.get(app.url + "/admin/api/downloads", timeout=10).json()["data"]
    return next((r for r in rows if r["id"] == Q4_ID), None)


def partial_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "models" / ".partial").rglob("*.part"))


def test_ended_mid_download_then_resumed_byte_identical(hub_server: FakeHub, tmp_path: Path) -> None:
    data = tmp_path / "Downloads Ø"
    app = App(data, "serve", env={"HF_ENDPOINT": hub_server.url})
    hub_server.throttle = 0.1
    started = httpx.post(f"{app.url}/admin/api/add-hf", json={"repo": REPO}, headers=app.admin_headers, timeout=30)
    assert started.status_code == 202, started.text
    wait_until(lambda: (row := download_row(app)) and row["bytes_done"] > (5 << 20), 90, "5 MiB downloaded")
    app.stop()  # TerminateProcess, as Task Manager's "End task" or a crash: the .part file was open for writing
    kept = partial_bytes(data)
    assert kept > (5 << 20)

    hub_server.throttle, hub_server.downloads[:] = 0, []
    app = App(data, "serve", env={"HF_ENDPOINT": hub_server.url})  # resumes by itself
    try:
        wait_until(lambda: (data / "models" / Q4_ID / "manifest.json").is_file(), 90, "the install")
        assert hub_server.ranges(Q4)[0] == f"bytes={kept}-"  # the first request after the restart continues
        assert (data / "models" / Q4_ID / Q4).read_bytes() == SOURCE.read_bytes()
        assert partial_bytes(data) == 0
        reply = httpx.post(f"{app.url}/v1/chat/completions", timeout=120,
                           json={"model": Q4_ID, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
        assert reply.status_code == 200, reply.text
        assert "Traceback" not in app.output()
    finally:
        app.stop()


def test_a_dropped_connection_resumes(hub_server: FakeHub, tmp_path: Path) -> None:
    data = tmp_path / "dropped"
    hub_server.reset_faults()
    cut = int(SOURCE.stat().st_size * 0.4)
    hub_server.drop_after[Q4] = cut
    app = App(data, "serve", env={"HF_ENDPOINT": hub_server.url})
    try:
        started = httpx.post(f"{app.url}/admin/api/add-hf", json={"repo": REPO}, headers=app.admin_headers, timeout=30)
        assert started.status_code == 202, started.text
        wait_until(lambda: (data / "models" / Q4_ID / "manifest.json").is_file(), 90, "the install")
        assert f"bytes={cut}-" in hub_server.ranges(Q4)
        assert (data / "models" / Q4_ID / Q4).read_bytes() == SOURCE.read_bytes()
    finally:
        app.stop()
