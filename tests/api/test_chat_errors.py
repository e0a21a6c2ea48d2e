"""Chat when things go wrong: bad requests, prompts too long, clients that leave, busy and crashing engines.

Every failure must arrive as the contract's envelope with the right status,
never a 500, a hang or a crash.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

MODEL = "smollm2-135m-instruct"
HELLO = [{"role": "user", "content": "Say hello."}]
ONE_TOOL = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def ok(**extra: object) -> dict[str, object]:
    return {"model": MODEL, "messages": HELLO, "max_tokens": 4, **extra}


BAD_REQUESTS = [
    pytest.param({"model": MODEL}, "'messages'", id="missing-messages"),
    pytest.param({"messages": HELLO}, "'model'", id="missing-model"),
    pytest.param(ok(messages=[]), "messages", id="empty-messages"),
    pytest.param(ok(messages=[{"role": "wizard", "content": "hi"}]), "messages.0.role", id="bad-role"),
    pytest.param(ok(messages=[{"role": "user"}]), "messages.0", id="no-content"),
    pytest.param(ok(messages=[{"role": "user", "content": 5}]), "messages.0.content", id="content-number"),
    pytest.param(
        ok(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        "messages.0.content",
        id="image-part",
    ),
    pytest.param(ok(n=2), "'n'", id="n-2"),
    pytest.param(ok(temperature=3), "temperature", id="temperature"),
    pytest.param(ok(top_p=1.5), "top_p", id="top-p"),
    pytest.param(ok(presence_penalty=5), "presence_penalty", id="presence-penalty"),
    pytest.param(ok(frequency_penalty=-3), "frequency_penalty", id="frequency-penalty"),
    pytest.param(ok(max_tokens=0), "max_tokens", id="max-tokens-0"),
    pytest.param(ok(max_completion_tokens=-1), "max_completion_tokens", id="max-completion-tokens"),
    pytest.param(ok(stop=5), "stop", id="stop-number"),
    pytest.param(ok(stop=["x"] * 17), "stop", id="stop-too-many"),
    pytest.param(ok(seed="abc"), "seed", id="seed"),
    pytest.param(ok(stream=[1]), "stream", id="stream"),
    pytest.param(ok(stream_options={"include_usage": "maybe"}), "stream_options.include_usage", id="stream-options"),
    pytest.param(ok(logit_bias={"abc": 1}), "logit_bias", id="logit-bias-key"),
    pytest.param(ok(logit_bias={"5": 500}), "logit_bias", id="logit-bias-value"),
    pytest.param(ok(response_format={"type": "xml"}), "response_format", id="response-format"),
    pytest.param(ok(response_format={"type": "json_schema"}), "response_format", id="json-schema-missing"),
    pytest.param(ok(tools=[{"type": "function", "function": {"description": "x"}}]), "tools.0.function", id="tool-without-name"),
    pytest.param(ok(tools=[{"type": "function", "function": {"name": "two words"}}]), "tools.0.function.name", id="tool-name"),
    pytest.param(ok(tools=ONE_TOOL, tool_choice="sometimes"), "tool_choice", id="tool-choice-value"),
    pytest.param(ok(tool_choice="required"), "tool_choice", id="tool-choice-without-tools"),
    pytest.param(
        ok(tools=ONE_TOOL, tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice", id="tool-choice-unknown"
    ),
    pytest.param(ok(logprobs=True), "logprobs", id="logprobs"),
    pytest.param(ok(functions=[{"name": "f"}]), "functions", id="functions"),
    pytest.param(ok(keep_alive="soon"), "keep_alive", id="keep-alive"),
    pytest.param(ok(model="bogus-model"), "bogus-model", id="unknown-model"),
    pytest.param(ok(model="whisper-tiny.en"), "whisper-tiny.en", id="not-a-chat-model"),
]


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS)
def test_bad_request_is_malformed_naming_the_field(http, body, field):
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.headers.get("x-request-id")
    error = response.json()["error"]
    assert set(error) == {"kind", "provider", "message"}
    assert error["kind"] == "malformed" and error["provider"] == "aistack"
    assert field in error["message"]


@pytest.mark.parametrize("raw", [b"{bad json", b"[1, 2]", b'"text"', b""], ids=["invalid-json", "array", "string", "empty"])
def test_body_that_is_not_a_json_object(http, raw):
    response = http.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["kind"] == "malformed"


def test_token_id_outside_the_vocabulary_is_malformed(http):
    response = http.post("/v1/chat/completions", json=ok(logit_bias={"999999": 5}))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error == {"kind": "malformed", "provider": "llama.cpp", "message": error["message"]}
    assert "logit_bias" in error["message"]


def test_sdk_raises_bad_request(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=MODEL, messages=HELLO, n=3)
    assert caught.value.body["kind"] == "malformed"


# A small context makes overflow and clipping cheap to reach --------------------------------
@pytest.fixture(scope="module")
def small_context(starter_data_dir: Path):  # type: ignore[no-untyped-def]
    from tests.conftest import ServerProcess

    server = ServerProcess(starter_data_dir, {"AISTACK_LLM_CONTEXT": "256", "AISTACK_LLM_STREAM_INTERVAL_MS": "0"})
    yield server
    server.stop()


def test_prompt_longer_than_the_context_is_overflow(small_context):
    long = [{"role": "user", "content": "word " * 400}]
    with httpx.Client(base_url=small_context.url, timeout=60) as client:
        for stream in (False, True):
            response = client.post("/v1/chat/completions", json={"model": MODEL, "messages": long, "stream": stream})
            assert response.status_code == 413
            assert response.json()["error"]["kind"] == "overflow"
            assert response.json()["error"]["provider"] == "llama.cpp"
            assert "256" in response.json()["error"]["message"]
        assert client.post("/v1/chat/completions", json=ok()).status_code == 200
    # The user's own mistake is answered, not logged as an engine failure with a traceback.
    assert "overflow" in small_context.log() and "Traceback" not in small_context.log()


def test_max_tokens_beyond_the_context_is_clipped(small_context, eos):
    prompt = [{"role": "user", "content": "Tell me a long story about the sea. " * 8}]
    with httpx.Client(base_url=small_context.url, timeout=60) as client:
        body = {"model": MODEL, "messages": prompt, "max_tokens": 5000, "logit_bias": {str(eos): -100}}
        answer = client.post("/v1/chat/completions", json=body).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["total_tokens"] == 256


def test_stream_interval_zero_sends_every_token(small_context):
    client = openai.OpenAI(base_url=small_context.url + "/v1", api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=20, stream=True, temperature=0,
                                       stream_options={"include_usage": True})
    )
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    # Greedy, so the answer is fixed; it is plain ASCII, where every token is whole text on its own.
    # (A character split over several tokens, such as an emoji, is held until it is complete.)
    assert "".join(content).isascii()
    assert len(content) == chunks[-1].usage.completion_tokens


# Clients that leave, a busy model, an engine that dies -------------------------------------
def _runner_pid(http: httpx.Client) -> int | None:
    rows = http.get("/admin/api/models").json()["data"]
    return next(r for r in rows if r["id"] == MODEL).get("runner_pid")


def _endless(eos: int) -> dict[str, object]:
    story = [{"role": "user", "content": "Write a very long story about a dragon."}]
    return {"model": MODEL, "messages": story, "max_tokens": 3000, "stream": True, "logit_bias": {str(eos): -100}}


def test_disconnect_mid_stream_frees_the_model_at_once(http, server, eos):
    """A hang-up stops generation before the next token: same runner, 499 logged, the next request waits < 1 s.

    A token takes about 10 ms here; 1 s is a hundred of them. A runner that ignores
    the cancel would write on to 3000 tokens and be killed after AISTACK_CANCEL_GRACE_SEC (3 s).
    """
    http.post("/v1/chat/completions", json=ok())
    pid = _runner_pid(http)
    gone, after = f"chat-gone-{uuid.uuid4().hex[:8]}", f"chat-next-{uuid.uuid4().hex[:8]}"
    with http.stream("POST", "/v1/chat/completions", json=_endless(eos), headers={"X-Request-ID": gone}) as r:
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 4:
                break
    # The runner stops between two tokens and takes the next request; it is not killed and restarted.
    answer = http.post("/v1/chat/completions", json=ok(), headers={"X-Request-ID": after})
    assert answer.status_code == 200
    assert _runner_pid(http) == pid
    record = server.access_record(gone)
    assert record["status"] == 499
    assert float(server.access_record(after)["slot_wait_ms"]) < 1000


def test_disconnect_while_reading_a_long_prompt(http):
    """The prompt is read a batch at a time, so leaving during a long prompt stops the runner, not kills it."""
    http.post("/v1/chat/completions", json=ok())
    pid = _runner_pid(http)
    long = {"model": MODEL, "messages": [{"role": "user", "content": "word " * 3000}], "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=long) as r:
        assert next(line for line in r.iter_lines() if line.startswith("data: "))
    assert http.post("/v1/chat/completions", json=ok()).status_code == 200
    assert _runner_pid(http) == pid



def test_engine_crash_mid_stream_is_an_error_event(http, openai_client, eos):
    http.post("/v1/chat/completions", json=ok())
    pid = _runner_pid(http)
    assert pid
    body = _endless(eos)
    stream = openai_client.chat.completions.create(
        model=MODEL,
        messages=body["messages"],
        max_tokens=3000,
        stream=True,
        logit_bias={str(eos): -100},
    )
    with pytest.raises(openai.APIError) as caught:
        for i, _chunk in enumerate(stream):
            if i == 2:
                os.kill(pid, signal.SIGKILL)
    assert caught.value.body["kind"] == "network" and caught.value.body["provider"] == "llama.cpp"
    answer = http.post("/v1/chat/completions", json=ok())
    assert answer.status_code == 200 and _runner_pid(http) != pid


def test_engine_crash_during_a_whole_answer_is_a_503(http, eos):
    http.post("/v1/chat/completions", json=ok())
    pid = _runner_pid(http)
    assert pid
    result: dict[str, httpx.Response] = {}
    body = {**_endless(eos), "stream": False}
    worker = threading.Thread(target=lambda: result.setdefault("r", http.post("/v1/chat/completions", json=body)))
    worker.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        row = next(r for r in http.get("/admin/api/models").json()["data"] if r["id"] == MODEL)
        if row.get("busy"):
            break
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    worker.join(60)
    response = result["r"]
    assert response.status_code == 503
    assert response.json()["error"]["kind"] == "network" and response.json()["error"]["provider"] == "llama.cpp"
    assert http.post("/v1/chat/completions", json=ok()).status_code == 200


def test_error_event_wire_format(http, eos):
    """Raw SSE: after an engine failure the last event is {"type": "error", "error": {...}}, with no [DONE]."""
    http.post("/v1/chat/completions", json=ok())
    pid = _runner_pid(http)
    assert pid
    lines = []
    with http.stream("POST", "/v1/chat/completions", json=_endless(eos)) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                lines.append(line)
                if len(lines) == 3:
                    os.kill(pid, signal.SIGKILL)
    last = json.loads(lines[-1][6:])
    assert last["type"] == "error" and last["error"]["kind"] == "network"
    assert "data: [DONE]" not in lines
