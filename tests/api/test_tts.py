"""Text to speech through the real server and the starter piper voice: voices, formats, names, the SDK."""

from __future__ import annotations

import statistics
import uuid

import pytest

from tests.support.tts_audio import SENTENCE, VOICE, decode, sse_audio, sse_events

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
}
OPENAI_NAMES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")


def test_voices_lists_the_starter_voice_and_the_openai_table(http) -> None:
    body = http.get("/v1/audio/voices").json()
    assert body["object"] == "list"
    (voice,) = [v for v in body["data"] if v["id"] == VOICE]
    assert voice["language"] == "en_US" and voice["languages"] == ["en"]
    assert voice["sample_rate"] == 22050 and voice["quality"] == "medium"
    assert voice["num_speakers"] == 1 and voice["speakers"] == []
    assert voice["default"] is True
    # One installed voice: every OpenAI name speaks with it.
    assert {name: body["openai_voice_map"][name] for name in OPENAI_NAMES} == dict.fromkeys(OPENAI_NAMES, VOICE)
    assert set(OPENAI_NAMES) <= set(voice["openai_voices"])


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "aac", "flac", "pcm"])
def test_each_format_decodes_to_the_announced_rate_and_duration(http, fmt: str) -> None:
    r = http.post("/v1/audio/speech", json={"input": SENTENCE, "response_format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPES[fmt]
    rate = int(r.headers["x-sample-rate"])
    announced = float(r.headers["x-audio-duration"])
    assert rate == (48000 if fmt == "opus" else 22050)
    assert 3.0 < announced < 8.0  # one spoken sentence
    duration, decoded_rate, level = decode(r.content, fmt, pcm_rate=rate)
    assert decoded_rate == rate
    # ADTS (aac) cannot say how much priming and padding it carries (up to two 1024-sample frames, 0.093 s);
    # mp3 carries it in its LAME header. Everything else is sample-exact.
    assert abs(duration - announced) < (0.1 if fmt == "aac" else 0.002)
    assert level > 0.02  # speech, not silence


def test_default_format_is_wav_and_the_voice_is_announced(http) -> None:
    r = http.post("/v1/audio/speech", json={"input": "Hello there."})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content[:4] == b"RIFF" and r.headers["x-voice"] == VOICE


@pytest.mark.parametrize(
    ("model", "voice"),
    [
        ("tts-1", "alloy"),
        ("tts-1-hd", "shimmer"),
        ("gpt-4o-mini-tts", "Onyx"),
        (None, "verse"),
        (VOICE, "echo"),
        (VOICE, VOICE),
        (None, "en_US-joe-medium"),
        (None, None),
        ("tts-1", {"id": "nova"}),
    ],
)
def test_model_and_voice_names_reach_the_installed_voice(http, model, voice) -> None:
    body = {"input": "Names are mapped.", "response_format": "pcm"}
    if model is not None:
        body["model"] = model
    if voice is not None:
        body["voice"] = voice
    r = http.post("/v1/audio/speech", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-voice"] == VOICE and len(r.content) > 22050  # over half a second of speech


def test_speed_maps_to_length(http) -> None:
    """speed -> piper's length scale (the voice's / speed): at each speed the server's length is raw piper's.

    Lengths are not simply 4x apart for 0.5 against 2.0 (piper rounds each phoneme up to whole frames, about
    2.75x here), so the yardstick is raw piper itself, in this process, on the same voice. Piper draws its
    phoneme lengths with noise, and its tail is long: at speed 0.5, 7 syntheses in 125 here ran 10 to 19 % long
    (a CI run once saw a raw 0.5/2.0 ratio of 3.17 against the usual 2.7). Medians of five spanned 4.5 % over 60
    groups here, and one CI run had two 6 % apart, so each side is the median of five, compared speed by speed
    within 10 %: a mapping 25 % off, ignored or inverted fails (tests/faults.md).
    """
    from piper.config import SynthesisConfig

    from tests.support.speech import _voice, default_models_dir

    voice = _voice(default_models_dir())

    def raw_seconds(speed: float) -> float:
        config = SynthesisConfig(length_scale=float(voice.config.length_scale) / speed)
        return sum(len(c.audio_int16_array) for c in voice.synthesize(SENTENCE, config)) / voice.config.sample_rate

    def served_seconds(speed: float) -> float:
        r = http.post("/v1/audio/speech", json={"input": SENTENCE, "speed": speed, "response_format": "pcm"})
        assert r.status_code == 200, r.text
        return float(r.headers["x-audio-duration"])

    served = {speed: statistics.median(served_seconds(speed) for _ in range(5)) for speed in (0.5, 1.0, 2.0)}
    raw = {speed: statistics.median(raw_seconds(speed) for _ in range(5)) for speed in served}
    assert raw[0.5] / raw[2.0] > 2.2, raw  # the speeds are far apart: a wrong mapping cannot hide in the noise
    for speed in served:
        assert abs(served[speed] - raw[speed]) < 0.10 * raw[speed], (speed, served, raw)


def test_access_log_records_the_speech(server, http) -> None:
    request_id = f"tts-log-{uuid.uuid4().hex[:8]}"  # the log folder outlives one test session
    r = http.post("/v1/audio/speech", json={"input": SENTENCE, "voice": "nova", "response_format": "mp3"},
                  headers={"X-Request-ID": request_id})
    assert r.status_code == 200
    record = server.access_record(request_id)
    extra = record["extra"]
    assert record["category"] == "tts" and record["model"] == VOICE and record["status"] == 200
    assert extra["voice"] == VOICE and extra["chars"] == len(SENTENCE)
    assert extra["response_format"] == "mp3" and extra["stream"] is False
    assert abs(extra["audio_sec"] - float(r.headers["x-audio-duration"])) < 0.01
    assert 0 < extra["rtf"] < 5


def test_openai_sdk_create(openai_client) -> None:
    answer = openai_client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE, response_format="mp3")
    duration, rate, _ = decode(answer.content, "mp3")
    assert rate == 22050 and duration > 3.0


def test_openai_sdk_with_streaming_response(openai_client) -> None:
    with openai_client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="coral", input=SENTENCE, response_format="opus"
    ) as response:
        assert response.headers["content-type"] == "audio/ogg"
        data = b"".join(response.iter_bytes())
    duration, rate, _ = decode(data, "opus")
    assert rate == 48000 and duration > 3.0


def test_openai_sdk_sse(openai_client) -> None:
    with openai_client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="sage", input="One sentence. And another one.", response_format="wav",
        stream_format="sse",
    ) as response:
        events = sse_events(response.text())
    assert [e["type"] for e in events].count("speech.audio.delta") >= 2
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"] > 0
    duration, rate, _ = decode(sse_audio(events), "wav")
    assert rate == 22050 and abs(duration - done["duration"]) < 0.002
