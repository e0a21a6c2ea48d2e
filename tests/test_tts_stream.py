"""Streaming speech: audio arrives sentence by sentence, chunks make one valid file, a hang-up stops the work."""

from __future__ import annotations

import io
import time
import uuid

import pytest

from tests.tts_audio import TEN_SENTENCES, VOICE, decode, sse_audio, sse_events


def stream_chunks(http, body: dict) -> tuple[list[bytes], list[float], float, dict[str, str]]:
    """(chunks, arrival time of each, time the response ended, headers), times from the request."""
    chunks, arrivals = [], []
    started = time.perf_counter()
    with http.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200, r.read()
        headers = dict(r.headers)
        for chunk in r.iter_raw():
            chunks.append(chunk)
            arrivals.append(time.perf_counter() - started)
    return chunks, arrivals, time.perf_counter() - started, headers


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3", "opus", "aac", "flac"])
def test_stream_starts_before_the_paragraph_is_done_and_makes_one_file(http, fmt: str) -> None:
    chunks, arrivals, ended, headers = stream_chunks(
        http, {"input": TEN_SENTENCES, "response_format": fmt, "stream": True}
    )
    rate = int(headers["x-sample-rate"])
    assert headers["transfer-encoding"] == "chunked" and "x-audio-duration" not in headers
    assert len(chunks) >= 2 and arrivals[0] < arrivals[-1] <= ended  # audio came while the rest was made
    duration, decoded_rate, level = decode(b"".join(chunks), fmt, pcm_rate=rate)
    assert decoded_rate == rate and 20 < duration < 60 and level > 0.02
    if fmt in ("wav", "mp3", "opus"):  # a player can start on the first chunk alone
        first, _, _ = decode(chunks[0], fmt)
        assert first > 0.5


def test_sse_sends_one_delta_per_sentence_then_done(http) -> None:
    started = time.perf_counter()
    arrivals, lines = [], []
    body = {"input": TEN_SENTENCES, "response_format": "pcm", "stream": True, "stream_format": "sse"}
    with http.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                lines.append(line)
                arrivals.append(time.perf_counter() - started)
    events = sse_events("\n".join(lines))
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) == 10 and arrivals[0] < arrivals[-1]
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
    http.post("/v1/audio/speech", json={"input": "Warm up."})
    pids = server.runner_pids()
    long_text = " ".join(f"This is sentence number {i} of a long text that nobody will hear." for i in range(200))
    body = {"input": long_text, "stream": True, "response_format": "pcm"}
    request_id = f"tts-gone-{uuid.uuid4().hex[:8]}"
    with http.stream("POST", "/v1/audio/speech", json=body, headers={"X-Request-ID": request_id}) as r:
        first = next(r.iter_raw())
        assert len(first) > 0
    after = http.post("/v1/audio/speech", json={"input": "Right after the hang up.", "response_format": "pcm"})
    assert after.status_code == 200 and after.headers["x-voice"] == VOICE
    assert server.runner_pids() == pids  # the job stopped between sentences; the runner was not killed
    record = server.access_record(request_id)
    assert record["status"] == 499 and record["extra"]["stream"] is True and "audio_sec" not in record["extra"]


def test_second_request_while_a_stream_runs_gets_busy(http) -> None:
    long_text = " ".join(f"Sentence {i} keeps this voice busy for a while." for i in range(100))
    with http.stream("POST", "/v1/audio/speech", json={"input": long_text, "stream": True, "response_format": "pcm"}) as r:
        chunks = r.iter_raw()  # keep the iterator: dropping it would close the response
        next(chunks)
        busy = http.post("/v1/audio/speech", json={"input": "Me too."})
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) > 0
    assert busy.json()["error"]["kind"] == "network" and "busy" in busy.json()["error"]["message"]
    assert http.post("/v1/audio/speech", json={"input": "Now it is free."}).status_code == 200
