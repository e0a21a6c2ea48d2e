"""Bad input to text to speech: every case gets the contract envelope, and the runner survives odd text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models.naming.voices import VoiceBook
from models.store.model_store import ModelStore
from tests.support.observe import runner_pid
from tests.support.tts_audio import VOICE, decode


def assert_envelope(r, status: int, kind: str, *words: str) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["kind"] == kind and error["provider"] in ("aistack", "piper") and error["message"]
    for word in words:
        assert word.lower() in error["message"].lower(), error["message"]
    return str(error["message"])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"input": ""}, ["input", "empty"]),
        ({"input": "  \n\t  "}, ["input", "empty"]),
        ({"voice": "alloy"}, ["input", "required"]),
        ({"input": "Hi.", "voice": "nobody"}, ["nobody", VOICE, "alloy"]),
        ({"input": "Hi.", "response_format": "ogg"}, ["response_format", "mp3"]),
        ({"input": "Hi.", "speed": 0.2}, ["speed"]),
        ({"input": "Hi.", "speed": 4.5}, ["speed"]),
        ({"input": "Hi.", "task_type": "VoiceClone"}, ["VoiceClone", "CustomVoice"]),
        ({"input": "Hi.", "task_type": "VoiceDesign"}, ["VoiceDesign", "CustomVoice"]),
        ({"input": "Hi.", "task_type": "Sing"}, ["task_type"]),
        ({"input": "Hi.", "stream_format": "websocket"}, ["stream_format"]),
        ({"input": "Hi.", "model": "bogus-tts"}, ["bogus-tts", VOICE]),
        ({"input": "Hi.", "model": "whisper-tiny.en"}, ["whisper-tiny.en", "not a text-to-speech"]),
        ({"input": "Hi.", "model": "piper-en_US-amy-medium"}, ["not installed", "install"]),
        ({"input": "Hi.", "speaker": "bob"}, ["single speaker", "speaker"]),
        ({"input": "Hi.", "voice": "alloy", "stream": True, "speed": 9}, ["speed"]),
    ],
)
def test_bad_requests_are_malformed(http, body, words) -> None:
    assert_envelope(http.post("/v1/audio/speech", json=body), 400, "malformed", *words)


def test_body_that_is_not_json_is_malformed(http) -> None:
    r = http.post("/v1/audio/speech", content=b"input=hello", headers={"Content-Type": "application/json"})
    assert_envelope(r, 400, "malformed", "json")


def test_input_over_the_limit_is_overflow(http) -> None:
    r = http.post("/v1/audio/speech", json={"input": "a" * 100_001})
    assert_envelope(r, 413, "overflow", "100000", "AISTACK_MAX_TTS_CHARS")


@pytest.mark.parametrize(
    "text",
    [
        "Party time! 🎉🥳👍🏽 Let's go.",
        "中文文本，英文声音。你好世界！",
        "Bell\u0007 escape\u001b[31m null\u0000 delete\u007f tab\tand\r\nnewlines.",
        "Zero\u200bwidth and \u202eright to left\u202c marks, lone \ud800 surrogate.",
        "a" * 3_000,  # one word 3000 letters long: espeak spells it out (about 4 s of synthesis here)
        "Привет мир. مرحبا بالعالم. नमस्ते दुनिया. สวัสดีชาวโลก",
    ],
    ids=["emoji", "cjk", "control", "format-marks", "3k-repeated", "other-scripts"],
)
def test_text_the_voice_cannot_read_never_crashes_the_runner(server, http, text: str) -> None:
    """Whatever espeak can pronounce is spoken (each of these has some), by the same runner, which keeps serving."""
    assert http.post("/v1/audio/speech", json={"input": "Loaded.", "response_format": "pcm"}).status_code == 200
    pid = runner_pid(server.url, VOICE)
    assert pid is not None
    # ensure_ascii keeps a lone surrogate sendable as a JSON escape.
    r = http.post("/v1/audio/speech", content=json.dumps({"input": text, "response_format": "pcm"}),
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert abs(len(r.content) / 2 / 22050 - float(r.headers["x-audio-duration"])) < 0.001
    assert decode(r.content, "pcm")[2] > 0.01  # sound, not silence
    assert runner_pid(server.url, VOICE) == pid  # same runner: nothing crashed or restarted
    after = http.post("/v1/audio/speech", json={"input": "Still here.", "response_format": "pcm"})
    assert after.status_code == 200 and len(after.content) > 0


def test_only_unpronounceable_text_is_malformed(http) -> None:
    r = http.post("/v1/audio/speech", json={"input": "\u200b\u200c . . ."})
    assert_envelope(r, 400, "malformed", "pronounce")
    r = http.post("/v1/audio/speech", json={"input": "\u200b\u200c . . .", "stream": True, "response_format": "mp3"})
    assert_envelope(r, 400, "malformed", "pronounce")


# A data dir with the starter voice and a second voice that claims three speakers.
# It shares the starter's .onnx (a link), so it can be listed and resolved, not spoken.
MULTI = "piper-en_US-trio-medium"


@pytest.fixture(scope="module")
def two_voice_dir(starter_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("voices")
    source = starter_data_dir / "models" / VOICE
    joe = data_dir / "models" / VOICE
    joe.mkdir(parents=True)
    for name in ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json", "manifest.json"):
        (joe / name).symlink_to(source / name)
    trio = data_dir / "models" / MULTI
    trio.mkdir()
    (trio / "en_US-trio-medium.onnx").symlink_to(source / "en_US-joe-medium.onnx")
    config = json.loads((source / "en_US-joe-medium.onnx.json").read_text())
    config.update(num_speakers=3, speaker_id_map={"anna": 0, "ben": 1, "cleo": 2}, dataset="trio")
    (trio / "en_US-trio-medium.onnx.json").write_text(json.dumps(config))
    manifest = {"id": MULTI, "capability": "tts", "engine": "piper", "owned_by": "test", "languages": ["en"],
                "files": [{"name": "en_US-trio-medium.onnx"}, {"name": "en_US-trio-medium.onnx.json"}]}
    (trio / "manifest.json").write_text(json.dumps(manifest))
    yield data_dir
    shutil.rmtree(data_dir, ignore_errors=True)


def test_voice_table_resolves_speakers_and_overrides(two_voice_dir: Path) -> None:
    store = ModelStore(two_voice_dir / "models")
    book = VoiceBook(store, {"nova": f"{MULTI}:cleo", "default": VOICE})
    assert (book.choose("ben", None).voice.id, book.choose("ben", None).speaker_id) == (MULTI, 1)
    assert book.choose(MULTI, None, speaker=2).speaker == "cleo"
    assert book.choose(MULTI, None, speaker="Anna").speaker_id == 0
    assert book.choose(f"{MULTI}:ben", None).speaker_id == 1
    assert book.choose("nova", "tts-1").label == f"{MULTI}:cleo"
    assert book.choose("alloy", None).label == VOICE  # the table's candidate that is installed
    assert book.choose(None, MULTI).voice.id == MULTI
    assert book.choose("nova", MULTI).voice.id == MULTI  # an explicit model wins over the name
    assert book.openai_table()["nova"] == f"{MULTI}:cleo"
    assert book.choose(None, None, language="de").voice.id == VOICE  # no German voice: the default speaks


def test_voices_endpoint_lists_speakers_and_rejects_unknown_ones(two_voice_dir: Path, start_server) -> None:
    import httpx

    srv = start_server(data_dir=two_voice_dir, AISTACK_VOICE_MAP=json.dumps({"onyx": "piper-en_US-ryan-high"}))
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        body = client.get("/v1/audio/voices").json()
        trio = next(v for v in body["data"] if v["id"] == MULTI)
        assert trio["num_speakers"] == 3 and [s["name"] for s in trio["speakers"]] == ["anna", "ben", "cleo"]
        assert body["openai_voice_map"]["alloy"] == VOICE
        r = client.post("/v1/audio/speech", json={"input": "Hi.", "voice": MULTI, "speaker": "dora"})
        assert_envelope(r, 400, "malformed", "dora", "anna")
        r = client.post("/v1/audio/speech", json={"input": "Hi.", "voice": MULTI, "speaker": 7})
        assert_envelope(r, 400, "malformed", "speaker")
        r = client.post("/v1/audio/speech", json={"input": "Hi.", "voice": "onyx"})
        assert_envelope(r, 400, "malformed", "AISTACK_VOICE_MAP", "piper-en_US-ryan-high")
        r = client.post("/v1/audio/speech", json={"input": "Hi there.", "voice": "alloy", "response_format": "flac"})
        assert r.status_code == 200 and r.headers["x-voice"] == VOICE
        assert decode(r.content, "flac")[1] == 22050


def test_smaller_limit_from_the_environment(start_server, starter_data_dir: Path) -> None:
    import httpx

    srv = start_server(data_dir=starter_data_dir, AISTACK_MAX_TTS_CHARS="20")
    r = httpx.post(srv.url + "/v1/audio/speech", json={"input": "This sentence is longer than twenty."}, timeout=30)
    assert_envelope(r, 413, "overflow", "20")
