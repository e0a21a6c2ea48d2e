"""Speech benchmark: raw piper in this process against the aistack server, on the same paragraph.

    .venv/bin/python bench/tts.py [--runs 5]

Both use the starter voice `piper-en_US-joe-medium` with its own length scale
(speed 1.0) on the same ten-sentence paragraph, one at a time so they never
share the CPU. For each it prints:

- real-time factor: seconds of work per second of audio. Raw is
  `PiperVoice.synthesize` run to the end; the server is a whole-file wav request
  (`POST /v1/audio/speech`), timed from an HTTP client until the last byte.
- time to first audio: raw is the first sentence out of `PiperVoice.synthesize`;
  the server is the first byte of a streamed wav (`"stream": true`).

Targets: server RTF within 10% of raw, server time to first audio within 1.5x
raw's first sentence. Piper's durations vary a little from run to run (its
noise), so RTF divides by each run's own audio length. Timings on a shared
machine are noisy: each number is the median of `--runs`, runs interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import DEFAULT_DATA, ServerProcess  # noqa: E402
from tests.support.tts_audio import TEN_SENTENCES, VOICE  # noqa: E402


def load_raw(data_dir: Path) -> Any:
    from piper import PiperVoice

    folder = data_dir / "models" / VOICE
    return PiperVoice.load(folder / "en_US-joe-medium.onnx", config_path=folder / "en_US-joe-medium.onnx.json")


def raw_run(voice: Any, text: str) -> tuple[float, float, float]:
    """(real-time factor, first sentence seconds, audio seconds) of one raw piper synthesis."""
    from piper import SynthesisConfig

    config = SynthesisConfig(length_scale=voice.config.length_scale)
    started = time.perf_counter()
    first = None
    samples = 0
    for chunk in voice.synthesize(text, config):
        _ = chunk.audio_int16_bytes  # the bytes a caller would write out
        first = first if first is not None else time.perf_counter() - started
        samples += len(chunk.audio_int16_array)
    elapsed = time.perf_counter() - started
    audio = samples / voice.config.sample_rate
    return elapsed / audio, first or elapsed, audio


def server_whole(client: httpx.Client, text: str) -> tuple[float, float]:
    """(real-time factor, audio seconds) of one whole-file wav request."""
    started = time.perf_counter()
    r = client.post("/v1/audio/speech", json={"input": text, "voice": VOICE, "response_format": "wav"})
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    audio = float(r.headers["x-audio-duration"])
    return elapsed / audio, audio


def server_first_audio(client: httpx.Client, text: str) -> float:
    """Seconds to the first byte of a streamed wav."""
    body = {"input": text, "voice": VOICE, "response_format": "wav", "stream": True}
    started = time.perf_counter()
    first = None
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
    assert first is not None
    return first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    voice = load_raw(args.data_dir)
    server = ServerProcess(args.data_dir)
    try:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            raw_run(voice, "Warm up.")
            server_whole(client, "Warm up.")  # loads the voice in its runner
            raw_rtf, raw_first, srv_rtf, srv_first, audio = [], [], [], [], []
            for _ in range(args.runs):
                rtf, first, seconds = raw_run(voice, TEN_SENTENCES)
                raw_rtf.append(rtf)
                raw_first.append(first)
                rtf, seconds = server_whole(client, TEN_SENTENCES)
                srv_rtf.append(rtf)
                audio.append(seconds)
                srv_first.append(server_first_audio(client, TEN_SENTENCES))
    finally:
        server.stop()

    rows = [
        ("real-time factor (wav)", statistics.median(raw_rtf), statistics.median(srv_rtf), 1.10),
        ("time to first audio (s)", statistics.median(raw_first), statistics.median(srv_first), 1.50),
    ]
    print(f"piper voice {VOICE}, {len(TEN_SENTENCES)} characters, ~{statistics.median(audio):.1f} s of audio, "
          f"median of {args.runs} runs")
    print(f"{'':26} {'raw piper':>10} {'server':>10} {'ratio':>7}  target")
    for name, raw, srv, target in rows:
        ratio = srv / raw
        verdict = "ok" if ratio <= target else "MISSED"
        print(f"{name:26} {raw:10.4f} {srv:10.4f} {ratio:7.2f}  <= {target:.2f} {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
