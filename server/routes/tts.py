"""POST /v1/audio/speech (OpenAI TTS shape) and GET /v1/audio/voices.

The route validates the request, picks the voice (`models.naming.voices`), takes the
voice's slot and relays what the voice's runner sends: the engine synthesises
sentence by sentence and encodes each sentence itself, so this side only joins
or forwards bytes. Headers: `X-Sample-Rate` (the rate a client decodes; 48000
for opus), `X-Audio-Duration` (seconds, whole-file answers only: a stream's
length is unknown when it starts) and `X-Voice` (the voice that spoke).
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from models.core.errors import AistackError, Cancelled, Malformed, Overflow
from models.core.settings import Settings
from models.naming.voices import OPENAI_VOICES, VoiceBook, VoiceChoice
from models.runtime.manager import Lease, parse_keep_alive
from models.runtime.protocol import SpeakJob
from models.runtime.registry import speaking_engines
from server.jobs import SSE_HEADERS, LeasedStream, acquire, manager_of, obs_of, run_job, sse, start_stream
from server.schemas import ERROR_RESPONSES

router = APIRouter(tags=["speech"])

AudioFormat = Literal["wav", "mp3", "opus", "aac", "flac", "pcm"]
CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
}
TASK_TYPES = ("CustomVoice", "VoiceClone", "VoiceDesign")


class VoiceRef(BaseModel):
    """OpenAI's object form of `voice`: `{"id": "..."}`."""

    id: str


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str = Field(description="Text to speak, UTF-8, non-empty.")
    model: str | None = Field(None, description="A TTS model id, or tts-1 / tts-1-hd / gpt-4o-mini-tts (the voice decides).")
    voice: str | VoiceRef | None = Field(
        None, description="Installed voice id, a speaker of a multi-speaker voice, or an OpenAI voice name "
        f"({', '.join(OPENAI_VOICES)}). Missing means the default voice.",
    )
    response_format: AudioFormat | None = Field(None, description="wav (default), mp3, opus, aac, flac or pcm.")
    speed: float | None = Field(None, ge=0.25, le=4.0, description="0.25 to 4.0, default 1.0.")
    stream: bool | None = Field(None, description="Send audio sentence by sentence as it is made.")
    stream_format: Literal["audio", "sse"] | None = Field(
        None, description="audio (default: chunked audio bytes) or sse (speech.audio.delta events). sse implies stream."
    )
    language: str | None = Field(None, description="Language hint: picks a voice of that language for OpenAI names.")
    task_type: str | None = Field(None, description="CustomVoice (default). The installed voices cannot clone or design voices.")
    speaker: str | int | None = Field(None, description="aistack: speaker of a multi-speaker voice, by name or index.")
    instructions: str | None = Field(None, description="OpenAI field; the installed voices cannot follow it, so it is ignored.")
    keep_alive: float | str | None = Field(None, description="aistack: how long the voice stays loaded after this request.")


class Speaker(BaseModel):
    id: int
    name: str


class VoiceEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["voice"] = "voice"
    name: str
    language: str = Field(description="Language and region, e.g. en_US")
    languages: list[str] = Field(description="ISO 639-1 codes")
    sample_rate: int
    quality: str = Field(description="x_low, low, medium or high")
    num_speakers: int
    speakers: list[Speaker] = Field(description="Speakers of a multi-speaker voice; empty for one speaker")
    default: bool = Field(False, description="Speaks when a request names no voice")
    openai_voices: list[str] = Field(default_factory=list, description="OpenAI voice names that speak with this voice")


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceEntry]
    openai_voice_map: dict[str, str] = Field(description="OpenAI voice name -> voice id (and :speaker) it speaks with")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def voice_book(request: Request) -> VoiceBook:
    return VoiceBook(request.app.state.store, _settings(request).voice_map)


@router.get("/v1/audio/voices", response_model=VoiceList, responses=ERROR_RESPONSES)
async def list_voices(request: Request) -> VoiceList:
    """The installed voices, and which one each OpenAI voice name speaks with."""
    book = voice_book(request)
    if not any(manager_of(request).engine_available(engine) for engine in speaking_engines()):
        return VoiceList(data=[], openai_voice_map={})
    table = book.openai_table()
    try:
        default = book.default().voice.id if book.voices else None
    except Malformed:  # AISTACK_VOICE_MAP names a default that is not installed; requests say so
        default = None
    entries = [
        VoiceEntry(
            **voice.describe(),
            default=voice.id == default,
            openai_voices=[name for name, label in table.items() if label.split(":")[0] == voice.id],
        )
        for voice in book.voices
    ]
    return VoiceList(data=entries, openai_voice_map=table)


_AUDIO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {ct: {"schema": {"type": "string", "format": "binary"}} for ct in CONTENT_TYPES.values()}
          | {"text/event-stream": {"schema": {"type": "string"}}},
          "description": "The audio file, a chunked audio stream, or speech.audio.* events"},
    **ERROR_RESPONSES,
}


