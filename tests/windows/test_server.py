"""The server under Windows: all three capabilities through the OpenAI SDK, on a data dir whose path
has spaces and non-ASCII letters, with llama.cpp's cross-compiled Windows DLLs behind chat."""

from __future__ import annotations

import io
import wave

import httpx
import openai
import pytest

from tests.windows.support import STARTER_IDS, App


@pytest.fixture(scope="module")
def client(server: App) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=120, max_retries=0)


def test_every_starter_model_is_listed_and_served_by_its_engine(client: openai.OpenAI) -> None:
    listed = {m.id for m in client.models.list()}
    assert set(STARTER_IDS) <= listed, listed  # chat included: llama_cpp finds its DLLs in llama-cpu/lib


def test_chat_answers_through_the_windows_build_of_llama_cpp(client: openai.OpenAI, server: App) -> None:
    reply = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=24, temperature=0,
                                           messages=[{"role": "user", "content": "Name three colours."}])
    assert reply.choices[0].message.content and reply.usage and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=16, stream=True,
                                            messages=[{"role": "user", "content": "Say hello."}])
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len(pieces) > 2 and "".join(pieces).strip()
    row = next(r for r in server.status()["models"] if r["id"] == "smollm2-135m-instruct")
    assert row["loaded"] and row.get("device") == "cpu", row


def test_speech_round_trip(client: openai.OpenAI) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav").read()
    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.getnframes() / wav.getframerate() > 1.0
    heard = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", audio))
    words = heard.text.lower()
    assert "fox" in words and "lazy dog" in words, heard.text


def test_bad_input_gets_the_envelope(server: App) -> None:
    response = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio")},
                          data={"model": "whisper-1"}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["message"], response.text


def test_logs_and_models_live_under_the_odd_path(server: App) -> None:
    assert " " in str(server.data_dir) and not str(server.data_dir).isascii()
    assert (server.data_dir / "logs" / "aistack.log").stat().st_size > 0
    assert (server.data_dir / "admin-token").is_file()
