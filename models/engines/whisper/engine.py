"""faster-whisper inside its runner process: speech to text for one Whisper model.

Built as `WhisperEngine(spec)` by the runner. It reads the upload from the temp
file the server wrote (the job carries the path, never the bytes), decodes it
with `models.engines.whisper.audio_input`, and runs Whisper with word timestamps always on,
because sentence and subtitle segments are cut from word times.

Choices that matter for speed and for the bench (`bench/asr.py` imports
`transcribe_options` so raw faster-whisper and the server decode alike):
- CPU with int8 by default; CUDA with float16 when CTranslate2 sees a GPU. CTranslate2 loads
  cuBLAS lazily, so the model is warmed up before CUDA is trusted, and a failure
  falls back to the CPU with the reason in `info()` and the log.
- Audio longer than one 30 s Whisper window gets the VAD filter (silence and music make
  Whisper invent text) and, when nobody waits for a stream, the batched pipeline.
- Short audio is decoded whole, but only if VAD hears speech: pure silence answers empty
  instead of Whisper's favourite hallucination, "You".
- The job is accepted once the audio is read (so bad audio is still a plain HTTP error); a
  streamed job then emits each decoded segment at once; cancellation is checked between segments.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from models.core.errors import Malformed
from models.engines.base import JobContext
from models.engines.whisper.audio_input import SAMPLE_RATE, load_audio
from models.runtime.protocol import TranscribeJob

log = logging.getLogger("aistack.whisper")
PROVIDER = "faster-whisper"
LONG_AUDIO_SEC = 30.0
BEAM_SIZE = 5
# Windows per batch. A cancel lands between batches, so on the CPU a batch stays small: 2 windows keep
# most of the gain (1.5x sequential on the bench clip; 4 gave 1.65x but twice the time to stop).
BATCH_SIZE = {"cpu": 2, "cuda": 8}


def temperatures(first: float | None) -> tuple[float, ...]:
    """OpenAI's meaning of `temperature`: start there, and let the decoder raise it when it fails."""
    start = max(0.0, min(1.0, float(first or 0.0)))
    steps = [round(start + 0.2 * i, 2) for i in range(6)]
    return tuple(t for t in steps if t <= 1.0) or (start,)


def transcribe_options(
    *, language: str | None, task: str, prompt: str | None, temperature: float | None, long_audio: bool
) -> dict[str, Any]:
    """Keyword arguments for `WhisperModel.transcribe` (and the batched pipeline), as the server uses them."""
    return {
        "language": language or None,
        "task": task,
        "beam_size": BEAM_SIZE,
        "word_timestamps": True,
        "initial_prompt": prompt or None,
        "temperature": temperatures(temperature),
        "vad_filter": long_audio,
    }