@router.post("/v1/audio/speech", response_class=Response, responses=_AUDIO_RESPONSES)
async def create_speech(request: Request, body: SpeechRequest) -> Response:
    """Text to speech (OpenAI TTS API shape)."""
    text = _checked_input(body, _settings(request))
    choice = voice_book(request).choose(_voice_name(body.voice), body.model, body.speaker, body.language)
    fmt = body.response_format or "wav"
    sse_mode = body.stream_format == "sse"
    stream = bool(body.stream) or sse_mode
    obs = obs_of(request)
    obs["extra"].update(voice=choice.label, chars=len(text), response_format=fmt, stream=stream)
    if sse_mode:
        obs["extra"]["stream_format"] = "sse"
    keep_alive = parse_keep_alive(body.keep_alive)
    job: SpeakJob = {"task": "speak", "text": text, "format": fmt, "stream": stream, "speed": body.speed or 1.0,
                     "speaker_id": choice.speaker_id}
    lease = await acquire(request, choice.model.id, keep_alive=keep_alive)
    if stream:
        return await _streamed(request, lease, job, choice, sse_mode)
    return await _whole(request, lease, job, choice)


def _header_text(text: str) -> str:
    """Header values travel as latin-1; a speaker name may not fit."""
    return text.encode("ascii", "replace").decode("ascii")


def _voice_name(voice: str | VoiceRef | None) -> str | None:
    return voice.id if isinstance(voice, VoiceRef) else voice


def _checked_input(body: SpeechRequest, settings: Settings) -> str:
    task = (body.task_type or "CustomVoice").strip()
    if task != "CustomVoice":
        if task in TASK_TYPES:
            raise Malformed(f"task_type {task} is not something the installed voices can do. Use CustomVoice (or leave it out).")
        raise Malformed(f"Unknown task_type '{task[:40]}'. Use CustomVoice (or leave it out).")
    text = body.input
    if not text.strip():
        raise Malformed("'input' is empty: send the text to speak.")
    if len(text) > settings.max_tts_chars:
        raise Overflow(
            f"'input' is {len(text)} characters; the limit is {settings.max_tts_chars} (AISTACK_MAX_TTS_CHARS). "
            "Split the text into several requests."
        )
    return text


def _record_result(request: Request, final: dict[str, Any], started: float) -> None:
    duration = float(final.get("duration") or 0.0)
    elapsed = time.perf_counter() - started
    obs_of(request)["extra"].update(
        audio_sec=round(duration, 3),
        rtf=round(elapsed / duration, 4) if duration else None,
        sentences=final.get("sentences"),
    )


async def _whole(request: Request, lease: Lease, job: SpeakJob, choice: VoiceChoice) -> Response:
    started = time.perf_counter()
    partials, final = await run_job(request, lease, job)
    audio = b"".join(bytes(p.get("audio") or b"") for p in partials) + bytes(final.get("audio") or b"")
    _record_result(request, final, started)
    headers = {
        "X-Sample-Rate": str(final.get("sample_rate")),
        "X-Audio-Duration": f"{float(final.get('duration') or 0.0):.3f}",
        "X-Voice": _header_text(choice.label),
    }
    return Response(audio, media_type=CONTENT_TYPES[job["format"]], headers=headers)


async def _streamed(request: Request, lease: Lease, job: SpeakJob, choice: VoiceChoice, sse_mode: bool) -> Response:
    """Wait until the engine accepts (its first sentence is spoken: an early failure still gets its envelope)."""
    started = time.perf_counter()
    job_events = await start_stream(request, lease, job)
    rate = job_events.accepted.get("sample_rate")
    headers = {"X-Voice": _header_text(choice.label), "Cache-Control": "no-cache"}
    if rate:
        headers["X-Sample-Rate"] = str(rate)

    async def relay() -> AsyncGenerator[dict[str, Any], None]:
        """Every event's data, with `final` set on the last. (LeasedStream logs a client gone mid-way as 499.)"""
        try:
            async for event in job_events.events:
                yield {**event.data, "final": event.final}
                if event.final:
                    _record_result(request, event.data, started)
                    return
        except AistackError as exc:
            obs_of(request)["status_override"] = exc.status
            raise
        finally:
            await job_events.aclose()

    if sse_mode:
        return LeasedStream(_sse_events(request, relay(), len(job["text"])), lease, media_type="text/event-stream",
                            headers={**headers, **SSE_HEADERS})
    return LeasedStream(_audio_bytes(relay()), lease, media_type=CONTENT_TYPES[job["format"]], headers=headers)


async def _audio_bytes(events: AsyncGenerator[dict[str, Any], None]) -> AsyncIterator[bytes]:
    try:
        async for data in events:
            chunk = bytes(data.get("audio") or b"")
            if chunk:
                yield chunk
    finally:
        await events.aclose()


async def _sse_events(request: Request, events: AsyncGenerator[dict[str, Any], None], chars: int) -> AsyncIterator[bytes]:
    """OpenAI's speech.audio.delta / speech.audio.done events; an error after the start is an `error` event."""
    try:
        async for data in events:
            chunk = bytes(data.get("audio") or b"")
            if chunk:
                yield sse({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode("ascii")})
            if data["final"]:
                frames = int(data.get("frames") or 0)
                usage = {"input_tokens": chars, "output_tokens": frames, "total_tokens": chars + frames}
                yield sse({"type": "speech.audio.done", "usage": usage, "duration": data.get("duration"),
                           "sample_rate": data.get("sample_rate")})
    except Cancelled:
        raise
    except AistackError as exc:
        yield sse({"type": "error", "error": exc.to_dict()})
    finally:
        await events.aclose()
