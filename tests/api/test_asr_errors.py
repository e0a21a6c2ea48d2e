"""Every bad input to speech to text gets the contract's envelope: right status, kind, provider, a useful message.

Also the limits (upload size, audio length) and the promise that an upload's
temp file is gone after every kind of ending, disconnects included.
"""

from __future__ import annotations

import io
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_asr import URL, wer
from tests.support.asr_engines import ENGINES, install_starter_whisper_as
from tests.support.speech import LONG_TEXT, SHORT_TEXT, clip, repeated_clip, silence, sse_events, video_only_mp4, wav_bytes


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


BAD_FILES: dict[str, tuple[Any, str, str]] = {
    # name: (bytes maker, provider, words the message must contain)
    "empty": (lambda: b"", "aistack", "empty"),
    "text": (lambda: b"these are not the sounds you are looking for\n" * 50, "faster-whisper", "not audio or video"),
    "picture": (png, "faster-whisper", "no audio track"),
    "video without sound": (video_only_mp4, "faster-whisper", "no audio track"),
    "zero-length wav": (lambda: wav_bytes(*silence(0)), "faster-whisper", "zero length"),
    "wav cut in half": (lambda: half(clip(SHORT_TEXT)), "faster-whisper", "truncated"),
    "wav header only": (lambda: clip(SHORT_TEXT)[:44], "faster-whisper", "truncated"),
    "mp3 cut in half": (lambda: half(clip(SHORT_TEXT, "mp3")), "faster-whisper", "truncated"),
    "flac cut in half": (lambda: half(clip(SHORT_TEXT, "flac")), "faster-whisper", "truncated"),
    "m4a cut in half": (lambda: half(clip(SHORT_TEXT, "m4a")), "faster-whisper", "damaged or truncated"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("stream", [False, True])
def test_unusable_files_are_malformed(http: httpx.Client, case: str, stream: bool) -> None:
    make, provider, words = BAD_FILES[case]
    response = http.post(URL, files={"file": ("upload.bin", make())}, data={"stream": str(stream).lower()})
    assert_envelope(response, 400, "malformed", provider, words)


BAD_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown model": ({"model": "bogus-model"}, "whisper-tiny.en"),
    "known, not installed": ({"model": "whisper-large-v3"}, "aistack models install whisper-large-v3"),
    "size not installed": ({"model": "medium"}, "known but not installed"),
    "chat model": ({"model": "smollm2-135m-instruct"}, "not a speech-to-text model"),
    "translate, auto": ({"translate": "true"}, "multilingual"),
    "translate, English-only model": ({"translate": "true", "model": "whisper-tiny.en"}, "English-only"),
    "other language, English-only model": ({"language": "de", "model": "whisper-tiny.en"}, "English only"),
    "unknown language": ({"language": "klingon"}, "ISO 639-1"),
    "response_format": ({"response_format": "docx"}, "'response_format'"),
    "segment_granularity": ({"segment_granularity": "paragraph"}, "'segment_granularity'"),
    "timestamp_granularities": ({"timestamp_granularities[]": ["word", "char"]}, "timestamp_granularities"),
    "temperature too high": ({"temperature": "1.5"}, "'temperature'"),
    "temperature not a number": ({"temperature": "warm"}, "'temperature'"),
    "stream not a bool": ({"stream": "perhaps"}, "'stream'"),
    "keep_alive": ({"keep_alive": "forever"}, "keep_alive"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_bad_fields_are_malformed_and_name_the_problem(http: httpx.Client, case: str) -> None:
    fields, words = BAD_FIELDS[case]
    response = http.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))}, data=fields)
    assert_envelope(response, 400, "malformed", "aistack", words)


def test_translation_endpoint_refuses_an_english_only_model(http: httpx.Client) -> None:
    response = http.post("/v1/audio/translations", files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))},
                         data={"model": "whisper-tiny.en"})
    assert_envelope(response, 400, "malformed", "aistack", "English-only")


def test_broken_forms_are_malformed(http: httpx.Client) -> None:
    assert_envelope(http.post(URL, json={"model": "whisper-1"}), 400, "malformed", "aistack", "multipart/form-data")
    assert_envelope(http.post(URL, data={"model": "whisper-1"}, files={"other": ("a.txt", b"x")}),
                    400, "malformed", "aistack", "'file' is required")
    two = [("file", ("a.mp3", clip(SHORT_TEXT, "mp3"))), ("file", ("b.mp3", clip(SHORT_TEXT, "mp3")))]
    assert_envelope(http.post(URL, files=two), 400, "malformed", "aistack", "one file")
    cut = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + clip(SHORT_TEXT)[:5000])
    response = http.post(URL, content=cut, headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert_envelope(response, 400, "malformed", "aistack", "incomplete")


def test_language_hints(http: httpx.Client) -> None:
    """A region-tagged hint is fine; `auto` with a hint no installed model speaks still answers, and says so."""
    regional = http.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))}, data={"language": "en-US"})
    assert regional.status_code == 200 and "x-aistack-warning" not in regional.headers
    foreign = http.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))},
                        data={"language": "de", "model": "auto"})
    assert foreign.status_code == 200, foreign.text
    assert "English only" in foreign.headers["x-aistack-warning"]
    assert wer(SHORT_TEXT, foreign.json()["text"]) <= 0.10


