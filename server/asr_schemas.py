"""Request and response models of the speech-to-text endpoints, mirroring OpenAI's audio API.

The form is parsed by `server.uploads` (the file streams to disk), then the
other fields are validated with `TranscriptionForm`; the models below also
describe the endpoints in `/openapi.json`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ResponseFormat = Literal["json", "verbose_json", "text", "srt", "vtt"]


class TranscriptionForm(BaseModel):
    """The multipart fields besides `file` (an audio or video file in any format FFmpeg reads)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field("", description="Model id, size (tiny, small.en, ...), whisper-1, or auto (empty = auto)")
    language: str | None = Field(None, description="ISO 639-1 hint such as en or de; empty = detect")
    response_format: ResponseFormat = "json"
    translate: bool = Field(False, description="Translate to English (multilingual Whisper models only)")
    stream: bool = Field(False, description="Server-Sent Events per segment; response_format is then ignored")
    segment_granularity: Literal["sentence", "subtitle"] = Field(
        "sentence", description="sentence: whole sentences (30 s cap); subtitle: cues of <= 70 chars lasting 1-7 s"
    )
    timestamp_granularities: list[Literal["segment", "word"]] | None = Field(
        None, description="Sent as timestamp_granularities[]: which of segments / words verbose_json includes"
    )
    prompt: str | None = Field(None, max_length=8000, description="Text that primes the decoder (names, spelling)")
    temperature: float = Field(0.0, ge=0.0, le=1.0, description="Sampling temperature; 0 = greedy with fallback")
    keep_alive: str | None = Field(None, description="aistack: how long the model stays loaded, e.g. 5m, -1, 0")


class TranscriptWord(BaseModel):
    model_config = ConfigDict(extra="allow")

    start: float
    end: float
    word: str
    probability: float | None = None


class TranscriptSegment(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    start: float
    end: float
    text: str
    seek: int | None = None
    tokens: list[int] | None = Field(None, description="Decoder tokens when the segment is whole decoder segments")
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    temperature: float | None = None
    words: list[TranscriptWord] = Field(default_factory=list)


class Usage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class Transcription(BaseModel):
    """`response_format=json`."""

    text: str
    usage: Usage | None = None


class TranscriptionVerbose(BaseModel):
    """`response_format=verbose_json`."""

    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[TranscriptSegment] | None = None
    words: list[TranscriptWord] | None = None
    usage: Usage | None = None


def form_openapi(*, translations: bool) -> dict[str, Any]:
    """`openapi_extra` declaring the multipart body, since the route parses it itself."""
    schema = TranscriptionForm.model_json_schema()
    properties = dict(schema.get("properties", {}))
    if translations:
        for name in ("language", "translate"):
            properties.pop(name, None)
    granularity = properties.pop("timestamp_granularities", None)
    if granularity is not None:
        properties["timestamp_granularities[]"] = granularity
    properties = {"file": {"type": "string", "format": "binary", "description": "Audio or video file"}, **properties}
    body = {**schema, "properties": properties, "required": ["file"]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body}}}}


def response_content() -> dict[int | str, dict[str, Any]]:
    """The non-JSON answers of the endpoints, for the docs."""
    text = {"schema": {"type": "string"}}
    events = {"schema": {"type": "string", "description": (
        'One JSON object per "data:" line: {"type": "transcript.text.delta", "delta", "segment"} per sentence '
        '(or cue) as soon as it is decoded, then {"type": "transcript.text.done", "text", "language", "duration"}. '
        '{"type": "warning", "code", "model", "message"} may come first; {"type": "error", "error": {...}} '
        "reports a failure after the stream began and ends it."
    )}}
    return {
        200: {
            "description": "json / verbose_json, or text, srt, vtt, or (stream=true) Server-Sent Events",
            "content": {
                "text/plain": text, "application/x-subrip": text, "text/vtt": text, "text/event-stream": events,
            },
        }
    }
