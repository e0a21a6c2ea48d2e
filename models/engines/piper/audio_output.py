"""Encoders for synthesised speech: 16-bit mono PCM in, bytes of a response format out.

Used inside the piper runner, so the server only relays bytes. PyAV (imported
lazily: it is heavy) encodes mp3 (libmp3lame), opus (libopus in Ogg), aac (ADTS)
and flac in-process; wav and pcm are the PCM itself, with a RIFF header for wav.

An encoder is fed one sentence at a time. A streaming encoder returns the bytes
that are ready after each sentence, and everything it returns concatenates to
one valid file that a player can start on from the first chunk:

- wav: the header says "size unknown" (0xFFFFFFFF), the convention for live WAV;
- mp3, aac (ADTS): self-framed formats, no seek back needed;
- opus: Ogg pages every 100 ms instead of every second, so a sentence's audio
  leaves the muxer with that sentence;
- flac: the stream header carries no total length.

A non-streaming encoder returns the whole file from `finish`, with exact sizes
and lengths in its headers (mp3 gets its Xing/LAME header, so decoders trim the
encoder's padding).
"""

from __future__ import annotations

import io
import struct
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

FORMATS: tuple[str, ...] = ("wav", "mp3", "opus", "aac", "flac", "pcm")

# format -> (PyAV container, codec, fixed output rate or None for the voice's rate, bit rate)
_AV_FORMATS: dict[str, tuple[str, str, int | None, int | None]] = {
    "mp3": ("mp3", "libmp3lame", None, 64_000),
    "opus": ("ogg", "libopus", 48_000, 32_000),  # Opus only runs at 8/12/16/24/48 kHz; decoders output 48 kHz
    "aac": ("adts", "aac", None, 64_000),
    "flac": ("flac", "flac", None, None),
}
_UNKNOWN_SIZE = 0xFFFFFFFF


class AudioEncoder(Protocol):
    sample_rate: int  # the rate of the encoded audio (48 kHz for opus, else the voice's)

    def add(self, pcm: np.ndarray) -> bytes:
        """Encode one sentence of int16 mono samples; return the bytes ready now (streaming) or b""."""
        ...

    def finish(self) -> bytes:
        """Flush; return the rest of the stream (streaming) or the whole file."""
        ...


def output_rate(fmt: str, voice_rate: int) -> int:
    """The sample rate a client will decode from `fmt`."""
    fixed = _AV_FORMATS.get(fmt, ("", "", None, None))[2]
    return fixed or voice_rate


def open_encoder(fmt: str, voice_rate: int, *, streaming: bool) -> AudioEncoder:
    if fmt == "pcm":
        return PcmEncoder(voice_rate, streaming=streaming)
    if fmt == "wav":
        return WavEncoder(voice_rate, streaming=streaming)
    if fmt in _AV_FORMATS:
        return AvEncoder(fmt, voice_rate, streaming=streaming)
    raise ValueError(f"unknown audio format {fmt!r}")


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte PCM WAV header; `None` writes the 'size unknown' value used for live streams."""
    data = _UNKNOWN_SIZE if data_bytes is None else data_bytes
    riff = _UNKNOWN_SIZE if data_bytes is None else 36 + data_bytes
    fmt_chunk = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", data)


class PcmEncoder:
    """Raw 16-bit little-endian mono: the samples as they are."""

    def __init__(self, sample_rate: int, *, streaming: bool):
        self.sample_rate = sample_rate
        self.streaming = streaming
        self._parts: list[bytes] = []

    def add(self, pcm: np.ndarray) -> bytes:
        data = pcm.astype("<i2", copy=False).tobytes()
        if self.streaming:
            return data
        self._parts.append(data)
        return b""

    def finish(self) -> bytes:
        return b"".join(self._parts)


class WavEncoder(PcmEncoder):
    """PCM behind a RIFF header: exact sizes for a file, 'unknown' sizes for a stream."""

    def __init__(self, sample_rate: int, *, streaming: bool):
        super().__init__(sample_rate, streaming=streaming)
        self._started = False

    def add(self, pcm: np.ndarray) -> bytes:
        data = super().add(pcm)
        if self.streaming and not self._started:
            self._started = True
            return wav_header(self.sample_rate, None) + data
        return data

    def finish(self) -> bytes:
        if self.streaming:
            return b"" if self._started else wav_header(self.sample_rate, None)
        data = super().finish()
        return wav_header(self.sample_rate, len(data)) + data


class _Sink:
    """A write-only file for PyAV. Having no `seek`, it makes FFmpeg write a live stream and flush each packet."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: Any) -> int:
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class AvEncoder:
    """One PyAV output container kept open across sentences."""

    def __init__(self, fmt: str, voice_rate: int, *, streaming: bool):
        import av

        container_format, codec, fixed_rate, bit_rate = _AV_FORMATS[fmt]
        self.voice_rate = voice_rate
        self.sample_rate = fixed_rate or voice_rate
        self.streaming = streaming
        self._file: _Sink | io.BytesIO = _Sink() if streaming else io.BytesIO()
        options = {"page_duration": "100000"} if streaming and container_format == "ogg" else {}
        self._container: Any = av.open(self._file, mode="w", format=container_format, container_options=options)
        stream = self._container.add_stream(codec, rate=self.sample_rate, layout="mono")
        assert isinstance(stream, av.audio.stream.AudioStream)
        if bit_rate:
            stream.bit_rate = bit_rate
        self._stream = stream
        self._pts = 0

    def add(self, pcm: np.ndarray) -> bytes:
        import av

        if len(pcm):
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self.voice_rate
            frame.pts = self._pts  # in 1/voice_rate units: the encoder's resampler keeps time right
            frame.time_base = _fraction(1, self.voice_rate)
            self._pts += len(pcm)
            self._container.mux(self._stream.encode(frame))
        return self._take()

    def finish(self) -> bytes:
        self._container.mux(self._stream.encode(None))
        self._container.close()
        if isinstance(self._file, io.BytesIO):
            return self._file.getvalue()
        return self._file.take()

    def _take(self) -> bytes:
        return self._file.take() if isinstance(self._file, _Sink) else b""


def _fraction(num: int, den: int) -> Any:
    from fractions import Fraction

    return Fraction(num, den)
