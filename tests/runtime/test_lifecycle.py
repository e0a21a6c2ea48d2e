"""Model lifecycle on the three real starter models, through /v1/* and real runner processes.

Keep-alive (the server default, a request's seconds, "5m", -1 and 0), unloading
through the admin API and the request body limit, each seen as a user sees
them: the model's row in the admin API and whether its runner process is alive.
A private server, so that nothing here unloads a model the shared server's
other tests are using.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.support.observe import (
    STARTER_ASR,
    STARTER_LLM,
    STARTER_TTS,
    is_loaded,
    model_row,
    process_alive,
    runner_pid,
    wait_until,
)
from tests.support.speech import SHORT_TEXT, clip

DEFAULT_KEEP_ALIVE = 4.0  # the server's AISTACK_MODEL_KEEP_ALIVE_SEC here
BODY_LIMIT_MB = 0.05
SWEEP_SLACK = 3.0  # the manager checks expiry twice a second; the rest is room for a busy machine


@pytest.fixture(scope="module")
def lifecycle(starter_data_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(starter_data_dir, {"AISTACK_MODEL_KEEP_ALIVE_SEC": str(DEFAULT_KEEP_ALIVE),
                                              "AISTACK_MAX_BODY_MB": str(BODY_LIMIT_MB)})
    yield server
    server.stop()


def use(server: ServerProcess, model_id: str, keep_alive: Any = None) -> None:
    """One real request to the model; `keep_alive` None leaves the field out."""
    extra = {} if keep_alive is None else {"keep_alive": keep_alive}
    with httpx.Client(base_url=server.url, timeout=120) as client:
        if model_id == STARTER_ASR:
            data = {k: str(v) for k, v in extra.items()}
            response = client.post("/v1/audio/transcriptions", files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))},
                                   data=data)
        elif model_id == STARTER_TTS:
            response = client.post("/v1/audio/speech", json={"input": "Hello there.", "response_format": "pcm", **extra})
        else:
            response = client.post("/v1/chat/completions", json={
                "model": model_id, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}], **extra})
    assert response.status_code == 200, response.text


def expires_in(server: ServerProcess, model_id: str) -> float | None:
    row = model_row(server.url, model_id)
    assert row["loaded"], row
    value = row.get("expires_in_sec")
    return None if value is None else float(value)


def unloaded_within(server: ServerProcess, model_id: str, seconds: float) -> bool:
    return wait_until(lambda: not is_loaded(server.url, model_id), timeout=seconds, interval=0.1)


def test_keep_alive_default_seconds_5m_forever_and_zero(lifecycle: ServerProcess) -> None:
    use(lifecycle, STARTER_ASR, keep_alive=2)  # the request's own seconds
    assert 0 < (expires_in(lifecycle, STARTER_ASR) or 0) <= 2
    asr_pid = runner_pid(lifecycle.url, STARTER_ASR)
    use(lifecycle, STARTER_LLM)  # the server default
    assert 0 < (expires_in(lifecycle, STARTER_LLM) or 0) <= DEFAULT_KEEP_ALIVE
    llm_pid = runner_pid(lifecycle.url, STARTER_LLM)
    use(lifecycle, STARTER_TTS, keep_alive="5m")
    assert 290 < (expires_in(lifecycle, STARTER_TTS) or 0) <= 300

    # Two seconds: gone before the default would end it (the chat model was used later and has four), process too.
    assert unloaded_within(lifecycle, STARTER_ASR, 2 + SWEEP_SLACK)
    assert is_loaded(lifecycle.url, STARTER_LLM)
    assert wait_until(lambda: not process_alive(asr_pid), timeout=5)
    # The server default.
    assert unloaded_within(lifecycle, STARTER_LLM, DEFAULT_KEEP_ALIVE + SWEEP_SLACK)
    assert wait_until(lambda: not process_alive(llm_pid), timeout=5)
    assert is_loaded(lifecycle.url, STARTER_TTS)  # five minutes are far from over

    # -1 keeps the model past the default; 0 unloads it right after the answer.
    use(lifecycle, STARTER_LLM, keep_alive=-1)
    assert expires_in(lifecycle, STARTER_LLM) is None
    use(lifecycle, STARTER_ASR, keep_alive=0)
    assert unloaded_within(lifecycle, STARTER_ASR, SWEEP_SLACK)
    use(lifecycle, STARTER_ASR)  # loaded again with the default: outlived by the -1 model
    assert unloaded_within(lifecycle, STARTER_ASR, DEFAULT_KEEP_ALIVE + SWEEP_SLACK)
    assert is_loaded(lifecycle.url, STARTER_LLM) and expires_in(lifecycle, STARTER_LLM) is None


def test_unload_ends_the_runner_and_the_next_request_loads_again(lifecycle: ServerProcess) -> None:
    use(lifecycle, STARTER_TTS, keep_alive="5m")
    pid = runner_pid(lifecycle.url, STARTER_TTS)
    assert process_alive(pid)
    response = httpx.post(f"{lifecycle.url}/admin/api/models/{STARTER_TTS}/unload", headers=lifecycle.admin_headers,
                          timeout=60)
    assert response.status_code == 200 and response.json()["loaded"] is False
    assert not is_loaded(lifecycle.url, STARTER_TTS) and runner_pid(lifecycle.url, STARTER_TTS) is None
    assert wait_until(lambda: not process_alive(pid), timeout=5)  # the memory really came back
    use(lifecycle, STARTER_TTS)
    again = runner_pid(lifecycle.url, STARTER_TTS)
    assert again is not None and again != pid and process_alive(again)


def test_request_body_limit(lifecycle: ServerProcess) -> None:
    """AISTACK_MAX_BODY_MB caps JSON bodies on the real routes (declared or chunked); uploads have their own limit."""
    big = "word " * int(BODY_LIMIT_MB * 2**20 / 4)
    with httpx.Client(base_url=lifecycle.url, timeout=120) as client:
        for url, body in (
            ("/v1/chat/completions", {"model": STARTER_LLM, "messages": [{"role": "user", "content": big}]}),
            ("/v1/audio/speech", {"input": big}),
            ("/v1/embeddings", {"model": STARTER_LLM, "input": big}),
        ):
            response = client.post(url, json=body)
            assert response.status_code == 413, (url, response.text)
            error = response.json()["error"]
            assert error["kind"] == "overflow" and "AISTACK_MAX_BODY_MB" in error["message"], error
        raw = f'{{"input": "{big}"}}'.encode()
        chunked = client.post("/v1/audio/speech", content=(raw[i : i + 8192] for i in range(0, len(raw), 8192)),
                              headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["error"]["kind"] == "overflow"
        upload = clip(SHORT_TEXT, "flac")
        assert len(upload) > BODY_LIMIT_MB * 2**20  # bigger than the JSON limit, well within the upload limit
        fine = client.post("/v1/audio/transcriptions", files={"file": ("clip.flac", upload)})
        assert fine.status_code == 200, fine.text
