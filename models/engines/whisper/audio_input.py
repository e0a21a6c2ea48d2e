"""Uploaded audio or video, read with PyAV (FFmpeg) into what Whisper wants: 16 kHz mono float32.

Runs inside the ASR runner process, so the server never imports av. Every way
an upload can be unusable becomes an error the user can act on: `Malformed`
for empty, unreadable, truncated, silent-container or picture-only files, and
`Overflow` for audio longer than the configured limit. Decoding checks the
limit and the job's cancel flag as it goes, because a four-hour file takes a
while even at hundreds of times real time.

Samples go through the same conversion faster-whisper's own `decode_audio`
uses (s16 mono at 16 kHz, then / 32768), so results match the raw library.

An upload is hostile until proven otherwise. FFmpeg picks its demuxer from the
content, and some demuxers follow references (`concat` and `hls` playlists
name other files, `sdp` opens network streams, image sequences read a pattern
of names): a small text file could make the server transcribe another file on
disk. So the demuxer must be one of `MEDIA_DEMUXERS`, real audio and video
containers that read only the bytes given (FFmpeg enforces the list before the
demuxer reads its header), and the only protocol any demuxer may open is the
local file FFmpeg was handed (`protocol_whitelist`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.core.errors import Malformed, Overflow

SAMPLE_RATE = 16000
PROVIDER = "faster-whisper"
_CHECK_EVERY_PACKETS = 200

# Containers of real audio or video, plus single-picture readers (so a photo gets "no audio track").
# `mov` follows external data references only with `enable_drefs`, which is off by default.
MEDIA_DEMUXERS = (
    "wav,w64,mp3,aac,ac3,eac3,dts,truehd,mlp,loas,flac,ogg,mov,matroska,aiff,amr,amrnb,amrwb,avi,asf,xwma,flv,"
    "mpegts,mpeg,caf,wv,ape,au,tta,mpc,mpc8,voc,gsm,dsf,"
    "png_pipe,jpeg_pipe,webp_pipe,bmp_pipe,gif,tiff_pipe"
)
_OPEN_OPTIONS = {"format_whitelist": MEDIA_DEMUXERS, "protocol_whitelist": "file"}
_ALLOWED = frozenset(MEDIA_DEMUXERS.split(","))

# First bytes of common media files: lets "damaged" and "not media at all" say different things.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/M4A/MOV"),
    (0, b"RIFF", "WAV/AVI"),
    (0, b"ID3", "MP3"),
    (0, b"OggS", "Ogg"),
    (0, b"fLaC", "FLAC"),
    (0, b"\x1aE\xdf\xa3", "Matroska/WebM"),
    (0, b"FORM", "AIFF"),
    (0, b"#!AMR", "AMR"),
)


@dataclass
class Audio:
    """Decoded audio: `samples` is a float32 numpy array at 16 kHz."""

    samples: Any
    duration: float
    source_format: str


def load_audio(path: str | Path, *, max_seconds: float, should_stop: Callable[[], None] | None = None) -> Audio:
    """Decode the first audio track of any file FFmpeg reads. Raises `Malformed` / `Overflow`."""
    import av

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise Malformed("The uploaded file is empty (0 bytes). Send an audio or video file.", provider=PROVIDER)
    head = _read_head(path)
    try:
        container = av.open(str(path), metadata_errors="ignore", options=dict(_OPEN_OPTIONS))
    except (av.error.FFmpegError, OSError, EOFError, UnicodeDecodeError):
        raise _unreadable(head) from None
    with container:
        if not _ALLOWED.intersection(str(container.format.name).split(",")):  # FFmpeg checked; this says so here too
            raise _unreadable(head)
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise _no_audio(container, head)
        declared = _declared_seconds(container, stream, head, size)
        _check_limit(declared or _container_seconds(container), max_seconds)
        pcm, errors = _decode_pcm(container, stream, max_seconds, should_stop)
        fmt = str(container.format.name)

    samples = _to_float(pcm)
    duration = len(samples) / SAMPLE_RATE
    if duration == 0:
        if declared:
            raise _truncated(declared, 0.0)
        what = "could not be decoded" if errors else "holds no samples (zero length)"
        raise Malformed(f"The audio track {what}. Send a file with at least some sound in it.", provider=PROVIDER)
    if declared and duration < declared * 0.9 - 0.5:
        raise _truncated(declared, duration)
    return Audio(samples=samples, duration=duration, source_format=fmt)


def _decode_pcm(
    container: Any, stream: Any, max_seconds: float, should_stop: Callable[[], None] | None
) -> tuple[list[Any], int]:
    """int16 chunks at 16 kHz mono, plus how many packets could not be decoded (skipped, as FFmpeg does)."""
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[Any] = []
    total = errors = 0
    try:
        for index, packet in enumerate(container.demux(stream)):
            if should_stop is not None and index % _CHECK_EVERY_PACKETS == 0:
                should_stop()
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                errors += 1
                continue
            for frame in frames:
                frame.pts = None  # timestamps of damaged files confuse the resampler; order is what counts
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    total += len(chunk)
                    chunks.append(chunk)
            if total > limit:
                _check_limit(total / SAMPLE_RATE, max_seconds)
    except (av.error.InvalidDataError, av.error.EOFError, OSError):
        errors += 1  # the container itself breaks off: keep what was read, the length check judges it
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    return chunks, errors


def _to_float(pcm: list[Any]) -> Any:
    """One float32 array in [-1, 1), filled chunk by chunk so four hours of audio peak at 1.5x its size, not 3x."""
    import numpy as np

    samples = np.empty(sum(len(chunk) for chunk in pcm), dtype=np.float32)
    at = 0
    pcm.reverse()
    while pcm:
        chunk = pcm.pop()  # the int16 chunk is freed once copied
        samples[at : at + len(chunk)] = chunk
        at += len(chunk)
    samples *= 1.0 / 32768.0  # exact (a power of two): the same values as faster-whisper's decode_audio
    return samples


def _check_limit(seconds: float | None, max_seconds: float) -> None:
    if seconds is not None and seconds > max_seconds:
        raise Overflow(
            f"The audio is {_clock(seconds)} long; the limit is {_clock(max_seconds)} (AISTACK_MAX_AUDIO_SEC). "
            "Split the file or raise the limit.",
            provider=PROVIDER,
        )


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}" if minutes else f"{seconds:.1f} s"


def _read_head(path: Path, size: int = 8192) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


def _media_kind(head: bytes) -> str | None:
    return next((name for offset, magic, name in _SIGNATURES if head[offset : offset + len(magic)] == magic), None)


def _unreadable(head: bytes) -> Malformed:
    kind = _media_kind(head)
    if kind is not None:
        return Malformed(
            f"The file looks like {kind} but FFmpeg could not read it: it is damaged or truncated"
            f"{' (an MP4 cut short loses its index)' if kind.startswith('MP4') else ''}. Upload the complete file.",
            provider=PROVIDER,
        )
    return Malformed(
        "The file is not audio or video that aistack reads. Send a common format such as "
        "wav, mp3, m4a, mp4, ogg, opus, flac, webm or mkv (playlists and other files that point at files are refused).",
        provider=PROVIDER,
    )


def _no_audio(container: Any, head: bytes) -> Malformed:
    fmt = str(container.format.name)
    if fmt == "gif" or fmt.endswith("_pipe"):
        what = "a still picture"
    else:
        what = "only " + (" and ".join(sorted({str(s.type) for s in container.streams})) or "nothing")
    return Malformed(f"The file has no audio track (it holds {what}). Send a file with sound in it.", provider=PROVIDER)


def _truncated(declared: float, got: float) -> Malformed:
    return Malformed(
        f"The file is truncated: it declares {declared:.1f} s of audio but only {got:.1f} s could be read. "
        "Upload the complete file.",
        provider=PROVIDER,
    )


def _container_seconds(container: Any) -> float | None:
    return container.duration / 1_000_000 if container.duration else None


def _declared_seconds(container: Any, stream: Any, head: bytes, size: int) -> float | None:
    """The length the file promises, only where that promise is reliable enough to call a shorter file truncated.

    FFmpeg clamps a WAV's data size to the file size, so WAV headers are read
    here; an MP3's length is a bitrate guess unless a Xing/Info/VBRI header
    counts its frames; a video container's length may belong to the picture.
    """
    fmt = str(container.format.name)
    if fmt == "wav":
        return _wav_declared_seconds(head, size)
    if "mp3" in fmt.split(","):
        has_frame_count = any(tag in head for tag in (b"Xing", b"Info", b"VBRI"))
        return _container_seconds(container) if has_frame_count else None
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if len(container.streams) == 1:
        return _container_seconds(container)
    return None


def _wav_declared_seconds(head: bytes, size: int) -> float | None:
    """Seconds the RIFF header's data chunk declares, if it declares a real size."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= len(head):
        chunk_id, chunk_size = head[offset : offset + 4], struct.unpack("<I", head[offset + 4 : offset + 8])[0]
        if chunk_id == b"fmt " and offset + 16 <= len(head):
            byte_rate = struct.unpack("<I", head[offset + 16 : offset + 20])[0]
        if chunk_id == b"data":
            if not byte_rate or chunk_size in (0, 0xFFFFFFFF):
                return None  # zero or "unknown" (streamed WAV): nothing promised
            return float(chunk_size) / byte_rate
        offset += 8 + chunk_size + (chunk_size & 1)
    return None