class WhisperEngine:
    """One loaded Whisper model. Runs transcription jobs one at a time."""

    def __init__(self, spec: dict[str, Any]):
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        self.spec = spec
        self.model_id = str(spec.get("id"))
        self.fallback: str | None = None
        self.device, self.compute_type = self._pick_device(str(spec.get("device") or "auto"))
        if self.device == "cuda" and spec.get("compute_type"):  # int8_float16 when VRAM is short (models.hardware.device_choice)
            self.compute_type = str(spec["compute_type"])
        self.gpu_lost = False  # a CUDA error mid-job: the runner exits after it
        if self.device == "cuda":
            self.model = self._load_on_gpu_or_fall_back()
        else:
            self.model = self._load(self.device, self.compute_type)
        self.multilingual = bool(self.model.model.is_multilingual)
        self._batched: Any = None

    # Loading -------------------------------------------------------------------------
    @staticmethod
    def _pick_device(requested: str) -> tuple[str, str]:
        import ctranslate2

        if requested != "cpu" and ctranslate2.get_cuda_device_count() > 0:
            return "cuda", "float16"
        if requested == "cuda":
            log.warning("CUDA was asked for but CTranslate2 sees no GPU; using the CPU")
        return "cpu", "int8"

    def _load(self, device: str, compute_type: str) -> Any:
        from faster_whisper import WhisperModel

        path = str(self.spec["path"])
        try:
            return WhisperModel(path, device=device, compute_type=compute_type)
        except ValueError as exc:  # this CPU or GPU has no efficient kernel for the type
            log.warning("%s: %s compute type unavailable on %s (%s); using the default", self.model_id,
                        compute_type, device, exc)
            self.compute_type = "default"
            return WhisperModel(path, device=device, compute_type="default")

    def _load_on_gpu_or_fall_back(self) -> Any:
        """Load on the GPU and decode one second of silence there; on any CUDA failure, load on the CPU.

        CTranslate2 loads cuBLAS lazily, so a missing library fails at the first
        matrix product, not at load: the warm-up makes it fail here, not mid-request.
        """
        import numpy as np

        try:
            model = self._load("cuda", self.compute_type)
            segments, _ = model.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), language="en", beam_size=1)
            list(segments)
            return model
        except (RuntimeError, OSError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            self.fallback = f"CUDA failed at load or warm-up ({reason}); running on the CPU instead."
            log.warning("%s: %s", self.model_id, self.fallback)
        self.device, self.compute_type = "cpu", "int8"
        return self._load(self.device, self.compute_type)

    def info(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "compute_type": self.compute_type,
            "supports_streaming": True,
            "multilingual": self.multilingual,
            "fallback": self.fallback,
            "batch_size": BATCH_SIZE[self.device],
            "device_detail": self.compute_type if self.device == "cuda" else None,
            "device_reason": self.fallback or (self.spec.get("device_reason") if self.device == "cpu" else None),
        }

    def close(self) -> None:
        self._batched = None
        self.model = None

    # Jobs ----------------------------------------------------------------------------
    def run(self, job: TranscribeJob, ctx: JobContext) -> dict[str, Any]:
        started = time.perf_counter()
        task = "translate" if job.get("translate") else "transcribe"
        language = job.get("language") or None
        self._check_can(task, language)
        audio = load_audio(job["path"], max_seconds=float(job["max_audio_sec"]), should_stop=ctx.check)
        decoded_at = time.perf_counter()
        ctx.check()
        long_audio = audio.duration > LONG_AUDIO_SEC
        stream = bool(job.get("stream"))
        result: dict[str, Any] = {
            "task": task,
            "duration": round(audio.duration, 3),
            "vad": long_audio,
            "batched": long_audio and not stream,
        }
        if not long_audio and not _has_speech(audio.samples):
            segments: list[dict[str, Any]] = []
            result.update(language=language or "en", language_probability=0.0)
            ctx.accept(duration=result["duration"], language=result["language"])
        else:
            options = transcribe_options(
                language=language, task=task, prompt=job.get("prompt"), temperature=job.get("temperature"),
                long_audio=long_audio,
            )
            try:
                segments = self._decode(audio.samples, options, result, stream=stream, ctx=ctx)
            except (RuntimeError, OSError) as exc:
                from models.hardware.device_choice import gpu_lost_error, is_cuda_failure

                if self.device != "cuda" or not is_cuda_failure(exc):
                    raise
                self.gpu_lost = True
                raise gpu_lost_error(PROVIDER, exc) from exc
        if not stream:
            result["segments"] = segments
        result["decode_sec"] = round(decoded_at - started, 3)
        result["processing_sec"] = round(time.perf_counter() - started, 3)
        return result

    def _check_can(self, task: str, language: str | None) -> None:
        if self.multilingual:
            return
        if task == "translate":
            raise Malformed(
                f"{self.model_id} is an English-only model, so it cannot translate. Use a multilingual Whisper "
                "model (for example whisper-small) for translation.",
                provider=PROVIDER,
            )
        if language and language != "en":
            raise Malformed(
                f"{self.model_id} transcribes English only, but language '{language}' was asked for. "
                "Use a multilingual Whisper model or leave the language out.",
                provider=PROVIDER,
            )

    def _decode(
        self, samples: Any, options: dict[str, Any], result: dict[str, Any], *, stream: bool, ctx: JobContext
    ) -> list[dict[str, Any]]:
        """Iterate faster-whisper's lazy generator: each `next()` is real decoding, so check for cancel between."""
        if result["batched"]:
            if self._batched is None:
                from faster_whisper import BatchedInferencePipeline

                self._batched = BatchedInferencePipeline(self.model)
            generator, info = self._batched.transcribe(samples, batch_size=BATCH_SIZE[self.device], **options)
        else:
            generator, info = self.model.transcribe(samples, **options)
        result["language"] = info.language
        result["language_probability"] = round(float(info.language_probability or 0.0), 3)
        # The audio is readable and the language known: the server may start its answer.
        ctx.accept(duration=result["duration"], language=result["language"])
        segments: list[dict[str, Any]] = []
        for segment in generator:
            ctx.check()
            data = segment_dict(segment, len(segments))
            if stream:
                ctx.emit({"segment": data})
            else:
                segments.append(data)
        return segments


def segment_dict(segment: Any, index: int) -> dict[str, Any]:
    """A faster-whisper Segment as plain data (numpy floats become Python floats)."""
    words = [
        {"start": round(float(w.start), 3), "end": round(float(w.end), 3), "word": str(w.word),
         "probability": round(float(w.probability), 3)}
        for w in segment.words or []
    ]
    return {
        "id": index,
        "seek": int(segment.seek),
        "start": round(float(segment.start), 3),
        "end": round(float(segment.end), 3),
        "text": str(segment.text),
        "tokens": [int(t) for t in segment.tokens],
        "avg_logprob": round(float(segment.avg_logprob), 4),
        "compression_ratio": round(float(segment.compression_ratio), 4),
        "no_speech_prob": round(float(segment.no_speech_prob), 4),
        "temperature": float(segment.temperature or 0.0),
        "words": words,
    }


def _has_speech(samples: Any) -> bool:
    from faster_whisper.vad import get_speech_timestamps

    return bool(get_speech_timestamps(samples))
