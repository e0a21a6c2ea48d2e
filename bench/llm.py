"""Chat benchmark: raw llama-cpp-python, the aistack server, and llama-cpp-python's own server.

    .venv/bin/python bench/llm.py [--runs 3] [--max-tokens 200]

All three run the same GGUF (the starter `smollm2-135m-instruct` unless
`--model-file` says otherwise) with the same context (4096), the same thread
count (physical cores) and greedy sampling, on the same two-turn conversation,
one system at a time so they never share the CPU. For each it prints:

- first-turn time to first token (a ~400-token prompt nothing has cached),
- decode speed (tokens after the first / time between the first and last token),
- second-turn time to first token (the conversation so far plus a new question:
  a server that reuses its cached prefix only reads the new tokens).

Raw is `Llama.create_chat_completion(stream=True)` in this process. The servers
are measured from an HTTP client reading the SSE stream. The peer is
`python -m llama_cpp.server`, which needs packages aistack does not: install
them without touching the rest of the venv with
`.venv/bin/pip install --no-deps -r bench/requirements.txt`.
Timings on a shared machine are noisy: each number is the median of `--runs`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import DEFAULT_DATA, ServerProcess, free_port  # noqa: E402

MODEL_ID = "smollm2-135m-instruct"
CONTEXT = 4096
SYSTEM = "You are a patient storyteller for a video editing app. " + " ".join(
    f"Rule {i}: keep the story kind, concrete and easy to read aloud, with short sentences and vivid detail." for i in range(1, 21)
)
FIRST = "Write a long story about a lighthouse keeper who learns to paint the sea."
SECOND = "Now give the story a title and explain why you chose it."


@dataclass
class Turn:
    ttft: float
    tokens: int
    decode_s: float
    text: str

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.tokens > 1 and self.decode_s > 0 else 0.0


@dataclass
class Result:
    name: str
    ttft: float
    tokens_per_s: float
    second_ttft: float
    text: str


def conversation(run: int, answer: str | None = None) -> list[dict[str, str]]:
    """A fresh system prompt per run (its first words differ), so no run finds the last one cached."""
    messages = [{"role": "system", "content": f"Session {run}. {SYSTEM}"}, {"role": "user", "content": FIRST}]
    if answer is not None:
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": SECOND}]
    return messages


def timed(chunks: Iterator[str]) -> Turn:
    """Consume a stream of text pieces and time it (one piece per token until a server says otherwise)."""
    start = time.perf_counter()
    first = last = None
    pieces: list[str] = []
    for piece in chunks:
        if not piece:
            continue
        last = time.perf_counter()
        first = first or last
        pieces.append(piece)
    if first is None or last is None:
        raise RuntimeError("the stream carried no text")
    return Turn(first - start, len(pieces), last - first, "".join(pieces))


# Systems ------------------------------------------------------------------------------
def run_raw(model_file: Path, runs: int, max_tokens: int, threads: int) -> Result:
    from llama_cpp import Llama

    llm = Llama(str(model_file), n_ctx=CONTEXT, n_threads=threads, n_threads_batch=threads, verbose=False)

    def turn(messages: list[dict[str, str]], limit: int) -> Turn:
        stream = llm.create_chat_completion(messages, temperature=0, max_tokens=limit, stream=True)  # type: ignore[arg-type]
        return timed(c["choices"][0]["delta"].get("content") or "" for c in stream)  # type: ignore[index,union-attr]

    try:
        return measure("raw llama-cpp-python", turn, runs, max_tokens)
    finally:
        llm.close()


def http_turn(url: str, extra: dict[str, object]) -> object:
    """A turn through an OpenAI-compatible server; token counts from `usage` when it sends one."""

    def turn(messages: list[dict[str, str]], limit: int) -> Turn:
        body = {
            "model": MODEL_ID,
            "messages": messages,
            "temperature": 0,
            "max_tokens": limit,
            "stream": True,
            "stream_options": {"include_usage": True},
            **extra,
        }
        usage: dict[str, int] = {}
        with httpx.Client(timeout=300) as client, client.stream("POST", url + "/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            result = timed(_sse_text(r.iter_lines(), usage))
        if usage.get("completion_tokens"):
            result.tokens = usage["completion_tokens"]  # a chunk may carry several tokens
        return result

    return turn


def _sse_text(lines: Iterator[str], usage: dict[str, int]) -> Iterator[str]:
    for line in lines:
        if line == "data: [DONE]":
            return  # stop here: the peer's SSE library may hold the connection open after it
        if not line.startswith("data: "):
            continue
        chunk = json.loads(line[6:])
        usage.update(chunk.get("usage") or {})
        choices = chunk.get("choices") or [{}]
        yield (choices[0].get("delta") or {}).get("content") or ""


def run_aistack(data_dir: Path, runs: int, max_tokens: int) -> Result:
    server = ServerProcess(data_dir)
    try:
        return measure("aistack server", http_turn(server.url, {}), runs, max_tokens)  # type: ignore[arg-type]
    finally:
        server.stop()


def run_peer(model_file: Path, runs: int, max_tokens: int, threads: int) -> Result | None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_file),
        "--model_alias",
        MODEL_ID,
        "--n_ctx",
        str(CONTEXT),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # Its log goes to a file: llama.cpp's verbose load log would fill a pipe and stall it.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        if not _wait_up(proc, url + "/v1/models"):
            log.seek(0)
            error = log.read().decode(errors="replace")[-800:]
            print(f"peer server did not start (install bench/requirements.txt?):\n{error}")
            return None
        # The peer's default repeat_penalty is 1.1; 1.0 matches the other two (and greedy decoding).
        return measure("llama_cpp.server (peer)", http_turn(url, {"repeat_penalty": 1.0}), runs, max_tokens)  # type: ignore[arg-type]
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def _wait_up(proc: subprocess.Popen[bytes], url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.2)
    return False


def measure(name: str, turn, runs: int, max_tokens: int) -> Result:  # type: ignore[no-untyped-def]
    """Warm up once, then `runs` two-turn conversations; medians of each number."""
    turn([{"role": "user", "content": "Say hello."}], 8)
    firsts, seconds = [], []
    for run in range(runs):
        first = turn(conversation(run), max_tokens)
        second = turn(conversation(run, first.text), 16)
        firsts.append(first)
        seconds.append(second)
    return Result(
        name,
        ttft=statistics.median(t.ttft for t in firsts),
        tokens_per_s=statistics.median(t.tokens_per_s for t in firsts),
        second_ttft=statistics.median(t.ttft for t in seconds),
        text=firsts[0].text,
    )


# Report -------------------------------------------------------------------------------
def report(results: list[Result]) -> bool:
    print(f"\n{'system':<26}{'TTFT ms':>10}{'decode tok/s':>15}{'2nd-turn TTFT ms':>19}")
    for r in results:
        print(f"{r.name:<26}{r.ttft * 1000:>10.1f}{r.tokens_per_s:>15.1f}{r.second_ttft * 1000:>19.1f}")
    raw, ours = results[0], results[1]
    peer = results[2] if len(results) > 2 else None
    checks = [
        (f"aistack decode / raw = {ours.tokens_per_s / raw.tokens_per_s:.3f} (>= 0.95)", ours.tokens_per_s >= 0.95 * raw.tokens_per_s),
        (f"aistack 2nd-turn TTFT / 1st = {ours.second_ttft / ours.ttft:.3f} (well under 1: < 0.5)", ours.second_ttft < 0.5 * ours.ttft),
    ]
    if peer is not None:
        checks.append(
            (f"aistack decode / peer = {ours.tokens_per_s / peer.tokens_per_s:.3f} (>= 1.0)", ours.tokens_per_s >= peer.tokens_per_s)
        )
    same = all(r.text == raw.text for r in results)
    print(f"\nsame greedy answer from all systems: {same}")
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for _, ok in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("AISTACK_TEST_DATA_DIR") or DEFAULT_DATA))
    parser.add_argument("--no-peer", action="store_true", help="skip llama_cpp.server")
    args = parser.parse_args()

    from models.engines.llama.engine import physical_cores
    from models.store.model_store import ModelStore
    from models.store.starter import install_starter

    store = ModelStore(args.data_dir / "models")
    install_starter(store, report=lambda _line: None)
    model = store.get(MODEL_ID)
    assert model is not None
    model_file = model.file(model.manifest["files"][0]["name"])
    threads = physical_cores()
    print(f"model {model_file.name}, context {CONTEXT}, {threads} threads, greedy, {args.max_tokens} tokens, median of {args.runs} runs")
    results = [run_raw(model_file, args.runs, args.max_tokens, threads), run_aistack(args.data_dir, args.runs, args.max_tokens)]
    if not args.no_peer:
        peer = run_peer(model_file, args.runs, args.max_tokens, threads)
        if peer is not None:
            results.append(peer)
    return 0 if report(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
