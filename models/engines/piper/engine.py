"""The piper engine: text to speech with a piper voice, on the CPU, sentence by sentence.

Runs inside the model's runner process. Text is cleaned, split into sentences
(and over-long sentences into pieces), and each piece is phonemised and
synthesised on its own, so long text streams its first audio early and a
cancel is seen between sentences. Each sentence's audio is encoded right here
(`models.engines.piper.audio_output`), so the server only relays bytes.

Piper stays on the CPU (see ARCHITECTURE.md, GPU): the ONNX Runtime GPU package
cannot sit beside the CPU one, and piper is many times faster than real time
on a CPU anyway.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.core.errors import Malformed
from models.engines.base import JobContext
from models.runtime.protocol import SpeakJob

PROVIDER = "piper"
MAX_PIECE_CHARS = 400  # longest text handed to espeak at once: bounds latency and memory
MAX_PHONEMES = 600  # longest phoneme run given to the model in one call
EMIT_BYTES = 1 << 20  # a finished (non-streamed) file goes to the server in slices of this size

# A sentence ends at . ! ? … (plus closing quotes) before a space, at CJK full stops, or at a line break.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+[”’」』)]*|\n")
_CUT_AT = re.compile(r"[,;:，、；]\s*|\s")
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr vs etc e.g i.e no fig inc ltd co mt approx dept".split())


def clean_text(text: str) -> str:
    """Drop what espeak cannot take (NUL and other control characters, lone surrogates, format marks)."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in "\n\t":
            out.append(ch)
        elif category in ("Cc", "Cs", "Co", "Cn"):
            out.append(" ")
        elif category != "Cf":
            out.append(ch)
    return "".join(out)


