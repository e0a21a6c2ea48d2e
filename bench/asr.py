"""Speech to text: the server against raw faster-whisper, same model, same settings, same clip.

    .venv/bin/python bench/asr.py [--runs 5] [--model whisper-tiny.en]

The clip is the test paragraph spoken by the starter piper voice (about 53 s),
as a 16-bit WAV file. Raw faster-whisper runs in this process on the same
model folder with the server's own `transcribe_options` (beam 5, word
timestamps, VAD for audio over 30 s), reading the same file path, so both
sides decode the file too. The server is `aistack serve` on a free port; its
time is the client's wall time for one request (upload, decode, transcribe,
segmenting, JSON).

Rows:
- raw sequential: `WhisperModel.transcribe` (what a stream=true request runs).
- raw batched: `BatchedInferencePipeline.transcribe` (what a plain request runs for audio over 30 s).
- server: POST, response_format=json (batched) -> compared with raw batched.
- server stream: POST, stream=true, until the done event -> compared with raw sequential;
  time to the first delta is shown beside it.
Runs are interleaved and the median is reported. Target: server within 10% of raw.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import DEFAULT_DATA, ServerProcess  # noqa: E402
from models.engines.whisper.engine import BATCH_SIZE, LONG_AUDIO_SEC, WhisperEngine, transcribe_options  # noqa: E402
from tests.support.speech import LONG_TEXT, clip, speech  # noqa: E402

URL = "/v1/audio/transcriptions"
TARGET_RATIO = 1.10


def raw_runners(model_dir: Path, wav: Path, seconds: float) -> dict[str, Callable[[], str]]:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    device, compute_type = WhisperEngine._pick_device("auto")
    model = WhisperModel(str(model_dir), device=device, compute_type=compute_type)
    batched = BatchedInferencePipeline(model)
    options = transcribe_options(language=None, task="transcribe", prompt=None, temperature=0.0,
                                 long_audio=seconds > LONG_AUDIO_SEC)

    def sequential() -> str:
        segments, _ = model.transcribe(str(wav), **options)
        return "".join(s.text for s in segments)

    def in_batches() -> str:
        segments, _ = batched.transcribe(str(wav), batch_size=BATCH_SIZE[device], **options)
        return "".join(s.text for s in segments)

    print(f"raw faster-whisper on {device} ({compute_type}), batch size {BATCH_SIZE[device]}")
    return {"raw sequential": sequential, "raw batched": in_batches}


def server_runners(client: httpx.Client, data: bytes, model: str) -> tuple[dict[str, Callable[[], str]], list[float]]:
    first_delta: list[float] = []

    def plain() -> str:
        response = client.post(URL, files={"file": ("clip.wav", data)}, data={"model": model})
        response.raise_for_status()
        return str(response.json()["text"])

    def streamed() -> str:
        import json

        started = time.perf_counter()
        seen_first = False
        with client.stream("POST", URL, files={"file": ("clip.wav", data)},
                           data={"model": model, "stream": "true"}) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "transcript.text.delta" and not seen_first:
                    first_delta.append(time.perf_counter() - started)
                    seen_first = True
                if event["type"] == "transcript.text.done":
                    return str(event["text"])
                if event["type"] == "error":
                    raise RuntimeError(event["error"]["message"])
        raise RuntimeError("the stream ended without a done event")

    return {"server": plain, "server stream": streamed}, first_delta


def timed(run: Callable[[], str]) -> tuple[float, str]:
    started = time.perf_counter()
    text = run()
    return time.perf_counter() - started, text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("AISTACK_TEST_DATA_DIR") or DEFAULT_DATA))
    args = parser.parse_args()

    samples, rate = speech(LONG_TEXT)
    seconds = len(samples) / rate
    data = clip(LONG_TEXT)
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "clip.wav"
        wav.write_bytes(data)
        runners = raw_runners(args.data_dir / "models" / args.model, wav, seconds)
        server = ServerProcess(args.data_dir)
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                served, first_delta = server_runners(client, data, args.model)
                runners.update(served)
                times = measure(runners, args.runs)
        finally:
            server.stop()
    report(times, first_delta, seconds, args.model)


def measure(runners: dict[str, Callable[[], str]], runs: int) -> dict[str, list[float]]:
    for run in runners.values():  # warm-up: model load, first-call allocations, the OS file cache
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            times[name].append(timed(run)[0])
    return times


def report(times: dict[str, list[float]], first_delta: list[float], seconds: float, model: str) -> None:
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{model}, {seconds:.1f} s of speech, median of {len(times['server'])} runs each\n")
    print(f"{'path':18} {'median s':>9} {'min s':>7} {'x real time':>12} {'vs raw':>8}")
    pairs: dict[str, Any] = {"server": "raw batched", "server stream": "raw sequential"}
    for name, values in times.items():
        ratio = f"{median[name] / median[pairs[name]]:.3f}" if name in pairs else ""
        print(f"{name:18} {median[name]:9.3f} {min(values):7.3f} {seconds / median[name]:12.1f} {ratio:>8}")
    if first_delta:
        print(f"{'first delta':18} {statistics.median(first_delta):9.3f}")
    gain = median["raw sequential"] / median["raw batched"]
    print(f"\nbatched decoding vs sequential (raw): {gain:.2f}x faster")
    ratio = median["server"] / median["raw batched"]
    print(f"server / raw (single request, same path): {ratio:.3f}, target <= {TARGET_RATIO:.2f}")
    print("PASS" if ratio <= TARGET_RATIO else "FAIL")


if __name__ == "__main__":
    main()
