"""Which model makes room for another, with the machine's free memory played by a fake probe.

The manager, runners and HTTP stack are real (scripted engine); only the
memory reading is injected, through the same `MemoryProbe` interface the real
psutil reading uses, so the numbers are exact and the test can be run anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.runtime import placement
from models.store.model_store import ModelStore
from tests.support.inprocess import InProcessServer, install_fake_model

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

MODELS = ("first", "second", "third", "fourth")


class FakeMachine:
    """Room for `slots` loaded models: free RAM is what the loaded models' estimates leave."""

    def __init__(self, server: InProcessServer, slots: int):
        self.server = server
        store = ModelStore(server.data_dir / "models")
        self.need = placement.memory_need(store.get("first"), 4096)  # type: ignore[arg-type]
        self.total = slots * self.need + self.need // 2

    def ram_available(self) -> int:
        loaded = [m for m in MODELS if self.server.status(m)["loaded"]]
        return self.total - len(loaded) * self.need


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[FakeMachine]:
    data_dir = tmp_path / "data"
    for model_id in MODELS:
        install_fake_model(data_dir, model_id)
    server = InProcessServer(data_dir, memory_reserve_mb=0)
    fake = FakeMachine(server, slots=2)
    server.manager.memory = fake
    yield fake
    server.stop()


def run(server: InProcessServer, model_id: str) -> httpx.Response:
    with server.client() as client:
        return client.post(f"/test/run/{model_id}", json={"job": {}})


def load(server: InProcessServer, model_id: str) -> None:
    with server.client() as client:
        assert client.post(f"/admin/api/models/{model_id}/load", headers=server.admin_headers).status_code == 200


def loaded(server: InProcessServer) -> set[str]:
    return {m for m in MODELS if server.status(m)["loaded"]}


def test_the_least_recently_used_idle_model_makes_room(machine: FakeMachine) -> None:
    server = machine.server
    for model_id in ("first", "second", "first"):  # first is now the more recently used
        assert run(server, model_id).status_code == 200
    assert run(server, "third").status_code == 200
    assert loaded(server) == {"first", "third"}
    assert run(server, "fourth").status_code == 200
    assert loaded(server) == {"third", "fourth"}


def test_a_model_the_user_loaded_is_never_evicted(machine: FakeMachine) -> None:
    server = machine.server
    load(server, "first")
    for model_id in ("second", "third", "fourth", "second"):
        assert run(server, model_id).status_code == 200
        assert "first" in loaded(server)
    assert loaded(server) == {"first", "second"}


def test_when_only_user_loaded_models_stand_in_the_way_the_503_names_them(machine: FakeMachine) -> None:
    server = machine.server
    load(server, "first")
    load(server, "second")
    response = run(server, "third")
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["kind"] == "network"
    assert "Not enough memory to load third" in error["message"]
    assert "Models you loaded stay until you unload them: first, second" in error["message"]
    assert loaded(server) == {"first", "second"}
    with server.client() as client:
        client.post("/admin/api/models/second/unload", headers=server.admin_headers)
    assert run(server, "third").status_code == 200
    assert loaded(server) == {"first", "third"}


def test_a_chat_models_estimate_counts_its_context_cache(starter_data_dir: Path) -> None:
    from models.store.gguf import read_gguf

    store = ModelStore(starter_data_dir / "models")
    chat = next(m for m in store.installed() if m.capability == "llm")
    header = read_gguf(next(chat.path.glob("*.gguf")))
    small = placement.memory_need(chat, 512)
    large = placement.memory_need(chat, 4096)
    assert small > int(chat.size_bytes * placement.WORKING_FACTOR) + placement.RUNTIME_BYTES
    per_token = 2 * header.layer_count * header.embedding_length * header.head_count_kv // header.head_count * 2
    context = min(int(chat.options.get("context") or 4096), header.context_length, 4096)
    assert large - small == (context - 512) * per_token > 0


def test_a_chat_model_short_of_memory_for_all_its_sequences_loads_with_fewer(starter_data_dir: Path) -> None:
    """Room for the starter chat model with 2 sequences, not the 4 asked for: it loads with 2, not a 503."""
    store = ModelStore(starter_data_dir / "models")
    chat = next(m for m in store.installed() if m.capability == "llm")
    room = placement.memory_need(chat, 4096, 2) + (1 << 20)
    assert placement.memory_need(chat, 4096, 4) > room

    class TwoSequences:
        def ram_available(self) -> int:
            return room

    server = InProcessServer(starter_data_dir, memory_reserve_mb=0, llm_parallel=4)
    server.manager.memory = TwoSequences()
    try:
        with server.client(120) as client:
            body = {"model": chat.id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
            assert client.post("/v1/chat/completions", json=body).status_code == 200
        assert server.status(chat.id)["slots"] == {"total": 2, "busy": 0, "free": 2}
    finally:
        server.stop()
