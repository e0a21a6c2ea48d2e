"""The rules behind sentence and subtitle segments, subtitle files and ASR model names, as pure functions.

The end-to-end tests (tests/test_asr*.py) show them working on real speech;
these pin the edge cases real speech rarely hits: 30 s run-on sentences,
URLs longer than a cue, pauses, abbreviations, segments without word times,
and every way of naming a Whisper model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.core.errors import Malformed
from models.naming.asr_models import normalise_language, resolve_asr
from models.store.model_store import ModelStore
from server import transcripts as t

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)


def segment(text: str, start: float, step: float = 0.4, *, gap: float = 0.0, **extra: Any) -> dict[str, Any]:
    """A decoder segment with evenly spaced word times, like faster-whisper's (leading spaces included)."""
    words, at = [], start
    for word in text.split():
        words.append({"start": round(at, 3), "end": round(at + step, 3), "word": " " + word, "probability": 0.9})
        at += step + gap
    return {"text": " " + text, "start": start, "end": round(at - gap, 3), "words": words, "seek": 0,
            "tokens": [1, 2, 3], "avg_logprob": -0.2, "compression_ratio": 1.2, "no_speech_prob": 0.01,
            "temperature": 0.0, **extra}


@pytest.mark.parametrize(
    ("word", "ends"),
    [("end.", True), ("why?", True), ("stop!", True), ("quoted.\u201d", True), ("(aside.)", True), ("etc.", True),
     ("Dr.", False), ("Mr.", False), ("J.", False), ("e.g.", False), ("3.5", False), ("comma,", False)],
)
def test_sentence_ends(word: str, ends: bool) -> None:
    assert t.ends_sentence(" " + word) is ends


def test_sentences_are_rebuilt_across_decoder_segments_as_they_arrive() -> None:
    segmenter = t.Segmenter("sentence")
    first = segmenter.feed(segment("Hello world. This is", 0.0))
    assert [s["text"] for s in first] == ["Hello world."]
    second = segmenter.feed(segment("a test. And more", 2.0))
    assert [s["text"] for s in second] == ["This is a test."]
    rest = segmenter.finish()
    assert [s["text"] for s in rest] == ["And more"]
    out = first + second + rest
    assert [s["id"] for s in out] == [0, 1, 2]
    assert t.full_text(out) == "Hello world. This is a test. And more"
    assert out[1]["start"] == 0.8 and out[1]["end"] == 2.8  # from "This" (0.8) to "test." (2.8)
    assert out[0]["tokens"] == [] and out[1]["tokens"] == []  # pieces of decoder segments carry no tokens


def test_whole_decoder_segments_keep_tokens_and_weighted_diagnostics() -> None:
    first = segment("One two.", 0.0, avg_logprob=-0.2, tokens=[5, 6])
    second = segment("Three", 1.0, avg_logprob=-0.5, tokens=[7], temperature=0.4)
    merged = t.segment_all([segment("Intro.", 0.0), {**first, "start": 0.5}, second], "sentence")
    assert [s["text"] for s in merged] == ["Intro.", "One two.", "Three"]
    combined = t.segment_all([{**segment("One", 0.0), "avg_logprob": -0.2, "tokens": [5]},
                              {**segment("two three.", 0.5), "avg_logprob": -0.5, "tokens": [6, 7]}], "sentence")
    assert len(combined) == 1
    assert combined[0]["tokens"] == [5, 6, 7]
    assert combined[0]["avg_logprob"] == pytest.approx((-0.2 * 1 + -0.5 * 2) / 3, abs=1e-4)
    assert merged[2]["temperature"] == 0.4


def test_a_run_on_sentence_is_split_before_30_seconds_at_its_last_comma() -> None:
    words = " ".join(f"word{i}," if i == 40 else f"word{i}" for i in range(90))
    out = t.segment_all([segment(words, 0.0, step=0.5)], "sentence")  # 45 s, no full stop
    assert len(out) >= 2 and all(s["end"] - s["start"] <= 30 for s in out)
    assert out[0]["text"].endswith("word40,")
    assert t.full_text(out) == words


def test_a_run_on_sentence_without_commas_splits_at_its_longest_pause() -> None:
    first = segment(" ".join(f"a{i}" for i in range(40)), 0.0, step=0.5)  # 20 s
    second = segment(" ".join(f"b{i}" for i in range(30)), 21.5, step=0.5)  # a 1.5 s pause, then 15 s
    out = t.segment_all([first, second], "sentence")
    assert out[0]["text"].endswith("a39") and out[1]["text"].startswith("b0")


def long_talk() -> list[dict[str, Any]]:
    """Two minutes of speech in 20 s decoder segments, a sentence every 11 words, a comma every 5."""
    segments, start = [], 0.0
    for block in range(6):
        words = []
        for i in range(50):
            n = block * 50 + i
            words.append(f"w{n}." if n % 11 == 10 else f"w{n}," if n % 5 == 4 else f"w{n}")
        segments.append(segment(" ".join(words), start, step=0.36, gap=0.04))
        start += 20.0
    return segments


