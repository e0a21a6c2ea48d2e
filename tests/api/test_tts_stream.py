"""Streaming speech: audio arrives sentence by sentence, chunks make one valid file, a hang-up stops the work.

"Sentence by sentence" is checked against the clock of the same request sent
whole: the first audio of a stream must arrive long before the whole answer
would have been ready, so a server that holds the stream back until its end fails.
"""

from __future__ import annotations

import io
import time
import uuid

import pytest

from tests.support.observe import STARTER_TTS, runner_pid, timed_post, timed_stream
from tests.support.tts_audio import TEN_SENTENCES, VOICE, decode, sse_audio, sse_events

URL = "/v1/audio/speech"
# The first sentence of ten takes about a tenth of the whole answer; half leaves room for a busy machine.
EARLY = 0.5


def stream_chunks(http, body: dict) -> tuple[list[bytes], list[float], float, dict[str, str]]:
    """(chunks, arrival time of each, time the response ended, headers), times from the request."""
    chunks, arrivals = [], []
    started = time.perf_counter()
    with http.stream("POST", URL, json=body) as r:
        assert r.status_code == 200, r.read()
        headers = dict(r.headers)
        for chunk in r.iter_raw():
            chunks.append(chunk)
            arrivals.append(time.perf_counter() - started)
    return chunks, arrivals, time.perf_counter() - started, headers


@pytest.fixture(scope="module")
def whole(server) -> float:  # type: ignore[no-untyped-def]
    """Seconds the paragraph takes answered whole, as raw pcm (the cheapest format, so the strictest yardstick).

    Measured once per run on this machine, with the voice already loaded so no load time counts.
    """
    import httpx

    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert http.post(URL, json={"input": "Warm up.", "response_format": "pcm"}).status_code == 200
        response, seconds = timed_post(http, URL, json={"input": TEN_SENTENCES, "response_format": "pcm"})
    assert response.status_code == 200, response.text
    return seconds


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3", "opus", "aac", "flac"])
def test_stream_starts_before_the_paragraph_is_done_and_makes_one_file(http, whole: float, fmt: str) -> None:
    body = {"input": TEN_SENTENCES, "response_format": fmt, "stream": True}
    chunks, arrivals, ended, headers = stream_chunks(http, body)
    rate = int(headers["x-sample-rate"])
    assert headers["transfer-encoding"] == "chunked" and "x-audio-duration" not in headers
    # The first sentence's audio left the server while the other nine were still being made.
    assert arrivals[0] < EARLY * whole, (arrivals[0], whole)
    assert ended - arrivals[0] > 0.5 * ended, (arrivals, ended)  # and most of the work came after it
    duration, decoded_rate, level = decode(b"".join(chunks), fmt, pcm_rate=rate)
    assert decoded_rate == rate and 20 < duration < 60 and level > 0.02
    if fmt in ("wav", "mp3", "opus"):  # a player can start on the first chunk alone
        first, _, _ = decode(chunks[0], fmt)
        assert first > 0.5


