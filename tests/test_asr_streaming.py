"""Streaming transcription, cancellation and the busy slot, through the real server and runner.

A user watching a transcript appear sees each sentence as soon as Whisper has
decoded it; closing the connection stops the work so the next request runs at
once; a second request while the model is busy is told to retry.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.asr_engines import ENGINES, install_starter_whisper_as
from tests.speech import LONG_TEXT, SHORT_TEXT, clip, repeated_clip, sse_events
from tests.test_asr import URL, wer

TIMEOUT = httpx.Timeout(120, connect=10)


def runner_pids(server: Any) -> set[int]:
    """The server's runner processes (multiprocessing helpers aside)."""
    pids = set()
    for pid in server.runner_pids():
        try:
            cmdline = " ".join(psutil.Process(pid).cmdline())
        except psutil.NoSuchProcess:
            continue
        if "resource_tracker" not in cmdline:
            pids.add(pid)
    return pids


def test_stream_sends_each_sentence_as_it_is_decoded(server: Any) -> None:
    request_id = f"asr-stream-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        files = {"file": ("long.mp3", clip(LONG_TEXT, "mp3"))}
        with client.stream("POST", URL, files=files, data={"stream": "true"},
                           headers={"X-Request-ID": request_id}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))
    kinds = [event["type"] for _, event in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}
    deltas = [(at, event) for at, event in events if event["type"] == "transcript.text.delta"]
    assert len(deltas) >= 9  # one per sentence
    assert deltas[0][0] < deltas[-1][0]  # the first sentence left the server before the last was decoded
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


def test_busy_then_disconnect_frees_the_runner_at_once(server: Any) -> None:
    """A second request while decoding gets the busy 503; closing the stream stops the job and frees the slot."""
    request_id = f"asr-cancel-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        files = {"file": ("long.mp3", repeated_clip(LONG_TEXT, 2))}
        with client.stream("POST", URL, files=files, data={"stream": "true"},
                           headers={"X-Request-ID": request_id}) as response:
            events = sse_events(response)  # keep it referenced: a collected generator closes the stream
            assert next(events)[1]["type"] == "transcript.text.delta"
            busy = client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))})
            assert busy.status_code == 503, busy.text
            assert busy.headers["retry-after"].isdigit()
            assert busy.json()["error"]["kind"] == "network"
            runners = runner_pids(server)
        # The stream is closed mid-decode: the very next request must be served, by the same runner.
        after = client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))})
    assert after.status_code == 200, after.text
    assert wer(SHORT_TEXT, after.json()["text"]) <= 0.10
    assert runner_pids(server) == runners  # it stopped between segments, it was not killed
    assert server.access_record(request_id)["status"] == 499


def test_disconnect_during_a_plain_request_cancels_it(server: Any) -> None:
    request_id = f"asr-drop-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(URL, files={"file": ("long.mp3", repeated_clip(LONG_TEXT, 2))},
                        headers={"X-Request-ID": request_id}, timeout=httpx.Timeout(1.0, connect=10))
        # A plain request on long audio decodes in batches and stops after the current one (or its
        # runner is replaced after AISTACK_CANCEL_GRACE_SEC): either way the next request is served.
        after = client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))})
    assert after.status_code == 200, after.text
    assert server.access_record(request_id)["status"] == 499


def test_failure_after_the_stream_began_is_an_error_event(start_server: Any, starter_data_dir: Path) -> None:
    """The runner dies mid-stream: the client gets an `error` event, nothing after it, and the next request works."""
    private = start_server(data_dir=starter_data_dir)
    with httpx.Client(base_url=private.url, timeout=TIMEOUT) as client:
        files = {"file": ("long.mp3", repeated_clip(LONG_TEXT, 2))}
        with client.stream("POST", URL, files=files, data={"stream": "true"}) as response:
            events = sse_events(response)
            assert next(events)[1]["type"] == "transcript.text.delta"
            for pid in runner_pids(private):
                psutil.Process(pid).kill()
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
