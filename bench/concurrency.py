"""Concurrency benchmark: N clients at once on one model, as a video editor's render would send them.

    .venv/bin/python bench/concurrency.py [--n 8] [--skip-peer]

N threads each send one request at the same moment with the official OpenAI
SDK at its default settings (2 retries), against one model: chat on the starter
`smollm2-135m-instruct`, speech on the starter voice. Before that, the same N
requests go one at a time, and their summed time is the floor a single-slot
model can reach. For chat, `python -m llama_cpp.server` on the same GGUF file
runs the same two rounds (install its extras with `pip install -r bench/requirements.txt`).

Targets: N/N answered, and the concurrent wall time at most 1.15 x the sum of
the single-request times of the same run (queueing costs little; nothing is
refused and nothing retried).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import DEFAULT_DATA, ServerProcess, free_port  # noqa: E402

CHAT_MODEL = "smollm2-135m-instruct"
TARGET_RATIO = 1.15
PROMPTS = [f"Give one short tip number {i} for editing a travel video." for i in range(64)]
SPEECH = "The render is finished. Your video is ready to share, and the subtitles match every scene."


def chat_call(client: Any, model: str, i: int) -> None:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPTS[i]}], max_tokens=48, temperature=0, seed=1
    )


def speech_call(client: Any, model: str, i: int) -> None:
    client.audio.speech.create(model=model, voice="alloy", input=SPEECH, response_format="wav").read()


def rounds(base_url: str, model: str, call: Callable[[Any, str, int], None], n: int) -> dict[str, float]:
    """N single requests one after another, then N at once; each client with the SDK's defaults."""
    import openai

    def client() -> Any:
        return openai.OpenAI(base_url=base_url, api_key="not-needed", timeout=300)

    call(client(), model, 0)  # load and warm the model: load time is not what is measured
    singles = []
    for i in range(n):
        started = time.perf_counter()
        call(client(), model, i)
        singles.append(time.perf_counter() - started)

    def one(i: int) -> bool:
        try:
            call(client(), model, i)
            return True
        except openai.APIError as exc:
            print(f"  request {i} failed: {exc}", file=sys.stderr)
            return False

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        answered = sum(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    return {"answered": answered, "wall": wall, "single_sum": sum(singles)}


def start_peer(gguf: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    threads = str(int(os.environ.get("AISTACK_LLM_THREADS") or 0) or _cores())
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port), "--n_ctx", "2048",
         "--n_threads", threads, "--model_alias", CHAT_MODEL],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                return proc, url + "/v1"
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start (pip install -r bench/requirements.txt)")


def _cores() -> int:
    from models.engines.llama.engine import physical_cores

    return physical_cores()


def row(name: str, result: dict[str, float], n: int) -> bool:
    ratio = result["wall"] / result["single_sum"]
    ok = result["answered"] == n and ratio <= TARGET_RATIO
    print(f"{name:34} {int(result['answered']):>3}/{n:<3} {result['single_sum']:9.2f} {result['wall']:9.2f} "
          f"{ratio:7.2f}  {'ok' if ok else 'MISSED'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("AISTACK_TEST_DATA_DIR") or DEFAULT_DATA))
    parser.add_argument("--skip-peer", action="store_true", help="do not run python -m llama_cpp.server")
    args = parser.parse_args()

    from models.store.model_store import ModelStore
    from models.store.starter import install_starter

    store = ModelStore(args.data_dir / "models")
    install_starter(store, report=lambda _line: None)
    results: list[tuple[str, dict[str, float]]] = []
    server = ServerProcess(args.data_dir)
    try:
        base = server.url + "/v1"
        results.append((f"aistack chat ({CHAT_MODEL})", rounds(base, CHAT_MODEL, chat_call, args.n)))
        results.append(("aistack speech (tts-1, alloy)", rounds(base, "tts-1", speech_call, args.n)))
    finally:
        server.stop()
    if not args.skip_peer:
        model = store.get(CHAT_MODEL)
        assert model is not None
        peer, url = start_peer(next(model.path.glob("*.gguf")))
        try:
            results.append((f"llama_cpp.server chat ({CHAT_MODEL})", rounds(url, CHAT_MODEL, chat_call, args.n)))
        finally:
            peer.kill()
            peer.wait(10)
    print(f"\n{args.n} concurrent clients, OpenAI SDK defaults; times in seconds")
    print(f"{'':34} {'answered':>7} {'sum of 1':>9} {'wall':>9} {'ratio':>7}  (target <= {TARGET_RATIO})")
    ok = [row(name, result, args.n) for name, result in results]
    return 0 if all(ok[:2]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
