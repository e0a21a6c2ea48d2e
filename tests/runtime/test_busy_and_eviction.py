"""Queueing, the busy 503 and eviction on the real starter models, through /v1/* and real runners.

(tests/runtime/test_queue.py drives the same queue with the scripted engine, for the
orders and races only a scripted job can set up; here the real routes, real
engines and a real client prove what a user sees.)

Eviction runs on a server that sees a machine of a set RAM size, where each
loaded model takes exactly the memory the manager estimates for it
(`AISTACK_TEST_RAM_MB`, tests/faults/sitecustomize.py): the same decisions on
any machine, whatever else it is running.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, ServerProcess
from tests.support.observe import STARTER_ASR, STARTER_LLM, STARTER_TTS, is_loaded, wait_until
from tests.support.speech import SHORT_TEXT, clip

CHAT = "/v1/chat/completions"



def long_answer(eos: int, tokens: int) -> dict[str, Any]:
    """A streamed chat that always runs to `tokens` tokens (the end-of-turn token is banned)."""
    return {"model": STARTER_LLM, "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
            "max_tokens": tokens, "stream": True, "temperature": 0, "logit_bias": {str(eos): -100}}


def short(request_id: str, url: str) -> httpx.Response:
    body = {"model": STARTER_LLM, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3}
    return httpx.post(url + CHAT, json=body, headers={"X-Request-ID": request_id}, timeout=120)


@pytest.fixture(scope="module")
def queue_server(starter_data_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(starter_data_dir, {"AISTACK_QUEUE_MAX": "1", "AISTACK_QUEUE_WAIT_SEC": "120",
                                              "AISTACK_LLM_PARALLEL": "1"})
    yield server
    server.stop()


def test_a_request_for_a_busy_model_waits_its_turn_and_a_full_queue_is_busy(queue_server: ServerProcess,
                                                                           eos: int) -> None:
    url = queue_server.url
    assert short("warm", url).status_code == 200
    waiter, refused = f"queued-{uuid.uuid4().hex[:8]}", f"refused-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=url, timeout=120) as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        with client.stream("POST", CHAT, json=long_answer(eos, 200)) as stream:
            lines = stream.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            queued = pool.submit(short, waiter, url)
            assert wait_until(lambda: _row(url)["queued"] == 1, 30)
            full = short(refused, url)  # one waiting already: AISTACK_QUEUE_MAX=1
            assert not queued.done()  # still waiting: the model is busy with the stream
            rest = [line for line in lines if line.startswith("data: ")]
            finished_at = time.monotonic()
        answer = queued.result(120)
        answered_at = time.monotonic()
    assert rest[-1] == "data: [DONE]"  # the first stream ran to its end, undisturbed
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    assert answered_at >= finished_at - 0.05
    assert float(queue_server.access_record(waiter)["slot_wait_ms"]) > 0
    assert full.status_code == 503
    error = full.json()["error"]
    assert f"Retry in about {full.headers['retry-after']} s" in error["message"]
    assert error["kind"] == "network" and "AISTACK_QUEUE_MAX" in error["message"], error
    assert queue_server.access_record(refused)["status"] == 503


def test_a_wait_past_the_limit_is_busy_naming_it(starter_data_dir: Path, eos: int) -> None:
    server = ServerProcess(starter_data_dir, {"AISTACK_QUEUE_WAIT_SEC": "1", "AISTACK_LLM_PARALLEL": "1"})
    try:
        assert short("warm", server.url).status_code == 200
        with httpx.Client(base_url=server.url, timeout=120) as client:
            with client.stream("POST", CHAT, json=long_answer(eos, 3000)) as stream:
                lines = stream.iter_lines()
                next(line for line in lines if line.startswith("data: "))
                started = time.monotonic()
                busy = short("waited-too-long", server.url)
                waited = time.monotonic() - started
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
        assert "AISTACK_QUEUE_WAIT_SEC" in busy.json()["error"]["message"]
        assert 1.0 <= waited < 10, waited
    finally:
        server.stop()


def _row(url: str, model_id: str = STARTER_LLM) -> dict[str, Any]:
    rows = httpx.get(url + "/admin/api/models", timeout=30).json()["data"]
    return dict(next(r for r in rows if r["id"] == model_id))


# Eviction ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def needs(starter_data_dir: Path) -> dict[str, int]:
    """What the manager estimates each starter model needs (bytes), computed by the same code."""
    from models.core.settings import Settings
    from models.runtime.placement import memory_need
    from models.store.model_store import ModelStore

    store = ModelStore(starter_data_dir / "models")
    context = Settings(data_dir=starter_data_dir).llm_context
    return {m: memory_need(store.get(m), context) for m in (STARTER_ASR, STARTER_TTS, STARTER_LLM)}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small_machine(starter_data_dir: Path, needs: dict[str, int]) -> Iterator[ServerProcess]:
    """Room for any two of the three starter models, never all three."""
    total_mb = (sum(needs.values()) - (1 << 20)) / 2**20
    path = os.pathsep.join(p for p in (str(ROOT / "tests" / "faults"), os.environ.get("PYTHONPATH")) if p)
    server = ServerProcess(starter_data_dir, {"AISTACK_TEST_RAM_MB": f"{total_mb:.6f}", "AISTACK_MEMORY_RESERVE_MB": "0",
                                              "PYTHONPATH": path})
    yield server
    server.stop()


def use(server: ServerProcess, model_id: str) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        if model_id == STARTER_ASR:
            response = client.post("/v1/audio/transcriptions", files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))})
        elif model_id == STARTER_TTS:
            response = client.post("/v1/audio/speech", json={"input": "Hello there.", "response_format": "pcm"})
        else:
            response = client.post(CHAT, json={"model": model_id, "max_tokens": 2,
                                               "messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 200, response.text


def loaded(server: ServerProcess) -> set[str]:
    return {m for m in (STARTER_ASR, STARTER_TTS, STARTER_LLM) if is_loaded(server.url, m)}


def test_eviction_unloads_the_least_recently_used_model(small_machine: ServerProcess) -> None:
    use(small_machine, STARTER_ASR)
    use(small_machine, STARTER_TTS)
    use(small_machine, STARTER_ASR)  # now the voice is the least recently used
    assert loaded(small_machine) == {STARTER_ASR, STARTER_TTS}
    use(small_machine, STARTER_LLM)
    assert loaded(small_machine) == {STARTER_ASR, STARTER_LLM}
    use(small_machine, STARTER_TTS)  # Whisper was used before the chat model
    assert loaded(small_machine) == {STARTER_LLM, STARTER_TTS}
    assert "evicting whisper-tiny.en to make room for piper-en_US-joe-medium" in small_machine.log()


def test_models_the_user_loaded_are_never_evicted_and_the_503_says_why(small_machine: ServerProcess,
                                                                        needs: dict[str, int]) -> None:
    admin = {"headers": small_machine.admin_headers, "timeout": 120}
    for model_id in (STARTER_ASR, STARTER_LLM):
        response = httpx.post(f"{small_machine.url}/admin/api/models/{model_id}/load", **admin)  # type: ignore[arg-type]
        assert response.status_code == 200 and response.json()["pinned"] is True, response.text
    assert loaded(small_machine) == {STARTER_ASR, STARTER_LLM}
    refused = httpx.post(small_machine.url + "/v1/audio/speech", json={"input": "Hello."}, timeout=120)
    assert refused.status_code == 503, refused.text
    message = refused.json()["error"]["message"]
    free = sum(needs.values()) - (1 << 20) - needs[STARTER_ASR] - needs[STARTER_LLM]
    numbers = re.search(r"needs about (\d+) MB and (\d+) MB are free", message)
    assert numbers and (int(numbers[1]), int(numbers[2])) == (needs[STARTER_TTS] >> 20, free >> 20), message
    assert STARTER_ASR in message and STARTER_LLM in message and "unload" in message.lower()
    assert loaded(small_machine) == {STARTER_ASR, STARTER_LLM}  # nothing the user loaded went away
    for model_id in (STARTER_ASR, STARTER_LLM):
        httpx.post(f"{small_machine.url}/admin/api/models/{model_id}/unload", **admin)  # type: ignore[arg-type]
