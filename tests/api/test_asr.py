"""Speech to text through the real server: the starter whisper-tiny.en hears speech the starter piper voice spoke.

A user uploads a clip in whatever container it came in and reads back text,
sentences, word timings or subtitles; OpenAI SDK users call it unchanged.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from tests.support.speech import FORMATS, LONG_TEXT, SHORT_TEXT, clip, silence, speech, wav_bytes

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

URL = "/v1/audio/transcriptions"


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())

    return float(jiwer.wer(norm(reference), norm(hypothesis)))


def transcribe(http: httpx.Client, data: bytes, name: str = "clip.wav", **fields: Any) -> httpx.Response:
    return http.post(URL, files={"file": (name, data)}, data=fields)


def test_known_sentence_transcribes_accurately(http: httpx.Client) -> None:
    response = transcribe(http, clip(SHORT_TEXT), model="whisper-tiny.en")
    assert response.status_code == 200, response.text
    body = response.json()
    assert wer(SHORT_TEXT, body["text"]) <= 0.10, body["text"]
    assert response.headers["x-aistack-model"] == "whisper-tiny.en"
    assert body["usage"]["type"] == "duration" and body["usage"]["seconds"] > 5


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_container_and_rate_transcribes(http: httpx.Client, fmt: str) -> None:
    """mp3, m4a, ogg/opus, flac, 8 kHz wav, 48 kHz stereo, and video files with a picture track."""
    suffix = {"wav8k": "wav", "wav48k-stereo": "wav", "mp4-video": "mp4", "webm-video": "webm", "mkv-video": "mkv"}
    response = transcribe(http, clip(SHORT_TEXT, fmt), name=f"clip.{suffix.get(fmt, fmt)}")
    assert response.status_code == 200, response.text
    assert wer(SHORT_TEXT, response.json()["text"]) <= 0.15, response.json()["text"]


@pytest.mark.parametrize("name", ["", "auto", "whisper-1", "tiny.en", "whisper-tiny", "TINY.EN"])
def test_model_names_resolve_to_the_installed_whisper(http: httpx.Client, name: str) -> None:
    response = transcribe(http, clip("Hello there.", "mp3"), name="clip.mp3", model=name)  # short: the name is the point
    assert response.status_code == 200, response.text
    assert response.headers["x-aistack-model"] == "whisper-tiny.en" and "hello" in response.json()["text"].lower()


def test_verbose_json_has_segments_words_and_diagnostics(http: httpx.Client) -> None:
    body = transcribe(http, clip(SHORT_TEXT), response_format="verbose_json").json()
    assert body["task"] == "transcribe" and body["language"] == "en"
    assert body["duration"] == pytest.approx(len(speech(SHORT_TEXT)[0]) / speech(SHORT_TEXT)[1], abs=0.05)
    segments = body["segments"]
    assert [s["id"] for s in segments] == list(range(len(segments))) and len(segments) == 2  # two sentences
    for segment in segments:
        assert segment["text"].endswith(".") and segment["start"] < segment["end"]
        assert {"avg_logprob", "no_speech_prob", "compression_ratio", "temperature", "seek", "tokens"} <= set(segment)
        assert segment["words"] and all(segment["start"] <= w["start"] <= w["end"] <= segment["end"]
                                        for w in segment["words"])
    assert body["words"] == [w for s in segments for w in s["words"]]
    assert " ".join(w["word"] for w in body["words"]) == body["text"]


@pytest.mark.parametrize(
    ("granularities", "has_segments", "has_words"),
    [(["word"], False, True), (["segment"], True, False), (["word", "segment"], True, True)],
)
def test_timestamp_granularities_choose_what_verbose_json_holds(
    http: httpx.Client, granularities: list[str], has_segments: bool, has_words: bool
) -> None:
    response = transcribe(
        http, clip(SHORT_TEXT, "mp3"), name="clip.mp3", response_format="verbose_json",
        **{"timestamp_granularities[]": granularities},
    )
    body = response.json()
    assert ("segments" in body) is has_segments and ("words" in body) is has_words
    if has_segments:
        assert all(s["words"] for s in body["segments"])  # per-segment words stay
    if has_words:
        assert all(w["end"] >= w["start"] for w in body["words"]) and len(body["words"]) > 10


def test_text_format_is_plain_text(http: httpx.Client) -> None:
    response = transcribe(http, clip(SHORT_TEXT, "ogg"), name="clip.ogg", response_format="text")
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.endswith("\n") and wer(SHORT_TEXT, response.text) <= 0.10


def test_long_clip_sentences_are_whole_sentences(long_transcript: dict[str, Any]) -> None:
    samples, rate = speech(LONG_TEXT)
    assert len(samples) / rate >= 45
    body = long_transcript["body"]
    segments = body["segments"]
    assert len(segments) >= 9  # the paragraph has 11 sentences
    assert all(s["end"] - s["start"] <= 30 for s in segments)
    assert all(re.search(r"[.!?]$", s["text"]) for s in segments)
    assert wer(LONG_TEXT, body["text"]) <= 0.15


def test_subtitle_cues_keep_the_limits_on_a_long_clip(http: httpx.Client) -> None:
    body = transcribe(
        http, clip(LONG_TEXT, "mp3"), name="long.mp3", response_format="verbose_json", segment_granularity="subtitle"
    ).json()
    cues = body["segments"]
    assert len(cues) >= 12
    assert_cue_limits([(c["start"], c["end"], c["text"]) for c in cues])
    assert " ".join(c["text"] for c in cues) == body["text"]


def test_srt_of_a_long_clip_is_valid_subtitles(http: httpx.Client) -> None:
    response = transcribe(http, clip(LONG_TEXT, "mp3"), name="long.mp3", response_format="srt")
    assert response.headers["content-type"].startswith("application/x-subrip")
    cues = parse_srt(response.text)
    assert len(cues) >= 12
    assert_cue_limits(cues)
    assert wer(LONG_TEXT, " ".join(text for _, _, text in cues)) <= 0.15


def test_vtt_uses_subtitle_cues(http: httpx.Client) -> None:
    response = transcribe(http, clip(SHORT_TEXT, "flac"), name="clip.flac", response_format="vtt")
    assert response.headers["content-type"].startswith("text/vtt")
    assert response.text.startswith("WEBVTT\n\n")
    stamp = r"(\d\d):(\d\d):(\d\d)\.(\d{3})"
    blocks = [b for b in response.text.split("\n\n")[1:] if b.strip()]
    cues = []
    for block in blocks:
        first, *lines = block.split("\n")
        match = re.fullmatch(f"{stamp} --> {stamp}", first)
        assert match, block
        cues.append((_seconds(match.groups()[:4]), _seconds(match.groups()[4:]), " ".join(x for x in lines if x)))
    assert len(cues) >= 2
    assert_cue_limits(cues)


def test_prompt_and_temperature_reach_the_decoder(http: httpx.Client) -> None:
    british = "Every morning the little harbour town wakes up before the sun. The colour of the sea is grey."
    data = clip(british)
    plain = transcribe(http, data, response_format="verbose_json").json()
    assert "harbor" in plain["text"] and "color" in plain["text"]  # Whisper spells American by default
    assert all(s["temperature"] == 0.0 for s in plain["segments"])
    primed = transcribe(http, data, response_format="verbose_json", temperature="0.6",
                        prompt="The harbour town. British spelling: harbour, colour, grey.").json()
    assert "harbour" in primed["text"] and "colour" in primed["text"], primed["text"]
    assert all(s["temperature"] >= 0.6 for s in primed["segments"])


@pytest.mark.parametrize("seconds", [3.0, 75.0])
def test_silence_is_an_empty_transcript(http: httpx.Client, server: Any, seconds: float) -> None:
    """Short silence is checked by VAD before decoding; long silence goes through the VAD filter and batching."""
    request_id = f"asr-quiet-{uuid.uuid4().hex[:8]}"
    response = http.post(URL, files={"file": ("quiet.wav", wav_bytes(*silence(seconds)))},
                         data={"response_format": "verbose_json"}, headers={"X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == "" and body["segments"] == [] and body["duration"] == pytest.approx(seconds, abs=0.01)
    assert server.access_record(request_id)["extra"]["batched"] is (seconds > 30)


def test_prompt_limit(http: httpx.Client) -> None:
    """`prompt` takes up to 8000 characters; one more is 400 naming the field and the limit."""
    # Mostly spaces: a prompt of words repeated sends tiny.en into loops (up to 20 s on this machine).
    prompt = " " * 7993 + "Stella."
    fits = transcribe(http, clip(SHORT_TEXT, "mp3"), name="clip.mp3", prompt=prompt)
    assert fits.status_code == 200, fits.text
    assert wer(SHORT_TEXT, fits.json()["text"]) <= 0.10
    too_long = transcribe(http, clip(SHORT_TEXT, "mp3"), name="clip.mp3", prompt=prompt + "x")
    assert too_long.status_code == 400, too_long.text
    error = too_long.json()["error"]
    assert error["kind"] == "malformed" and "prompt" in error["message"] and "8000" in error["message"]


def test_access_log_records_the_transcription(http: httpx.Client, server: Any) -> None:
    request_id = f"asr-{uuid.uuid4().hex[:12]}"
    response = http.post(URL, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))},
                         data={"response_format": "srt"}, headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    record = server.access_record(request_id)
    assert record["category"] == "asr" and record["model"] == "whisper-tiny.en" and record["status"] == 200
    extra = record["extra"]
    assert extra["response_format"] == "srt" and extra["stream"] is False and extra["language"] == "en"
    assert extra["audio_sec"] == pytest.approx(7.5, abs=0.2) and 0 < extra["rtf"] < 5


# OpenAI SDK -------------------------------------------------------------------------------------
def test_openai_sdk_verbose_json_with_word_timestamps(openai_client: Any) -> None:
    result = openai_client.audio.transcriptions.create(
        model="whisper-1", file=("clip.m4a", clip(SHORT_TEXT, "m4a")), response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert wer(SHORT_TEXT, result.text) <= 0.10
    assert result.language == "en" and result.duration > 5
    assert result.words and all(w.end >= w.start for w in result.words)
    assert result.segments and result.segments[0].start <= result.words[0].start


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks audio.translations deprecated
def test_openai_sdk_text_and_translation_refusal(openai_client: Any) -> None:
    import openai

    text = openai_client.audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", clip(SHORT_TEXT)), response_format="text"
    )
    assert isinstance(text, str) and wer(SHORT_TEXT, text) <= 0.10
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.audio.translations.create(model="whisper-1", file=("clip.wav", clip(SHORT_TEXT)))
    assert caught.value.body["kind"] == "malformed"  # type: ignore[index]
    assert "English-only" in caught.value.body["message"]  # type: ignore[index]


# Helpers ---------------------------------------------------------------------------------------
def _seconds(parts: tuple[str, ...]) -> float:
    hours, minutes, secs, millis = (int(p) for p in parts)
    return hours * 3600 + minutes * 60 + secs + millis / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    stamp = r"(\d\d):(\d\d):(\d\d),(\d{3})"
    cues = []
    for index, block in enumerate(b for b in text.strip().split("\n\n") if b.strip()):
        number, timing, *lines = block.split("\n")
        assert number == str(index + 1), block
        match = re.fullmatch(f"{stamp} --> {stamp}", timing)
        assert match and lines, block
        cues.append((_seconds(match.groups()[:4]), _seconds(match.groups()[4:]), " ".join(lines)))
    return cues


def assert_cue_limits(cues: list[tuple[float, float, str]]) -> None:
    """At most 70 characters, 1 to 7 seconds, in order, never overlapping, cut between words."""
    previous_end = 0.0
    for start, end, text in cues:
        assert 0 < len(text) <= 70, text
        assert 1.0 - 1e-3 <= end - start <= 7.0 + 1e-3, (start, end, text)
        assert start >= previous_end - 1e-3, (start, previous_end, text)
        assert text == text.strip() and "  " not in text
        previous_end = end