def split_sentences(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """Sentences of `text`, none longer than `max_chars` (long ones are cut at commas, then spaces, then anywhere)."""
    pieces: list[str] = []
    for sentence in _sentences(text):
        while len(sentence) > max_chars:
            cuts = [m.end() for m in _CUT_AT.finditer(sentence, 0, max_chars) if m.end() > max_chars // 4]
            cut = cuts[-1] if cuts else max_chars
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    return pieces


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for end in _SENTENCE_END.finditer(text):
        if end.group().startswith(".") and _is_abbreviation(text[start : end.start()]):
            continue  # "Dr. Smith", "e.g. this", "J. Doe": not a sentence end
        sentence = text[start : end.end()].strip()
        start = end.end()
        if sentence:
            yield sentence
    if text[start:].strip():
        yield text[start:].strip()


def _is_abbreviation(before: str) -> bool:
    words = before.split()
    word = words[-1].lower().lstrip("(\"'") if words else ""
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _cap_phonemes(phonemes: list[str], limit: int = MAX_PHONEMES) -> Iterator[list[str]]:
    """Cut a phoneme run longer than `limit` at word gaps (or anywhere, for runs without gaps)."""
    while len(phonemes) > limit:
        gap = max((i for i in range(limit // 2, limit) if phonemes[i] == " "), default=limit)
        yield phonemes[:gap]
        phonemes = phonemes[gap:]
    if phonemes:
        yield phonemes


class PiperEngine:
    """One piper voice (`.onnx` + `.onnx.json`) loaded in ONNX Runtime on the CPU."""

    def __init__(self, spec: dict[str, Any]):
        from piper import PiperVoice

        from models.engines.piper.voice_files import piper_files

        onnx_path, config_path = piper_files(Path(spec["path"]), list(spec.get("files") or []))
        self.voice = PiperVoice.load(onnx_path, config_path=config_path, use_cuda=False)
        self.config = self.voice.config
        self.sample_rate = int(self.config.sample_rate)
        self.model_id = str(spec.get("id"))
        self._warm_up()

    def _warm_up(self) -> None:
        """The first ONNX run allocates its buffers; pay for that at load, not on the first request."""
        for phonemes in self.voice.phonemize("Ready."):
            self.voice.phoneme_ids_to_audio(self.voice.phonemes_to_ids(phonemes))

    def info(self) -> dict[str, Any]:
        return {
            "device": "cpu",
            "compute_type": "float32",
            "sample_rate": self.sample_rate,
            "num_speakers": int(self.config.num_speakers),
        }

    def close(self) -> None:
        pass

    # Jobs ------------------------------------------------------------------------------
    def run(self, job: SpeakJob, ctx: JobContext) -> dict[str, Any]:
        """Accepted once the first sentence is spoken; streaming emits `{"audio": bytes, ...}` per sentence."""
        from models.engines.piper.audio_output import open_encoder

        text = clean_text(str(job.get("text") or ""))
        fmt = str(job.get("format") or "wav")
        streaming = bool(job.get("stream"))
        syn_config = self._synthesis_config(job)
        encoder = open_encoder(fmt, self.sample_rate, streaming=streaming)
        started = time.perf_counter()
        samples = sentences = 0
        first_audio_sec: float | None = None
        for pcm in self._sentences_audio(text, syn_config, ctx):
            samples += len(pcm)
            sentences += 1
            chunk = encoder.add(pcm)
            ctx.accept(sample_rate=encoder.sample_rate)
            if streaming and chunk:
                first_audio_sec = first_audio_sec or time.perf_counter() - started
                ctx.emit({"audio": chunk, "sample_rate": encoder.sample_rate, "samples": len(pcm)})
        if samples == 0:
            raise Malformed(
                "The voice could not pronounce any of the text: it may be in a script or language this voice does "
                "not speak. Use a voice for that language, or send words this voice can read.",
                provider=PROVIDER,
            )
        tail = encoder.finish()
        if streaming:
            audio_out = tail
        else:
            for start in range(0, len(tail), EMIT_BYTES):
                ctx.emit({"audio": tail[start : start + EMIT_BYTES]})
            audio_out = b""
        return {
            "audio": audio_out,
            "sample_rate": encoder.sample_rate,
            "voice_sample_rate": self.sample_rate,
            "samples": samples,
            "duration": samples / self.sample_rate,
            "sentences": sentences,
            "frames": samples // int(self.config.hop_length or 256),
            "synth_sec": time.perf_counter() - started,
            "first_audio_sec": first_audio_sec,
        }

    def _synthesis_config(self, job: SpeakJob) -> Any:
        from piper import SynthesisConfig

        speed = float(job.get("speed") or 1.0)
        if not 0.25 <= speed <= 4.0:
            raise Malformed("speed must be between 0.25 and 4.0.", provider=PROVIDER)
        speaker_id = job.get("speaker_id")
        if speaker_id is not None and not 0 <= int(speaker_id) < max(1, int(self.config.num_speakers)):
            raise Malformed(f"This voice has no speaker {speaker_id}.", provider=PROVIDER)
        # speed maps to piper's length scale; noise scales stay the voice's own defaults.
        return SynthesisConfig(
            speaker_id=None if speaker_id is None else int(speaker_id),
            length_scale=float(self.config.length_scale) / speed,
        )

    def _sentences_audio(self, text: str, syn_config: Any, ctx: JobContext) -> Iterator[Any]:
        """int16 audio per sentence, in order. `ctx.check()` between model calls stops a cancelled job."""
        import numpy as np

        for piece in split_sentences(text):
            ctx.check()
            for sentence_phonemes in self.voice.phonemize(piece):
                parts = []
                for phonemes in _cap_phonemes(sentence_phonemes):
                    ctx.check()
                    ids = self.voice.phonemes_to_ids(phonemes)
                    if len(ids) > 3:  # more than the start, pad and end markers
                        parts.append(np.asarray(self.voice.phoneme_ids_to_audio(ids, syn_config), dtype=np.float32))
                if parts:
                    yield _to_int16(np.concatenate(parts))


def _to_int16(audio: Any) -> Any:
    """Peak-normalise a sentence and convert it, as piper's own `synthesize` does."""
    import numpy as np

    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    audio = np.zeros_like(audio) if peak < 1e-8 else audio / peak
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
