"""Every message that crosses the pipe between the server and a runner process, on one screen.

Server to runner: `Job`, `Cancel`, `Stop` (the model to load travels as the
process's arguments, a `Load`). Runner to server: `Ready` or `LoadFailed`
once, then per job: at most one `Accepted` (the engine has read and checked
the input, so the server may start a streamed answer), any number of
`Partial`, and one `Final` or `Error`.

Messages are frozen dataclasses, so the server can tell a message it knows
from anything else a broken runner might write. What a job asks for and what it
returns is plain data (it is pickled), typed per capability below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypedDict

# Jobs, one type per capability -----------------------------------------------------------------


class TranscribeJob(TypedDict):
    """Speech to text on a temp file the server wrote (the job names the file, never carries the bytes)."""

    task: Literal["transcribe"]
    path: str
    language: str | None
    translate: bool
    prompt: str | None
    temperature: float | None
    stream: bool
    max_audio_sec: float


class SpeakJob(TypedDict):
    """Text to speech, encoded by the engine in `format`."""

    task: Literal["speak"]
    text: str
    format: str
    stream: bool
    speed: float
    speaker_id: int | None


class Generation(TypedDict):
    """What chat and completion jobs share."""

    sampling: dict[str, Any]
    max_tokens: int | None
    stop: list[str]
    stream: bool


class ChatJob(Generation):
    task: Literal["chat"]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    tool_choice: Any
    response_format: dict[str, Any]


class CompletionJob(Generation):
    task: Literal["completion"]
    prompt: str


class EmbeddingJob(TypedDict):
    task: Literal["embeddings"]
    inputs: list[Any]  # texts or lists of token ids


JobSpec = TranscribeJob | SpeakJob | ChatJob | CompletionJob | EmbeddingJob


# Partial and final results, per capability ---------------------------------------------------


class TranscriptPartial(TypedDict):
    segment: dict[str, Any]  # one Whisper decoder segment with its words


class AudioPartial(TypedDict, total=False):
    audio: bytes  # encoded audio, in the job's format
    sample_rate: int
    samples: int


class TextPartial(TypedDict):
    delta: str  # generated text since the last partial


class TranscriptResult(TypedDict, total=False):
    task: str
    duration: float
    language: str
    language_probability: float
    segments: list[dict[str, Any]]  # empty for a streamed job: its segments went as partials
    vad: bool
    batched: bool
    decode_sec: float
    processing_sec: float


class SpeechResult(TypedDict, total=False):
    audio: bytes  # what was not sent as partials
    sample_rate: int
    voice_sample_rate: int
    samples: int
    duration: float
    sentences: int
    frames: int
    synth_sec: float
    first_audio_sec: float | None


class GenerationResult(TypedDict, total=False):
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft_ms: float
    tokens_per_s: float
    content: str  # chat
    tool_calls: list[dict[str, Any]]  # chat
    unsent: str  # chat: text of a cut-off tool call a stream has not shown yet
    text: str  # completion


class EmbeddingResult(TypedDict):
    vectors: list[bytes]  # float32, one per input
    prompt_tokens: int
    dimensions: int


Result = TranscriptResult | SpeechResult | GenerationResult | EmbeddingResult


# Server to runner ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What a runner process is started with: the engine class and the model it loads."""

    engine_path: str  # "module:Class"
    spec: dict[str, Any]  # InstalledModel.to_spec() plus "settings" and "device"


@dataclass(frozen=True)
class Job:
    id: int
    job: JobSpec


@dataclass(frozen=True)
class Cancel:
    id: int


@dataclass(frozen=True)
class Stop:
    pass


# Runner to server ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    info: dict[str, Any]  # where and how the model runs: {"device": "cpu", ...}


@dataclass(frozen=True)
class LoadFailed:
    error: dict[str, Any]  # an AistackError as a dict


@dataclass(frozen=True)
class Accepted:
    """The engine read and checked the input: a streamed answer may start. Sent at most once per job."""

    id: int
    data: dict[str, Any] = field(default_factory=dict)
    final: ClassVar[bool] = False


@dataclass(frozen=True)
class Partial:
    id: int
    data: dict[str, Any]
    final: ClassVar[bool] = False


@dataclass(frozen=True)
class Final:
    id: int
    data: dict[str, Any]
    final: ClassVar[bool] = True


@dataclass(frozen=True)
class Error:
    """A job failed. `id` is None when the runner could not even read the message it was sent.

    `retiring`: the runner exits after this answer (its GPU state is gone), so the next request must start a
    fresh runner, not queue behind this one's exit.
    """

    id: int | None
    error: dict[str, Any]
    retiring: bool = False


JobEvent = Accepted | Partial | Final
FROM_RUNNER: tuple[type, ...] = (Ready, LoadFailed, Accepted, Partial, Final, Error)
