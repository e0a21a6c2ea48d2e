"""GPU benchmark on a user's PC: each model through the aistack server, next to its raw engine, with VRAM from NVML.

    python bench/gpu.py whisper-large-v3-turbo llama-3.1-8b-instruct-q4_k_m piper-en_US-joe-medium \
        [--data-dir DIR] [--audio long.wav] [--runs 3] [--out docs/gpu.md]

For each installed model id (any order, any number):
- VRAM used (NVML) before the load, after it, and after the unload (waited for, up to 10 s):
  the unload must give the memory back;
- speech to text: real-time factor of a long clip (`--audio`, else ~2 minutes spoken by the
  first installed voice), server vs raw faster-whisper (same options, float16 on the GPU);
- chat: time to first token and tokens per second of a streamed answer, server vs raw
  llama.cpp (the CUDA build the runner uses, all layers on the GPU);
- text to speech: real-time factor of a paragraph (piper runs on the CPU by design).
The raw engines run in a child process, after the server's runner is unloaded, so each
has the GPU alone. Writes the table into docs/gpu.md between the bench markers.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import statistics
import sys
import time
import wave
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import ServerProcess
from models.hardware.gpu import NvmlProbe

BEGIN, END = "<!-- bench/gpu.py: begin -->", "<!-- bench/gpu.py: end -->"
PROMPT = "Explain in three paragraphs how a refrigerator moves heat out of its inside."
SPEECH = ("A gamer installs the app because of the graphics card already in the computer. "
          "It should use that card for speech and chat, and give it back the moment a game needs it. ") * 10


def vram_used(probe: NvmlProbe) -> int | None:
    return probe.read().memory_used_bytes


def mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f}"


def wait_back(probe: NvmlProbe, before: int | None, timeout: float = 10.0) -> int | None:
    deadline = time.monotonic() + timeout
    used = vram_used(probe)
    while before is not None and used is not None and used > before + (64 << 20) and time.monotonic() < deadline:
        time.sleep(0.2)
        used = vram_used(probe)
    return used


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


# Through the server --------------------------------------------------------------------------
def server_asr(client: httpx.Client, model: str, audio: bytes, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.post("/v1/audio/transcriptions", files={"file": ("clip.wav", audio)}, data={"model": model})
        response.raise_for_status()
        times.append(time.perf_counter() - started)
    return times


def server_chat(client: httpx.Client, model: str, runs: int, max_tokens: int) -> list[tuple[float, float]]:
    """(time to first token, tokens per second after it) per run."""
    out = []
    for _ in range(runs):
        body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0,
                "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}
        started, first, tokens = time.perf_counter(), None, 0
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if first is None and (chunk.get("choices") or [{}])[0].get("delta", {}).get("content"):
                    first = time.perf_counter()
                tokens = (chunk.get("usage") or {}).get("completion_tokens", tokens)
        end = time.perf_counter()
        first = first or end
        out.append((first - started, max(tokens - 1, 1) / max(end - first, 1e-9)))
    return out


def server_tts(client: httpx.Client, model: str, runs: int) -> tuple[list[float], float]:
    times, seconds = [], 0.0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.post("/v1/audio/speech", json={"model": model, "input": SPEECH, "response_format": "wav"})
        response.raise_for_status()
        times.append(time.perf_counter() - started)
        seconds = wav_seconds(response.content)
    return times, seconds


# Raw engines, in a child process ---------------------------------------------------------------
def raw_whisper(model_dir: str, audio_path: str, runs: int) -> list[float]:
    from faster_whisper import WhisperModel

    from models.engines.whisper.engine import transcribe_options

    model = WhisperModel(model_dir, device="cuda", compute_type="float16")
    options = transcribe_options(language=None, task="transcribe", prompt=None, temperature=0.0, long_audio=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        segments, _ = model.transcribe(audio_path, **options)
        list(segments)
        times.append(time.perf_counter() - started)
    return times


def raw_llama(gguf: str, lib: str | None, runs: int, max_tokens: int) -> list[tuple[float, float]]:
    if lib:
        os.environ["LLAMA_CPP_LIB_PATH"] = lib
    from llama_cpp import Llama

    llm = Llama(gguf, n_ctx=4096, n_gpu_layers=-1, verbose=False)
    out = []
    for _ in range(runs):
        llm.reset()
        started, first, tokens = time.perf_counter(), None, 0
        for chunk in llm.create_chat_completion([{"role": "user", "content": PROMPT}], temperature=0,
                                                max_tokens=max_tokens, stream=True):
            if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index,union-attr]
                first = first or time.perf_counter()
                tokens += 1
        end = time.perf_counter()
        first = first or end
        out.append((first - started, max(tokens - 1, 1) / max(end - first, 1e-9)))
    return out


def in_child(function: Any, *args: Any) -> Any:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


# One model ---------------------------------------------------------------------------------------
def bench_model(client: httpx.Client, probe: NvmlProbe, model_id: str, args: argparse.Namespace,
                audio: tuple[bytes, float, str] | None) -> list[list[str]]:
    rows = client.get("/admin/api/models").json()["data"]
    info = next((r for r in rows if r["id"] == model_id and r.get("installed")), None)
    if info is None:
        raise SystemExit(f"{model_id} is not installed: `aistack models install {model_id}` first.")
    before = vram_used(probe)
    client.post(f"/admin/api/models/{model_id}/load").raise_for_status()
    loaded = vram_used(probe)
    status = next(r for r in client.get("/admin/api/status").json()["models"] if r["id"] == model_id)
    where = status["device"] + (f" ({status['device_detail']})" if status.get("device_detail") else "")
    results: list[list[str]] = []
    capability = info["capability"]
    if capability == "asr" and audio is not None:
        data, seconds, _ = audio
        times = server_asr(client, model_id, data, args.runs)
        results.append([model_id, "aistack server", where, f"RTF {statistics.median(times) / seconds:.3f}"])
    elif capability == "llm":
        runs = server_chat(client, model_id, args.runs, args.max_tokens)
        results.append([model_id, "aistack server", where, _chat_cell(runs)])
    elif capability == "tts":
        times, seconds = server_tts(client, model_id, args.runs)
        results.append([model_id, "aistack server", where, f"RTF {statistics.median(times) / seconds:.3f}"])
    client.post(f"/admin/api/models/{model_id}/unload").raise_for_status()
    after = wait_back(probe, before)
    returned = "yes" if before is not None and after is not None and after <= before + (64 << 20) else "no"
    for row in results:
        row += [mib(None if loaded is None or before is None else loaded - before), f"{mib(after)} ({returned})"]
    results += _raw_rows(model_id, capability, info, args, audio)
    return results


def _raw_rows(model_id: str, capability: str, info: dict[str, Any], args: argparse.Namespace,
              audio: tuple[bytes, float, str] | None) -> list[list[str]]:
    folder = args.data_dir / "models" / model_id
    if capability == "asr" and audio is not None:
        times = in_child(raw_whisper, str(folder), audio[2], args.runs)
        return [[model_id, "raw faster-whisper", "cuda (float16)", f"RTF {statistics.median(times) / audio[1]:.3f}", "", ""]]
    if capability == "llm":
        gguf = next(iter(sorted(folder.glob("*.gguf"))), None)
        if gguf is None:
            return []
        from models.hardware.device_choice import InstalledCaps

        lib = InstalledCaps().llama_cuda_lib()
        runs = in_child(raw_llama, str(gguf), str(lib) if lib else None, args.runs, args.max_tokens)
        return [[model_id, "raw llama.cpp", "cuda (all layers)" if lib else "cpu (no CUDA build)", _chat_cell(runs), "", ""]]
    return []


def _chat_cell(runs: list[tuple[float, float]]) -> str:
    ttft = statistics.median(r[0] for r in runs) * 1000
    rate = statistics.median(r[1] for r in runs)
    return f"TTFT {ttft:.0f} ms, {rate:.1f} tok/s"


def speech_clip(client: httpx.Client, args: argparse.Namespace) -> tuple[bytes, float, str] | None:
    """The long clip for speech to text: --audio, else spoken by the first installed voice."""
    path = args.audio
    if path is None:
        voices = [r["id"] for r in client.get("/admin/api/models").json()["data"]
                  if r.get("installed") and r["capability"] == "tts"]
        if not voices:
            return None
        response = client.post("/v1/audio/speech", json={"model": voices[0], "input": SPEECH, "response_format": "wav"})
        response.raise_for_status()
        path = args.data_dir / "bench-gpu-clip.wav"
        path.write_bytes(response.content)
    data = Path(path).read_bytes()
    return data, wav_seconds(data), str(path)


def write_doc(out: Path, gpu: str, rows: list[list[str]]) -> None:
    head = ["model", "run by", "device", "speed", "VRAM loaded (MiB)", "VRAM after unload (MiB, returned)"]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    section = "\n".join([BEGIN, f"Measured by `bench/gpu.py` on {gpu}, {time.strftime('%Y-%m-%d')}:", "", *table, END])
    text = out.read_text() if out.exists() else f"# GPU\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text += "\n" + section + "\n"
    out.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="installed model ids")
    parser.add_argument("--data-dir", type=Path, default=None, help="aistack data dir (default: the app's)")
    parser.add_argument("--audio", type=Path, help="a long clip for speech to text")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "gpu.md")
    args = parser.parse_args()
    if args.data_dir is None:
        from models.core.settings import default_data_dir

        args.data_dir = default_data_dir()
    probe = NvmlProbe()
    reading = probe.read()
    if not reading.available:
        raise SystemExit(f"No GPU to benchmark: {reading.reason}")
    gpu = f"{reading.name} ({mib(reading.memory_total_bytes)} MiB, driver {reading.driver_version}, CUDA {reading.cuda_version})"
    server = ServerProcess(args.data_dir)
    rows: list[list[str]] = []
    try:
        with httpx.Client(base_url=server.url, timeout=600, headers=server.admin_headers) as client:
            audio = speech_clip(client, args)
            for model_id in args.models:
                rows += bench_model(client, probe, model_id, args, audio)
    finally:
        server.stop()
    for row in rows:
        print(" | ".join(row))
    write_doc(args.out, gpu, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
