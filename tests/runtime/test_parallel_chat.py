"""Parallel chat sequences: one llama.cpp context decodes several requests together (issue 28).

A server with two slots (`AISTACK_LLM_PARALLEL=2`) on the starter chat model,
through the real HTTP API. Each test names a promise of continuous batching and
fails when it is switched off (one slot) or broken (tests/faults.md):
streams interleave, a cancelled sequence frees its slot at once, grammars stay
per sequence, a long prompt is read in slices between the others' tokens, a
seed gives the same answer under load, and a request beyond the slots waits
for as long as its client does instead of being refused.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.harness import ServerProcess

MODEL = "smollm2-135m-instruct"
SLOTS = 2


@pytest.fixture(scope="module")
def two_slots(starter_data_dir: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(starter_data_dir, {"AISTACK_LLM_PARALLEL": str(SLOTS)})
    with httpx.Client(base_url=proc.url, timeout=120) as client:  # load the model before the timings start
        assert client.post("/v1/chat/completions", json=_chat("Hi", max_tokens=2)).status_code == 200
    yield proc
    proc.stop()


@pytest.fixture
def http(two_slots: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=two_slots.url, timeout=180) as client:
        yield client


def _chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def _endless(eos: int, text: str, max_tokens: int) -> dict[str, Any]:
    """A stream that runs exactly `max_tokens` tokens: the end-of-turn token is banned."""
    return _chat(text, max_tokens=max_tokens, stream=True, logit_bias={str(eos): -100})


class Stream(threading.Thread):
    """Reads one streamed chat in a thread, with the arrival time of every content chunk."""

    def __init__(self, client: httpx.Client, body: dict[str, Any], *, stop_after: int | None = None,
                 request_id: str | None = None):
        super().__init__(daemon=True)
        self.client, self.body, self.stop_after = client, body, stop_after
        self.request_id = request_id or f"par-{uuid.uuid4().hex[:8]}"
        self.started_at = 0.0
        self.times: list[float] = []
        self.text = ""
        self.done = False
        self.status = 0
        self.hang_up = threading.Event()  # set it to make the client leave

    def run(self) -> None:
        self.started_at = time.monotonic()
        with self.client.stream("POST", "/v1/chat/completions", json=self.body,
                                headers={"X-Request-ID": self.request_id}) as response:
            self.status = response.status_code
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    self.done = True
                elif line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                        self.times.append(time.monotonic())
                        self.text += chunk["choices"][0]["delta"]["content"]
                if self.hang_up.is_set() or self.stop_after is not None and len(self.times) >= self.stop_after:
                    return  # leaving the block closes the connection: the client hangs up

    def wait_tokens(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times) < count:
            assert time.monotonic() < deadline, f"the stream gave {len(self.times)} chunks, not {count}"
            assert self.is_alive() or len(self.times) >= count, "the stream ended early"
            time.sleep(0.01)


def _slots(http: httpx.Client) -> dict[str, int]:
    rows = http.get("/admin/api/status").json()["models"]
    return dict(next(row for row in rows if row["id"] == MODEL)["slots"])


def test_two_streams_interleave_and_status_shows_both_slots_busy(http: httpx.Client, eos: int) -> None:
    """Both streams have produced tokens before either ends; meanwhile the status says 2 of 2 slots are busy."""
    first = Stream(http, _endless(eos, "Write a long story about a dragon.", 80))
    second = Stream(http, _endless(eos, "Write a long story about a lighthouse.", 80))
    first.start()
    second.start()
    first.wait_tokens(5)
    second.wait_tokens(5)
    busy = _slots(http)
    first.join(120)
    second.join(120)
    assert first.done and second.done
    assert second.times[0] < first.times[-1] and first.times[0] < second.times[-1], "one stream waited for the other"
    assert busy == {"total": SLOTS, "busy": SLOTS, "free": 0}
    assert _slots(http) == {"total": SLOTS, "busy": 0, "free": SLOTS}


def test_a_cancelled_sequence_frees_its_slot_while_the_other_goes_on(http: httpx.Client, two_slots: ServerProcess,
                                                                      eos: int) -> None:
    """With both slots busy, one client hangs up: a third request starts at once, the other stream runs to its end."""
    keeps = Stream(http, _endless(eos, "Write a long story about a river.", 200))
    leaves = Stream(http, _endless(eos, "Write a long story about a mountain.", 200), stop_after=5)
    keeps.start()
    leaves.start()
    leaves.join(60)
    keeps.wait_tokens(10)
    third = Stream(http, _endless(eos, "Write a long story about a forest.", 20))
    third.start()
    third.join(120)
    keeps.join(180)
    assert keeps.done and len(keeps.times) > 20
    assert third.done and third.times[0] < keeps.times[-1], "the third request waited for the other stream to end"
    assert float(str(two_slots.access_record(third.request_id)["slot_wait_ms"])) < 1000
    assert two_slots.access_record(leaves.request_id)["status"] == 499


def test_a_json_schema_request_and_free_text_run_side_by_side(http: httpx.Client) -> None:
    """Each sequence keeps its own sampler and grammar: one answers schema-valid JSON, the other plain prose."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    structured = Stream(http, _chat("Name a big city and its population, as JSON.", stream=True, max_tokens=60,
                                    response_format={"type": "json_schema",
                                                     "json_schema": {"name": "city", "schema": schema}}))
    prose = Stream(http, _chat("Write a short poem about the sea.", stream=True, max_tokens=60, temperature=0))
    structured.start()
    prose.start()
    structured.join(120)
    prose.join(120)
    assert structured.done and prose.done
    assert prose.times[0] < structured.times[-1] and structured.times[0] < prose.times[-1], "they did not overlap"
    answer = json.loads(structured.text)
    assert set(answer) == {"city", "population"} and isinstance(answer["city"], str)
    assert isinstance(answer["population"], int)
    assert not prose.text.lstrip().startswith("{"), f"the free-text answer followed the other's grammar: {prose.text!r}"


