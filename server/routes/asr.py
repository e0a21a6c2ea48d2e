"""POST /v1/audio/transcriptions and /v1/audio/translations: speech to text, OpenAI's Whisper API shape.

The route never touches faster-whisper or av: it streams the upload to a temp
file, picks the model, takes its slot, and sends the runner a job that names
the file. The runner probes and decodes it (bad or over-long audio comes back
as `Malformed` / `Overflow`) and returns, or for `stream=true` emits one by one,
Whisper's decoder segments; `server.transcripts` turns them into sentences or
subtitle cues and the response formats. The temp file is removed on every path:
here for plain answers, by the stream's `on_close` for SSE.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError

from models.core.errors import AistackError, Malformed, Unknown
from models.naming.asr_models import AsrChoice, english_only, normalise_language, resolve_asr
from models.runtime.manager import parse_keep_alive
from models.runtime.protocol import TranscribeJob
from server import transcripts
from server.asr_schemas import (
    Transcription,
    TranscriptionForm,
    TranscriptionVerbose,
    form_openapi,
    response_content,
)
from server.errors import describe_validation
from server.jobs import SSE_HEADERS, LeasedStream, StartedJob, acquire, manager_of, obs_of, run_job, sse, start_stream
from server.schemas import ERROR_RESPONSES
from server.uploads import Upload, receive_upload

log = logging.getLogger("aistack.server")
router = APIRouter(tags=["audio"], responses={**ERROR_RESPONSES, **response_content()})
_GRANULARITY_KEYS = ("timestamp_granularities[]", "timestamp_granularities")


@router.post(
    "/v1/audio/transcriptions",
    response_model=Transcription | TranscriptionVerbose,
    openapi_extra=form_openapi(translations=False),
    summary="Transcribe audio or video to text",
)
async def create_transcription(request: Request) -> Response:
    return await _transcribe(request, translations=False)


@router.post(
    "/v1/audio/translations",
    response_model=Transcription | TranscriptionVerbose,
    openapi_extra=form_openapi(translations=True),
    summary="Translate speech in audio or video to English text",
)
async def create_translation(request: Request) -> Response:
    return await _transcribe(request, translations=True)


async def _transcribe(request: Request, *, translations: bool) -> Response:
    upload = await receive_upload(request)
    owned = True  # until a stream takes the temp file over
    try:
        form = _parse_form(upload, translations=translations)
        if upload.size == 0:
            raise Malformed("The uploaded file is empty (0 bytes). Send an audio or video file.")
        language = normalise_language(form.language)
        choice = _choose_model(request, form, language)
        if choice.note:
            language = None  # the chosen model cannot honour the hint; it transcribes what it can
        keep_alive = parse_keep_alive(form.keep_alive)
        obs = obs_of(request)
        obs["extra"].update(stream=form.stream, response_format="sse" if form.stream else form.response_format,
                            task="translate" if form.translate else "transcribe",
                            segment_granularity=form.segment_granularity)
        lease = await acquire(request, choice.model.id, keep_alive=keep_alive)
        streams = bool(lease.info.get("supports_streaming", True))
        job: TranscribeJob = {
            "task": "transcribe", "path": str(upload.path), "language": language, "translate": form.translate,
            "prompt": form.prompt, "temperature": form.temperature, "stream": form.stream and streams,
            "max_audio_sec": request.app.state.settings.max_audio_sec,
        }
        headers = {"X-Aistack-Model": choice.model.id, **({"X-Aistack-Warning": choice.note} if choice.note else {})}
        if form.stream:
            # The runner reads and probes the audio before it accepts the job, so unreadable, truncated
            # or over-long audio still gets its 400 / 413 envelope.
            started = await start_stream(request, lease, job)
            events = _events(request, started, form, choice, streams=streams)
            response = LeasedStream(events, lease, media_type="text/event-stream",
                                    headers={**SSE_HEADERS, **headers}, on_close=upload.remove)
            owned = False
            return response
        _, result = await run_job(request, lease, job)
        _observe(request, result)
        return _render(result, form, headers)
    finally:
        if owned:
            upload.remove()


def _parse_form(upload: Upload, *, translations: bool) -> TranscriptionForm:
    """Validate the text fields; empty values count as missing (clients send `language=` for "detect")."""
    data: dict[str, Any] = {}
    for name, values in upload.fields.items():
        if name in _GRANULARITY_KEYS:
            data.setdefault("timestamp_granularities", []).extend(v.strip() for v in values if v.strip())
        elif values and values[0].strip():
            data[name] = values[0].strip() if name != "prompt" else values[0]
    if translations:
        data.pop("language", None)
        data["translate"] = True
    try:
        return TranscriptionForm.model_validate(data)
    except ValidationError as exc:
        raise Malformed(describe_validation(list(exc.errors()))) from None


def _choose_model(request: Request, form: TranscriptionForm, language: str | None) -> AsrChoice:
    manager = manager_of(request)
    choice = resolve_asr(manager.store, form.model, manager.servable(), language=language, translate=form.translate)
    model = choice.model
    if english_only(model) and form.translate:
        raise Malformed(
            f"{model.id} is an English-only model, so it cannot translate. Use a multilingual Whisper model "
            "(for example whisper-small) for translation."
        )
    if english_only(model) and language not in (None, "en") and not choice.note:
        raise Malformed(
            f"{model.id} transcribes English only, but language '{language}' was asked for. "
            "Use a multilingual Whisper model (or model=auto), or leave the language out."
        )
    return choice


def _observe(request: Request, result: dict[str, Any]) -> None:
    duration = float(result.get("duration") or 0.0)
    processing = float(result.get("processing_sec") or 0.0)
    obs_of(request)["extra"].update(
        audio_sec=round(duration, 3),
        rtf=round(processing / duration, 4) if duration else None,
        language=result.get("language"),
        batched=bool(result.get("batched")),
    )


def _render(result: dict[str, Any], form: TranscriptionForm, headers: dict[str, str]) -> Response:
    decoder = result.get("segments") or []
    fmt = form.response_format
    if fmt in ("srt", "vtt"):
        cues = transcripts.segment_all(decoder, "subtitle")
        body, media = (transcripts.srt(cues), "application/x-subrip") if fmt == "srt" else (transcripts.vtt(cues), "text/vtt")
        return Response(body, media_type=f"{media}; charset=utf-8", headers=headers)
    segments = transcripts.segment_all(decoder, form.segment_granularity)
    if fmt == "text":
        return PlainTextResponse(transcripts.full_text(segments) + "\n", headers=headers)
    if fmt == "verbose_json":
        wanted = form.timestamp_granularities
        body_json = transcripts.verbose_json(
            result, segments,
            with_segments=wanted is None or "segment" in wanted,
            with_words=wanted is None or "word" in wanted,
        )
        return JSONResponse(body_json, headers=headers)
    usage = {"type": "duration", "seconds": round(float(result.get("duration") or 0.0), 3)}
    return JSONResponse({"text": transcripts.full_text(segments), "usage": usage}, headers=headers)


async def _events(
    request: Request, started: StartedJob, form: TranscriptionForm, choice: AsrChoice, *, streams: bool
) -> AsyncIterator[bytes]:
    """SSE: warnings first, a delta per finished sentence or cue as soon as it is decoded, then done.

    A failure after the response began can no longer change the status code, so it
    becomes an `error` event and the stream ends.
    """
    model_id = choice.model.id
    if choice.note:
        yield sse({"type": "warning", "code": "language_unsupported", "model": model_id, "message": choice.note})
    if not streams:
        yield sse({"type": "warning", "code": "streaming_unsupported", "model": model_id,
                   "message": f"{model_id} cannot stream; the whole transcript follows as one delta when it is done."})
    segmenter = transcripts.Segmenter(form.segment_granularity)
    sent: list[str] = []
    try:
        async for event in started.events:
            if not event.final:
                finished = segmenter.feed(event.data.get("segment") or {})
            else:
                result = event.data
                finished = segmenter.finish() if streams else _whole(result, form)
            for segment in finished:
                sent.append(segment["delta"])
                yield sse({"type": "transcript.text.delta", "delta": segment["delta"],
                           "segment": transcripts.public(segment)})
            if event.final:
                _observe(request, result)
                yield sse({"type": "transcript.text.done", "text": "".join(sent).strip(),
                           "language": result.get("language", ""), "duration": result.get("duration", 0.0),
                           "usage": {"type": "duration", "seconds": result.get("duration", 0.0)}})
    except AistackError as exc:
        yield sse({"type": "error", "error": exc.to_dict()})
    except Exception:
        log.exception("transcription stream failed")
        error = Unknown("aistack hit an internal error. It has been logged; please report it with the X-Request-ID.")
        yield sse({"type": "error", "error": error.to_dict()})
    finally:
        await started.aclose()


def _whole(result: dict[str, Any], form: TranscriptionForm) -> list[dict[str, Any]]:
    segments = transcripts.segment_all(result.get("segments") or [], form.segment_granularity)
    return [transcripts.as_one(segments)] if segments else []
