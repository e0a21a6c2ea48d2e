"""Speech made by the tests themselves: the starter piper voice speaks, PyAV encodes.

No audio file comes from outside. Clips are synthesised once per test session
(`functools.cache`) because piper and the encoders are the slow part of the ASR
tests. Noise is switched off in piper so the same text always gives the same
samples, which keeps transcripts (and test outcomes) stable.
"""

from __future__ import annotations

import functools
import io
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

VOICE_ID = "piper-en_US-joe-medium"
SENTENCE_PAUSE_SEC = 0.35

SHORT_TEXT = (
    "Please call Stella and ask her to bring these things with her from the store. "
    "The quick brown fox jumps over the lazy dog."
)

# About a minute of speech: long and short sentences, commas, one question.
LONG_TEXT = (
    "Every morning the little harbour town wakes up before the sun. "
    "Fishermen check their nets, load the boats with ice, and argue about the weather. "
    "The baker opens the shop at six, and the smell of fresh bread drifts down to the water. "
    "Children walk to school along the sea wall, counting the gulls that sit on the railings. "
    "By nine o'clock the market square is full of people buying fruit, cheese and flowers. "
    "An old man sells maps of the coast that he draws by hand in his kitchen every evening. "
    "Tourists stop to take pictures of the lighthouse, which has stood on the rocks for two hundred years. "
    "In the afternoon the wind turns, and the boats come back one by one with their catch. "
    "Have you ever tasted fish that was swimming in the sea only an hour before dinner? "
    "When the light fades, the cafes fill up, and music plays until late at night. "
    "Then the town goes quiet again, and only the waves keep talking to the stones."
)

# container format, audio codec, audio rate (None: keep), channels, video codec (None: audio only)
FORMATS: dict[str, tuple[str, str, int | None, int, str | None]] = {
    "mp3": ("mp3", "libmp3lame", None, 1, None),
    "m4a": ("mp4", "aac", None, 1, None),
    "ogg": ("ogg", "libopus", 48000, 1, None),
    "flac": ("flac", "flac", None, 1, None),
    "wav8k": ("wav", "pcm_s16le", 8000, 1, None),
    "wav48k-stereo": ("wav", "pcm_s16le", 48000, 2, None),
    "mp4-video": ("mp4", "aac", 44100, 2, "libx264"),
    "webm-video": ("webm", "libopus", 48000, 2, "libvpx"),
    "mkv-video": ("matroska", "aac", None, 1, "mpeg4"),
}


def default_models_dir() -> Path:
    import os

    root = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("AISTACK_TEST_DATA_DIR") or root / ".cache" / "test-data") / "models"


@functools.cache
def _voice(models_dir: Path) -> Any:
    from piper import PiperVoice

    folder = models_dir / VOICE_ID
    return PiperVoice.load(folder / "en_US-joe-medium.onnx", config_path=folder / "en_US-joe-medium.onnx.json")


@functools.cache
def speech(text: str, models_dir: Path | None = None) -> tuple[Any, int]:
    """(float32 mono samples, sample rate) of `text`, with a short pause after each sentence."""
    import numpy as np
    from piper.config import SynthesisConfig

    voice = _voice(models_dir or default_models_dir())
    rate = int(voice.config.sample_rate)
    pause = np.zeros(int(SENTENCE_PAUSE_SEC * rate), dtype=np.float32)
    parts: list[Any] = [pause]
    for chunk in voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)):
        parts += [chunk.audio_float_array.astype(np.float32), pause]
    return np.concatenate(parts), rate


def silence(seconds: float, rate: int = 16000) -> tuple[Any, int]:
    import numpy as np

    return np.zeros(int(seconds * rate), dtype=np.float32), rate


def wav_bytes(samples: Any, rate: int) -> bytes:
    """16-bit mono WAV, written with the standard library (the reference the other formats are made from)."""
    import numpy as np

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


@functools.cache
def clip(text: str, fmt: str = "wav") -> bytes:
    """`text` spoken and encoded as `fmt` (a FORMATS key, or "wav")."""
    samples, rate = speech(text)
    return wav_bytes(samples, rate) if fmt == "wav" else encode(samples, rate, fmt)


@functools.cache
def repeated_clip(text: str, times: int, fmt: str = "mp3") -> bytes:
    """`text` spoken `times` over in one file: long work for cancel and busy tests, for one synthesis."""
    import numpy as np

    samples, rate = speech(text)
    return encode(np.tile(samples, times), rate, fmt)


def encode(samples: Any, rate: int, fmt: str) -> bytes:
    """Encode mono float samples with PyAV as FORMATS[fmt] describes (video gets a plain moving picture)."""
    import av
    import numpy as np

    container_format, codec, out_rate, channels, video_codec = FORMATS[fmt]
    out_rate = out_rate or rate
    layout = "stereo" if channels == 2 else "mono"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as out:
        video = None
        if video_codec is not None:
            video = out.add_stream(video_codec, rate=10)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream(codec, rate=out_rate, layout=layout)
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=audio.codec_context.format.name, layout=layout, rate=out_rate)
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(audio.encode(resampled))
        out.mux(audio.encode(None))
        if video is not None:
            _write_video(out, video, len(samples) / rate)
    return buffer.getvalue()


def _write_video(out: Any, stream: Any, seconds: float) -> None:
    import av
    import numpy as np

    for index in range(int(seconds * 10) + 1):
        picture = np.full((48, 64, 3), (index * 7) % 255, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts, frame.time_base = index, Fraction(1, 10)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def video_only_mp4(seconds: float = 2.0) -> bytes:
    """An mp4 with a picture and no sound: a valid media file that has nothing to transcribe."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        _write_video(out, stream, seconds)
    return buffer.getvalue()


def sse_events(response: Any) -> Any:
    """(arrival time, event) for each `data:` line of a streaming httpx response, as it arrives."""
    import json
    import time

    for line in response.iter_lines():
        if line.startswith("data: "):
            yield time.monotonic(), json.loads(line[len("data: ") :])