def test_a_long_prompt_does_not_stall_a_running_stream_for_more_than_a_slice(http: httpx.Client, eos: int) -> None:
    """While a 2,400-token prompt is read (19 slices of 128 tokens), the running stream gets a token after every
    slice. Counted in tokens, not seconds, so a loaded machine cannot blur it: reading the prompt in 512-token
    slices gives the stream about 5 tokens meanwhile, reading it whole gives it 1."""
    running = Stream(http, _endless(eos, "Write a long story about a dragon.", 400))
    running.start()
    running.wait_tokens(10)
    long_prompt = Stream(http, _endless(eos, "word " * 2400 + "\nSay hi.", 3))
    long_prompt.start()
    long_prompt.join(180)
    assert long_prompt.status == 200 and long_prompt.times, "the long prompt got no answer"
    during = [t for t in running.times if long_prompt.started_at <= t <= long_prompt.times[0]]
    running.join(180)
    assert len(running.times) == 400 or running.done
    assert len(during) >= 15, f"the stream got {len(during)} tokens while the 19 slices of the prompt were read"


def test_the_same_seed_gives_the_same_answer_alone_and_beside_another_stream(http: httpx.Client, eos: int) -> None:
    body = _chat("Invent a name for a new planet and describe it.", max_tokens=40, temperature=0.9, seed=1234)
    alone = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    other = Stream(http, _endless(eos, "Write a long story about a dragon.", 120))
    other.start()
    other.wait_tokens(3)
    beside = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    still_running = other.is_alive()
    other.join(120)
    assert still_running, "the other stream had ended: the seeded request did not run beside it"
    assert beside == alone


@pytest.mark.untimed
def test_a_request_queued_behind_slow_work_is_answered_while_its_client_waits(http: httpx.Client,
                                                                               two_slots: ServerProcess,
                                                                               eos: int) -> None:
    """Both slots hold streams for 31 s, past the old 30 s wait limit; a third request waits them out and is
    answered, not refused."""
    holders = [Stream(http, _endless(eos, f"Write a very long story number {i}.", 3000)) for i in range(SLOTS)]
    for stream in holders:
        stream.start()
    for stream in holders:
        stream.wait_tokens(3)
    waiter = f"par-wait-{uuid.uuid4().hex[:8]}"
    answers: list[httpx.Response] = []
    queued = threading.Thread(target=lambda: answers.append(http.post(
        "/v1/chat/completions", json=_chat("Say hi.", max_tokens=5), headers={"X-Request-ID": waiter}, timeout=300)))
    queued.start()
    time.sleep(31)
    assert not answers, "the third request was answered while both slots were busy"
    for stream in holders:
        stream.hang_up.set()
    queued.join(120)
    assert answers and answers[0].status_code == 200, answers[0].text if answers else "no answer"
    assert float(str(two_slots.access_record(waiter)["slot_wait_ms"])) > 30_000
