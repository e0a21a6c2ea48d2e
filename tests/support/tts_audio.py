"""Reading back what the speech endpoint sent: decode with PyAV, parse SSE."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

VOICE = "piper-en_US-joe-medium"
SENTENCE = "Please call Stella and ask her to bring these things with her from the store."
TEN_SENTENCES = " ".join(
    (
        "The harbour wakes up before the sun.",
        "Fishermen check their nets and load the boats with ice.",
        "The baker opens the shop at six in the morning.",
        "Children walk to school along the old sea wall.",
        "By nine the market square is full of people.",
        "An old man sells maps of the coast that he draws by hand.",
        "Tourists take pictures of the white lighthouse.",
        "In the afternoon the wind turns and the boats come back.",
        "When the light fades, the cafes fill up with music.",
        "Then the town goes quiet, and only the waves keep talking.",
    )
)


def decode(data: bytes, fmt: str, pcm_rate: int = 22050) -> tuple[float, int, float]:
    """(duration in seconds, sample rate, RMS level 0..1) of an encoded answer."""
    import av
    import numpy as np

    if fmt == "pcm":
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
        return len(samples) / pcm_rate, pcm_rate, float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray().astype(np.float32).reshape(-1) for frame in container.decode(stream)]
        rate = int(stream.rate)
        fmt_name = stream.codec_context.format.name if stream.codec_context.format else ""
    samples = np.concatenate(frames) if frames else np.zeros(0, np.float32)
    if fmt_name.startswith("s16"):
        samples = samples / 32768
    elif fmt_name.startswith("s32"):
        samples = samples / 2**31
    return len(samples) / rate, rate, float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def sse_audio(events: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