def test_subtitle_cues_keep_every_limit() -> None:
    decoder = long_talk()
    cues = t.segment_all(decoder, "subtitle")
    previous_end = 0.0
    for cue in cues:
        assert len(cue["text"]) <= t.CUE_MAX_CHARS
        assert t.CUE_MIN_SEC - 1e-6 <= cue["end"] - cue["start"] <= t.CUE_MAX_SEC + 1e-6
        assert cue["start"] >= previous_end - 1e-6
        previous_end = cue["end"]
    assert t.full_text(cues) == t.full_text(t.segment_all(decoder, "sentence"))


def test_streamed_cues_equal_whole_file_cues() -> None:
    decoder = long_talk()
    segmenter = t.Segmenter("subtitle")
    streamed = [c for s in decoder for c in segmenter.feed(s)] + segmenter.finish()
    assert streamed == t.segment_all(decoder, "subtitle")


def test_cue_edge_cases() -> None:
    url = "https://example.com/" + "x" * 130
    cues = t.segment_all([segment(f"See {url} now.", 0.0, step=3.0)], "subtitle")
    assert all(len(c["text"]) <= 70 for c in cues) and "".join(c["text"] for c in cues).replace(" ", "") == \
        f"See{url}now."
    short = t.segment_all([segment("Yes.", 5.0, step=0.3)], "subtitle")
    assert short[0]["start"] == 5.0 and short[0]["end"] == 6.0  # held on screen for the minimum second
    paused = t.segment_all([segment("before the", 0.0), segment("pause ends here.", 3.0)], "subtitle")
    assert [c["text"] for c in paused] == ["before the", "pause ends here."]


def test_segments_without_word_times_still_segment_but_claim_no_words() -> None:
    bare = {"text": " First one. Second one.", "start": 0.0, "end": 4.0, "words": None}
    out = t.segment_all([bare], "sentence")
    assert [s["text"] for s in out] == ["First one.", "Second one."]
    assert all(s["words"] == [] for s in out) and out[0]["end"] <= out[1]["start"]
    body = t.verbose_json({"task": "transcribe", "language": "en", "duration": 4.0}, out)
    assert body["words"] == [] and body["text"] == "First one. Second one."


def test_srt_and_vtt_text() -> None:
    cues = [{"start": 0.0, "end": 1.5, "text": "Hello."},
            {"start": 3725.25, "end": 3727.0, "text": "A much longer line that needs wrapping onto two lines."}]
    assert t.srt(cues) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello.\n\n"
        "2\n01:02:05,250 --> 01:02:07,000\nA much longer line that needs\nwrapping onto two lines.\n"
    )
    assert t.vtt(cues).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello.\n\n01:02:05.250 --> ")
    assert t.srt([]) == "" and t.vtt([]) == "WEBVTT\n\n"


# Model names ------------------------------------------------------------------------------------------
def store_with(tmp_path: Path, *models: tuple[str, list[str]]) -> ModelStore:
    for model_id, languages in models:
        folder = tmp_path / "models" / model_id
        folder.mkdir(parents=True)
        manifest = {"id": model_id, "capability": "asr", "engine": "faster-whisper", "languages": languages,
                    "files": [{"name": "model.bin", "size": 1000}]}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return ModelStore(tmp_path / "models")


MULTI = ["en", "de", "fr", "ja"]


@pytest.mark.parametrize(
    ("name", "language", "chosen"),
    [("auto", None, "whisper-small"), ("", "en", "whisper-small.en"), ("auto", "fr", "whisper-small"),
     ("whisper-1", "de", "whisper-small"), ("base", None, "whisper-base"), ("whisper-tiny", None, "whisper-tiny.en"),
     ("tiny.en", "en", "whisper-tiny.en"), ("Whisper-Small.EN", None, "whisper-small.en"),
     ("openai/whisper-base", None, "whisper-base")],
)
def test_model_names(tmp_path: Path, name: str, language: str | None, chosen: str) -> None:
    store = store_with(tmp_path, ("whisper-tiny.en", ["en"]), ("whisper-base", MULTI), ("whisper-small", MULTI),
                       ("whisper-small.en", ["en"]))
    choice = resolve_asr(store, name, store.installed(), language=language, translate=False)
    assert choice.model.id == chosen and choice.note is None


def test_model_name_errors(tmp_path: Path) -> None:
    store = store_with(tmp_path, ("whisper-tiny.en", ["en"]))
    installed = store.installed()
    with pytest.raises(Malformed, match="Installed speech-to-text models: whisper-tiny.en"):
        resolve_asr(store, "bogus", installed, language=None, translate=False)
    with pytest.raises(Malformed, match="whisper-large-v3' is known but not installed"):
        resolve_asr(store, "large", installed, language=None, translate=False)
    with pytest.raises(Malformed, match="whisper-tiny' is known but not installed"):
        resolve_asr(store, "tiny", installed, language="de", translate=False)
    with pytest.raises(Malformed, match="multilingual"):
        resolve_asr(store, "auto", installed, language=None, translate=True)
    fallback = resolve_asr(store, "auto", installed, language="de", translate=False)
    assert fallback.model.id == "whisper-tiny.en" and fallback.note and "English only" in fallback.note
    with pytest.raises(Malformed, match="No speech-to-text model is installed"):
        resolve_asr(store, "auto", [], language=None, translate=False)


def test_language_hints_normalise() -> None:
    assert normalise_language("EN-us") == "en" and normalise_language("pt_BR") == "pt"
    assert normalise_language("") is None and normalise_language(None) is None
    with pytest.raises(Malformed, match="ISO 639-1"):
        normalise_language("english")
