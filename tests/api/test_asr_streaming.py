"""Streaming transcription, cancellation and the busy slot, through the real server and runner.

A user watching a transcript appear sees each sentence as soon as Whisper has
decoded it; closing the connection stops the work so the next request runs at
once; a second request while the model is busy is told to retry.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.api.test_asr import URL, wer
from tests.support.asr_engines import ENGINES, install_starter_whisper_as
from tests.support.observe import STARTER_ASR, runner_pid
from tests.support.speech import LONG_TEXT, SHORT_TEXT, clip, repeated_clip, speech, sse_events, wav_bytes

TIMEOUT = httpx.Timeout(120, connect=10)


def test_stream_sends_each_sentence_as_it_is_decoded(server: Any, long_transcript: dict[str, Any]) -> None:
    """Deltas leave while Whisper is still decoding: the first comes well before the done event.

    The clip has two 30 s windows, decoded one after the other when streaming; the
    first window's sentences go out before the second is decoded, so a good part
    of the request's time passes between the first delta and the end. A server
    that holds the stream back sends everything in one burst, and that gap is nothing.
    (Measured within the one request, so a machine busy with other work slows both alike.)
    """
    request_id = f"asr-stream-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        files = {"file": ("long.mp3", clip(LONG_TEXT, "mp3"))}
        started = time.monotonic()
        with client.stream("POST", URL, files=files, data={"stream": "true"},
                           headers={"X-Request-ID": request_id}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))
    kinds = [event["type"] for _, event in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}
    deltas = [(at, event) for at, event in events if event["type"] == "transcript.text.delta"]
    assert len(deltas) >= 9  # one per sentence
    ended = events[-1][0] - started
    still_decoding = events[-1][0] - deltas[0][0]
    assert still_decoding > 0.25 * ended, (still_decoding, ended)  # the first sentence did not wait for the last window
    done = events[-1][1]
    assert done["text"] == "".join(event["delta"] for _, event in deltas).strip()
    assert done["language"] == "en" and done["duration"] > 45
    assert wer(LONG_TEXT, done["text"]) <= 0.15
    for _, event in deltas:
        segment = event["segment"]
        assert segment["words"] and segment["start"] < segment["end"] and segment["text"] == event["delta"].strip()
        assert re.search(r"[.!?]$", segment["text"])
    extra = server.access_record(request_id)["extra"]
    assert extra["stream"] is True and extra["response_format"] == "sse" and extra["language"] == "en"
    assert extra["audio_sec"] > 45 and extra["rtf"] > 0
    assert extra["batched"] is False  # a stream decodes window by window, so each sentence can go out at once
    plain = server.access_record(str(long_transcript["request_id"]))["extra"]
    assert plain["batched"] is True and plain["stream"] is False  # the same clip, asked whole, is batched


def test_auto_with_a_language_no_model_speaks_warns_first(http: httpx.Client) -> None:
    """Only English-only models installed and `language=de`: transcribed anyway, a `language_unsupported` event first."""
    with http.stream("POST", URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))},
                     data={"stream": "true", "language": "de", "model": "auto"}) as response:
        assert response.status_code == 200
        assert "English only" in response.headers["x-aistack-warning"]
        events = [event for _, event in sse_events(response)]
    warning = events[0]
    assert warning["type"] == "warning" and warning["code"] == "language_unsupported"
    assert warning["model"] == STARTER_ASR and "English only" in warning["message"]
    assert [e["type"] for e in events[1:]][-1] == "transcript.text.done"
    assert wer(SHORT_TEXT, events[-1]["text"]) <= 0.10


def test_stream_with_subtitle_granularity_sends_cues(http: httpx.Client) -> None:
    with http.stream("POST", URL, files={"file": ("clip.wav", clip(SHORT_TEXT))},
                     data={"stream": "true", "segment_granularity": "subtitle", "response_format": "srt"}) as response:
        events = [event for _, event in sse_events(response)]
    cues = [e["segment"] for e in events if e["type"] == "transcript.text.delta"]
    assert len(cues) >= 2 and events[-1]["type"] == "transcript.text.done"
    assert all(len(c["text"]) <= 70 and 1.0 - 1e-3 <= c["end"] - c["start"] <= 7.0 + 1e-3 for c in cues)


def test_openai_sdk_streams(openai_client: Any) -> None:
    stream = openai_client.audio.transcriptions.create(
        model="whisper-1", file=("clip.mp3", clip(SHORT_TEXT, "mp3")), stream=True
    )
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) == 2 and events[-1].type == "transcript.text.done"
    assert events[-1].text == "".join(deltas).strip() and wer(SHORT_TEXT, events[-1].text) <= 0.10


def test_a_request_while_a_stream_decodes_waits_its_turn(server: Any) -> None:
    """One job at a time per model: a second request waits in the queue and is served when the stream ends."""
    import concurrent.futures

    second_id = f"asr-queued-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        files = {"file": ("long.mp3", clip(LONG_TEXT, "mp3"))}
        with client.stream("POST", URL, files=files, data={"stream": "true"}) as response:
            events = sse_events(response)  # keep it referenced: a collected generator closes the stream
            assert next(events)[1]["type"] == "transcript.text.delta"
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                second = pool.submit(httpx.post, server.url + URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))},
                                     headers={"X-Request-ID": second_id}, timeout=TIMEOUT)
                rest = [event for _, event in events]
                answer = second.result()
    assert rest[-1]["type"] == "transcript.text.done"  # the stream ran to its end
    assert answer.status_code == 200 and wer(SHORT_TEXT, answer.json()["text"]) <= 0.10
    assert float(server.access_record(second_id)["slot_wait_ms"]) > 50


def test_disconnect_mid_stream_stops_at_the_next_segment(server: Any) -> None:
    """Closing the stream stops decoding at the next segment: same runner, 499 logged, the next request barely waits.

    When the first delta arrives the runner is decoding the next 30 s window, and
    the cancel lands when that window's segments come out. Decoding a window took
    less than the whole wait for the first delta (audio decoding, VAD and one
    window), so that wait bounds the next request's slot wait. A runner that ignores
    the cancel decodes on for seconds, and is killed only after AISTACK_CANCEL_GRACE_SEC.
    """
    request_id, next_id = f"asr-cancel-{uuid.uuid4().hex[:8]}", f"asr-next-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        assert client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))}).status_code == 200
        pid = runner_pid(server.url, STARTER_ASR)
        files = {"file": ("long.mp3", repeated_clip(LONG_TEXT, 2))}
        with client.stream("POST", URL, files=files, data={"stream": "true"},
                           headers={"X-Request-ID": request_id}) as response:
            started = time.perf_counter()
            events = sse_events(response)
            assert next(events)[1]["type"] == "transcript.text.delta"
            first_at = time.perf_counter() - started
        after = client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))},
                            headers={"X-Request-ID": next_id})
    assert after.status_code == 200, after.text
    assert wer(SHORT_TEXT, after.json()["text"]) <= 0.10
    assert runner_pid(server.url, STARTER_ASR) == pid  # it stopped between segments, it was not killed
    assert server.access_record(request_id)["status"] == 499
    waited = float(server.access_record(next_id)["slot_wait_ms"])
    assert waited < 1000 * first_at + 300, (waited, first_at)


@pytest.fixture(scope="module")
def patient_server(starter_data_dir: Path) -> Iterator[Any]:
    """A private server that never kills a cancelled runner in time: a slow stop must show as slow, not as a kill."""
    from tests.conftest import ServerProcess

    private = ServerProcess(starter_data_dir, {"AISTACK_CANCEL_GRACE_SEC": "60"})
    yield private
    private.stop()


def test_plain_long_transcription_stops_after_its_current_batch(patient_server: Any) -> None:
    """A plain request on long audio decodes two windows per batch; a hang-up stops it after the current batch.

    The same speech twice (four windows, two batches) is timed whole here: one batch
    takes about half of that. The client then sends it four times (four batches) and
    leaves two thirds of a batch in; the next request waits for the rest of the batch
    in progress, about a third of a batch. A runner that ignores the cancel decodes
    the three batches left first, over four times the bound.
    """
    import numpy as np

    samples, rate = speech(LONG_TEXT)
    twice, four_times = wav_bytes(np.tile(samples, 2), rate), wav_bytes(np.tile(samples, 4), rate)
    request_id, next_id = f"asr-drop-{uuid.uuid4().hex[:8]}", f"asr-next-{uuid.uuid4().hex[:8]}"
    url = patient_server.url
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        assert client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))}).status_code == 200
        pid = runner_pid(url, STARTER_ASR)
        full_id = f"asr-full-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        full = client.post(URL, files={"file": ("long.wav", twice)}, headers={"X-Request-ID": full_id})
        batch = (time.perf_counter() - started) / 2
        assert full.status_code == 200, full.text
        assert patient_server.access_record(full_id)["extra"]["batched"] is True
        with pytest.raises(httpx.ReadTimeout):
            client.post(URL, files={"file": ("long.wav", four_times)}, headers={"X-Request-ID": request_id},
                        timeout=httpx.Timeout(batch * 2 / 3, connect=10))
        after = client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))},
                            headers={"X-Request-ID": next_id})
    assert after.status_code == 200, after.text
    assert patient_server.access_record(request_id)["status"] == 499
    assert runner_pid(url, STARTER_ASR) == pid
    waited = float(patient_server.access_record(next_id)["slot_wait_ms"]) / 1000
    assert waited < 1.2 * batch, (waited, batch)


def test_failure_after_the_stream_began_is_an_error_event(start_server: Any, starter_data_dir: Path) -> None:
    """The runner dies mid-stream: the client gets an `error` event, nothing after it, and the next request works."""
    private = start_server(data_dir=starter_data_dir)
    with httpx.Client(base_url=private.url, timeout=TIMEOUT) as client:
        files = {"file": ("long.mp3", repeated_clip(LONG_TEXT, 2))}
        with client.stream("POST", URL, files=files, data={"stream": "true"}) as response:
            events = sse_events(response)
            assert next(events)[1]["type"] == "transcript.text.delta"
            psutil.Process(runner_pid(private.url, STARTER_ASR)).kill()
            rest = [event for _, event in events]
        assert rest and rest[-1]["type"] == "error", rest
        error = rest[-1]["error"]
        assert error["kind"] == "network" and error["provider"] == "faster-whisper" and error["message"]
        assert all(e["type"] == "transcript.text.delta" for e in rest[:-1])
        again = client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))})
    assert again.status_code == 200 and wer(SHORT_TEXT, again.json()["text"]) <= 0.10


def test_model_that_cannot_stream_warns_then_sends_one_delta(
    start_server: Any, starter_data_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    install_starter_whisper_as(data_dir, starter_data_dir, "whisper-whole", "whisper-whole")
    private = start_server(data_dir=data_dir, AISTACK_ENGINES=json.dumps(ENGINES))
    with httpx.Client(base_url=private.url, timeout=TIMEOUT) as client:
        with client.stream("POST", URL, files={"file": ("clip.wav", clip(SHORT_TEXT))},
                           data={"stream": "true", "model": "whisper-whole"}) as response:
            events = [event for _, event in sse_events(response)]
    assert [e["type"] for e in events] == ["warning", "transcript.text.delta", "transcript.text.done"]
    warning, delta, done = events
    assert warning["code"] == "streaming_unsupported" and warning["model"] == "whisper-whole" and warning["message"]
    assert delta["delta"] == done["text"] and wer(SHORT_TEXT, done["text"]) <= 0.10
    assert delta["segment"]["words"] and delta["segment"]["end"] > delta["segment"]["start"]