# Limits and temp files, on a private server with small limits and its own temp dir ---------------------
@pytest.fixture
def limited(start_server: Any, starter_data_dir: Path, tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    temp = tmp_path / "tmp"
    temp.mkdir()
    yield start_server(data_dir=starter_data_dir, TMPDIR=str(temp), AISTACK_MAX_AUDIO_SEC="60",
                       AISTACK_MAX_UPLOAD_MB="0.5"), temp


def test_limits_answer_overflow_and_no_temp_file_is_left(limited: tuple[Any, Path]) -> None:
    server, temp = limited
    with httpx.Client(base_url=server.url, timeout=120) as client:
        too_long = client.post(URL, files={"file": ("long.mp3", repeated_clip(LONG_TEXT, 2))})
        assert_envelope(too_long, 413, "overflow", "faster-whisper", "AISTACK_MAX_AUDIO_SEC")
        big = clip(SHORT_TEXT, "wav48k-stereo")
        assert len(big) > 0.5 * 2**20
        too_big = client.post(URL, files={"file": ("big.wav", big)})
        assert_envelope(too_big, 413, "overflow", "aistack", "AISTACK_MAX_UPLOAD_MB")
        chunked = client.post(URL, content=_chunks(_multipart(big)),
                              headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
        assert_envelope(chunked, 413, "overflow", "aistack", "AISTACK_MAX_UPLOAD_MB")
        assert_envelope(client.post(URL, files={"file": ("a.txt", b"not audio" * 100)}), 400, "malformed",
                        "faster-whisper", "not audio")
        fine = client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))})
        assert fine.status_code == 200 and wer(SHORT_TEXT, fine.json()["text"]) <= 0.10
        # While a stream runs its upload is on disk, in the server's temp dir; closing it removes the file.
        with client.stream("POST", URL, files={"file": ("long.mp3", clip(LONG_TEXT, "mp3"))},
                           data={"stream": "true"}) as response:
            events = sse_events(response)
            assert next(events)[1]["type"] == "transcript.text.delta"
            assert [p.name for p in temp.iterdir() if p.name.startswith("aistack-upload-")]
    request_id = f"asr-cut-{uuid.uuid4().hex[:8]}"
    _abandon_upload(server.url, request_id)
    assert server.access_record(request_id)["status"] == 499
    assert _no_uploads_left(temp), list(temp.iterdir())


def test_a_large_upload_goes_to_disk_not_memory(start_server: Any, starter_data_dir: Path) -> None:
    """96 MB through the upload path: the server's peak memory must not grow by anything like that."""
    server = start_server(data_dir=starter_data_dir)

    def peak_mb() -> float:
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]

    with httpx.Client(base_url=server.url, timeout=120) as client:
        client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))})  # load the model first
        before = peak_mb()
        body = b"\0" * (96 * 2**20)
        response = client.post(URL, files={"file": ("big.bin", body)})
    assert_envelope(response, 400, "malformed", "faster-whisper", "not audio")
    assert peak_mb() - before < 32, (before, peak_mb())


def test_a_gpu_that_fails_falls_back_to_the_cpu_visibly(
    start_server: Any, starter_data_dir: Path, tmp_path: Path
) -> None:
    """CUDA that cannot load (here: no GPU at all behind a claimed one) means the CPU, said out loud."""
    data_dir = tmp_path / "data"
    install_starter_whisper_as(data_dir, starter_data_dir, "whisper-gpu", "whisper-pretend-gpu")
    server = start_server(data_dir=data_dir, AISTACK_ENGINES=json.dumps(ENGINES))
    with httpx.Client(base_url=server.url, timeout=120) as client:
        response = client.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))}, data={"model": "whisper-gpu"})
        assert response.status_code == 200 and wer(SHORT_TEXT, response.json()["text"]) <= 0.10
        row = next(m for m in client.get("/admin/api/models").json()["data"] if m["id"] == "whisper-gpu")
    assert row["device"] == "cpu" and row["info"]["compute_type"] == "int8"
    assert "CUDA failed" in row["info"]["fallback"] and "CPU" in row["info"]["fallback"]
    assert "CUDA failed" in server.log()


def _multipart(data: bytes) -> bytes:
    head = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
    return head + data + b"\r\n--XyZ--\r\n"


def _chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body without Content-Length, so only the running count can stop it."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _abandon_upload(url: str, request_id: str) -> None:
    """Send half a multipart upload on a raw socket, then hang up."""
    host, port = url.removeprefix("http://").split(":")
    body = _multipart(clip(SHORT_TEXT))
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: {host}:{port}\r\nX-Request-ID: {request_id}\r\n"
        f"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.3)


def _no_uploads_left(temp: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(p.name.startswith("aistack-upload-") for p in temp.iterdir()):
            return True
        time.sleep(0.05)
    return False


def assert_envelope(response: httpx.Response, status: int, kind: str, provider: str, words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"kind", "provider", "message"}
    assert error["kind"] == kind and error["provider"] == provider, error
    assert words.lower() in error["message"].lower(), error["message"]
    assert "Traceback" not in error["message"] and "/tmp/" not in error["message"]