def test_sse_sends_one_delta_per_sentence_then_done(http, whole: float) -> None:
    body = {"input": TEN_SENTENCES, "response_format": "pcm", "stream": True, "stream_format": "sse"}
    timed = timed_stream(http, URL, lines=True, json=body)
    lines = [line for line in timed.pieces if line.startswith("data: ")]
    events = sse_events("\n".join(lines))
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) == 10
    assert timed.first < EARLY * whole, (timed.first, whole)  # the first sentence did not wait for the tenth
    assert timed.ended - timed.first > 0.5 * timed.ended, (timed.arrivals, timed.ended)
    done = events[-1]
    assert done["type"] == "speech.audio.done" and set(done["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    assert done["usage"]["input_tokens"] == len(TEN_SENTENCES)
    pcm = sse_audio(events)
    assert abs(len(pcm) / 2 / 22050 - done["duration"]) < 0.001


def test_stream_format_sse_alone_streams(http) -> None:
    r = http.post("/v1/audio/speech", json={"input": "First. Second.", "stream_format": "sse", "response_format": "mp3"})
    events = sse_events(r.text)
    assert events[-1]["type"] == "speech.audio.done"
    assert decode(sse_audio(events), "mp3")[0] > 0.5


def test_streamed_wav_header_says_size_unknown(http) -> None:
    chunks, _, _, headers = stream_chunks(http, {"input": "Short one. Another.", "stream": True})
    data = b"".join(chunks)
    assert headers["content-type"] == "audio/wav" and data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff"
    import wave

    with wave.open(io.BytesIO(data[:44] + b"\x00" * 4)) as wav:  # the stdlib reader accepts the header too
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (22050, 1, 2)


def test_openai_sdk_streams_chunks(openai_client) -> None:
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEN_SENTENCES, response_format="pcm", extra_body={"stream": True}
    ) as response:
        assert response.headers["x-sample-rate"] == "22050"
        chunks = list(response.iter_bytes(4096))
    assert len(chunks) > 10 and sum(map(len, chunks)) > 20 * 22050 * 2


def test_disconnect_mid_stream_stops_synthesis_and_the_next_request_is_served(server, http) -> None:
    """A hang-up stops the voice between two sentences: same runner, 499 logged, the next request waits < 1 s."""
    http.post(URL, json={"input": "Warm up."})
    pid = runner_pid(server.url, STARTER_TTS)
    long_text = " ".join(f"This is sentence number {i} of a long text that nobody will hear." for i in range(200))
    body = {"input": long_text, "stream": True, "response_format": "pcm"}
    request_id, next_id = f"tts-gone-{uuid.uuid4().hex[:8]}", f"tts-next-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    with http.stream("POST", URL, json=body, headers={"X-Request-ID": request_id}) as r:
        first = next(r.iter_raw())
        first_at = time.perf_counter() - started
        assert len(first) > 0
    after = http.post(URL, json={"input": "Right after the hang up.", "response_format": "pcm"},
                      headers={"X-Request-ID": next_id})
    assert after.status_code == 200 and after.headers["x-voice"] == VOICE
    assert runner_pid(server.url, STARTER_TTS) == pid  # the job stopped between sentences; the runner was not killed
    record = server.access_record(request_id)
    assert record["status"] == 499 and record["extra"]["stream"] is True and "audio_sec" not in record["extra"]
    # One sentence takes about as long as the first chunk did (~0.1 s here); the 200 left would take 10 s or more,
    # and a runner that ignores the cancel is killed only after AISTACK_CANCEL_GRACE_SEC (3 s).
    waited = float(server.access_record(next_id)["slot_wait_ms"])
    assert waited < 1000 * max(1.0, 5 * first_at), (waited, first_at)


def test_second_request_while_a_stream_runs_waits_its_turn(server, http) -> None:
    """Each voice speaks one request at a time: a second one waits in the queue and is answered after the first."""
    import concurrent.futures

    import httpx

    long_text = " ".join(f"Sentence {i} keeps this voice busy for a while." for i in range(20))
    second_id = f"tts-queued-{uuid.uuid4().hex[:8]}"
    with http.stream("POST", URL, json={"input": long_text, "stream": True, "response_format": "pcm"}) as r:
        chunks = r.iter_raw()  # keep the iterator: dropping it would close the response
        next(chunks)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            second = pool.submit(httpx.post, server.url + URL, json={"input": "Me too.", "response_format": "pcm"},
                                 headers={"X-Request-ID": second_id}, timeout=120)
            rest = b"".join(chunks)
            answer = second.result(120)
    assert len(rest) > 22050 * 2 * 10  # the first request got all its audio
    assert answer.status_code == 200 and len(answer.content) > 22050
    assert float(server.access_record(second_id)["slot_wait_ms"]) > 50  # it waited for the stream, in the queue
