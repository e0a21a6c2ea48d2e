"""Parallel chat benchmark (issue 28, "Chat at the speed of llama-server"): throughput with 1 to 8 clients at once.

    .venv/bin/python bench/parallel.py [--clients 1,2,4,8] [--rounds 1] [--max-tokens 200] [--parallel 4]
        [--systems raw,aistack,llama-server] [--overload] [--json FILE] [--no-build]

For each client count, that many clients each send one streamed chat request
for a long story at the same moment; every answer runs exactly `--max-tokens`
tokens (the end-of-generation tokens are banned: `logit_bias` -100 on each, and
llama-server's `ignore_eos` too). Each client's prompt differs from the start
(about 40 tokens with the chat template), so no prefix cache helps. Sampling is
the same everywhere: temperature 0.7, top_k 40, top_p 0.95, min_p 0.05, no
repeat penalty, a seed per client. Three systems run the same GGUF (the starter
`smollm2-135m-instruct`), one after another so they never share the CPU, all
with the physical core count as threads:

- `raw`: llama-cpp-python in this process, `Llama(n_ctx=4096)`,
  `create_chat_completion(stream=True)`, serving the clients one after another,
- `aistack`: the aistack server with `AISTACK_LLM_PARALLEL=--parallel`,
- `llama-server`: llama.cpp's own server, built from the same llama.cpp source by
  `bench/build_llama_server.sh` (about 10 minutes on 2 cores, kept in
  ~/.cache/aistack-bench; `--no-build` skips this system when it is missing),
  started with `--parallel N -c N x 4096`: the same 4096 tokens per sequence.

The servers are measured from HTTP clients (one thread each) reading the SSE
stream, each server warmed by one untimed request first. Per client count and
system the table shows:

- agg tok/s: completion tokens of all clients / wall time from the common start
  to the last token of the last client (raw: the clients' summed time),
- TTFT ms: the median, across clients, of the time from the common start to the
  client's first token (raw: client k also waits for the k-1 before it),
- decode tok/s: the median, across clients, of one stream's speed (tokens after
  the first / time between its first and last token),
- tokens: mean completion tokens per answered client (from `usage`, else the
  server's `timings`, else one per streamed chunk; raw: one per sampled token),
- answered / refused / failed: a 503 is refused, any other error failed.

With `--rounds R` the whole sweep runs R times (each system started afresh) and
each cell lists the rounds' numbers, "59 / 69"; the checks use their medians.
Under the table come issue 28's acceptance checks: aistack's gain (aggregate at
4 and 8 clients / at 1) at least 0.9 x llama-server's, aistack's TTFT at 4
clients at most 2 x llama-server's + 50 ms, and at one client aistack's decode
speed at least 0.95 x raw's (and compared with llama-server's).
`--overload` then starts aistack once more and sends 8, then 16 clients at once
(the default queue: `AISTACK_QUEUE_MAX` 16, no wait limit): how many are
answered and how many refused. `--json FILE` writes every number. The exit
status is 1 when a check or a request fails. Ctrl-C or SIGTERM (`timeout`) stops
the servers and still reports what was measured (exit 1). Timings on a shared
machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import DEFAULT_DATA, ServerProcess, free_port  # noqa: E402

MODEL_ID = "smollm2-135m-instruct"
CONTEXT = 4096  # tokens per sequence, in every system
SYSTEMS = ("raw", "aistack", "llama-server")
SAMPLING: dict[str, float] = {"temperature": 0.7, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}
BAN = -100.0  # logit bias on each end-of-generation token: the answer always runs max_tokens
TOPICS = [
    "a lighthouse keeper who learns to paint the sea",
    "a robot that opens a bakery in a small mountain town",
    "two sisters who sail around the world in an old boat",
    "a dragon who is afraid of the dark",
    "a detective cat who solves crimes in a busy market",
    "a girl who finds a door to a hidden garden under the city",
    "an old clockmaker whose clocks start to tell the future",
    "a young astronaut stranded on a quiet moon",
    "a village that wakes up one morning with no colours",
    "a boy who trains a wild horse for a desert race",
    "a library where the books rewrite themselves at night",
    "a chef who cooks only with ingredients from dreams",
    "a family of foxes who move into an abandoned train station",
    "a musician who can play the sound of the weather",
    "a shy giant who builds bridges for travellers",
    "a postwoman who delivers letters to the past",
]
OVERLOAD_CLIENTS = (8, 16)
SERVER_VERSION_RE = re.compile(r"^VERSION=(\S+)", re.MULTILINE)
STOP = threading.Event()  # set on an interrupt: the client threads close their streams


# Requests -----------------------------------------------------------------------------
def messages(tag: str, k: int) -> list[dict[str, str]]:
    """Client k's conversation; `tag` starts the prompt, so two requests share at most the template's first tokens."""
    system = f"{tag}. You are a storyteller. You write long stories with many scenes and vivid details."
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Write a long story about {TOPICS[k % len(TOPICS)]}."}]


@dataclass
class Request:
    messages: list[dict[str, str]]
    seed: int


def requests_for(tag: str, clients: int) -> list[Request]:
    return [Request(messages(f"{tag}.{k + 1}", k), seed=k + 1) for k in range(clients)]


# Measurements -------------------------------------------------------------------------
@dataclass
class Stream:
    """One client's request; times are seconds after the common start."""

    status: str = "answered"  # answered | refused (503) | failed
    tokens: int = 0
    first: float | None = None
    last: float | None = None
    error: str = ""

    @property
    def decode(self) -> float | None:
        if self.first is None or self.last is None or self.tokens < 2 or self.last <= self.first:
            return None
        return (self.tokens - 1) / (self.last - self.first)


@dataclass
class Run:
    system: str
    clients: int
    round: int
    streams: list[Stream] = field(default_factory=list)

    def answered(self) -> list[Stream]:
        return [s for s in self.streams if s.status == "answered"]

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.streams)

    @property
    def wall(self) -> float:
        return max((s.last for s in self.answered() if s.last is not None), default=0.0)

    @property
    def aggregate(self) -> float:
        return sum(s.tokens for s in self.answered()) / self.wall if self.wall > 0 else 0.0

    @property
    def ttft(self) -> float | None:
        firsts = [s.first for s in self.answered() if s.first is not None]
        return statistics.median(firsts) if firsts else None

    @property
    def decode(self) -> float | None:
        speeds = [d for s in self.answered() if (d := s.decode) is not None]
        return statistics.median(speeds) if speeds else None

    @property
    def mean_tokens(self) -> float:
        answered = self.answered()
        return sum(s.tokens for s in answered) / len(answered) if answered else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "system": self.system, "clients": self.clients, "round": self.round, "aggregate_tok_s": self.aggregate,
            "ttft_median_s": self.ttft, "decode_median_tok_s": self.decode, "mean_completion_tokens": self.mean_tokens,
            "wall_s": self.wall, "answered": self.count("answered"), "refused": self.count("refused"),
            "failed": self.count("failed"), "streams": [asdict(s) for s in self.streams],
        }


# Raw llama-cpp-python ---------------------------------------------------------------
class BanAndCount:
    """A logits processor: bans the end-of-generation tokens in place (no copy of the logits) and counts the tokens sampled."""

    def __init__(self, token_ids: list[int]):
        import numpy as np

        self.ids = np.array(token_ids, dtype=np.intc)
        self.calls = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.calls += 1
        scores[self.ids] += BAN
        return scores


def run_raw(model_file: Path, threads: int, eog: list[int], plan: list[tuple[int, list[Request]]], round_: int,
            max_tokens: int, out: list[Run]) -> None:
    """Each client count's requests one after another in this process (no server, no batching); runs go to `out`."""
    from llama_cpp import Llama, LogitsProcessorList

    llm = Llama(str(model_file), n_ctx=CONTEXT, n_threads=threads, n_threads_batch=threads, verbose=False)
    try:
        llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=8)  # warm up, untimed

        def one(request: Request, start: float) -> Stream:
            counter = BanAndCount(eog)
            chunks = llm.create_chat_completion(
                request.messages, max_tokens=max_tokens, stream=True, seed=request.seed,  # type: ignore[arg-type]
                logits_processor=LogitsProcessorList([counter]), **SAMPLING,  # type: ignore[arg-type]
            )
            stream = Stream()
            for chunk in chunks:
                if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index,union-attr]
                    stream.last = time.perf_counter() - start
                    stream.first = stream.first if stream.first is not None else stream.last
            stream.tokens = counter.calls
            return stream

        for clients, requests in plan:
            run = Run("raw", clients, round_)
            start = time.perf_counter()
            run.streams = [one(request, start) for request in requests]
            out.append(run)
            progress(run)
    finally:
        llm.close()


# HTTP clients -------------------------------------------------------------------------
def stream_once(http: httpx.Client, url: str, body: dict[str, Any], start: float) -> Stream:
    """Send one streamed chat request and read its SSE stream to the end."""
    stream = Stream()
    chunks = 0
    counted: int | None = None
    try:
        with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                status = "refused" if response.status_code == 503 else "failed"
                return Stream(status, error=f"{response.status_code}: {response.text[:300]}")
            for line in response.iter_lines():
                if STOP.is_set():
                    return Stream("failed", error="interrupted")
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    break  # stop here: a server may hold the connection open after it
                chunk = json.loads(line[6:])
                if chunk.get("error"):
                    return Stream("failed", error=json.dumps(chunk["error"])[:300])
                counted = _token_count(chunk) or counted
                if any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or []):
                    stream.last = time.perf_counter() - start
                    stream.first = stream.first if stream.first is not None else stream.last
                    chunks += 1
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return Stream("failed", error=f"{type(exc).__name__}: {exc}")
    stream.tokens = counted or chunks  # a chunk may carry several tokens: prefer the server's count
    if stream.first is None:
        return Stream("failed", error="the stream carried no text")
    return stream


def _token_count(chunk: dict[str, Any]) -> int | None:
    usage = chunk.get("usage") or {}
    timings = chunk.get("timings") or {}  # llama-server
    value = usage.get("completion_tokens") or timings.get("predicted_n")
    return int(value) if value else None


def run_clients(url: str, bodies: list[dict[str, Any]]) -> list[Stream]:
    """One thread per client; all are connected-ready before the common start, then send at once."""
    ready = threading.Barrier(len(bodies) + 1)
    go = threading.Event()
    clock: list[float] = []

    def client(body: dict[str, Any]) -> Stream:
        with httpx.Client(timeout=httpx.Timeout(900, connect=30)) as http:
            ready.wait()
            go.wait()
            if STOP.is_set():
                return Stream("failed", error="interrupted")
            return stream_once(http, url, body, clock[0])

    pool = ThreadPoolExecutor(len(bodies))
    futures = [pool.submit(client, body) for body in bodies]
    try:
        ready.wait()
        clock.append(time.perf_counter())
        go.set()
        return [future.result() for future in futures]
    except BaseException:
        STOP.set()  # interrupted: let waiting clients go; the rest end when the server stops
        ready.abort()
        clock.append(time.perf_counter())
        go.set()
        raise
    finally:
        pool.shutdown(wait=False)  # not waiting: a client still reading gives up once its server is gone


def http_body(request: Request, max_tokens: int, eog: list[int], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": MODEL_ID,
        "messages": request.messages,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": request.seed,
        "logit_bias": {str(token): BAN for token in eog},
        **SAMPLING,
        **extra,
    }


def run_server(name: str, url: str, plan: list[tuple[int, list[Request]]], round_: int, max_tokens: int,
               eog: list[int], extra: dict[str, Any], out: list[Run]) -> None:
    """Warm the server up, then each client count's requests at once; runs go to `out` as they finish."""
    with httpx.Client(timeout=600) as http:  # the first request loads the model: untimed
        warm = stream_once(http, url, http_body(Request(messages("Warm-up", 0), 0), 16, eog, extra), 0)
    if warm.status != "answered":
        raise RuntimeError(f"{name} did not answer the warm-up request: {warm.error}")
    for clients, requests in plan:
        run = Run(name, clients, round_, run_clients(url, [http_body(r, max_tokens, eog, extra) for r in requests]))
        out.append(run)
        progress(run)


# Servers ------------------------------------------------------------------------------
@contextmanager
def aistack(data_dir: Path, parallel: int) -> Iterator[str]:
    server = ServerProcess(data_dir, env={"AISTACK_LLM_PARALLEL": str(parallel)})
    try:
        yield server.url
    finally:
        server.stop()


def aistack_slots(url: str) -> object:
    """The slot count the loaded model reports, where the admin API shows one (best effort, for the header)."""
    try:
        rows = httpx.get(url + "/admin/api/models", timeout=10).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    row = next((r for r in rows if r.get("id") == MODEL_ID), None)
    return _find_key(row, "slots")


def _find_key(value: object, key: str) -> object:
    if isinstance(value, dict):
        if key in value:
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            if (found := _find_key(item, key)) is not None:
                return found
    return None


def llama_server_binary(explicit: Path | None, no_build: bool) -> tuple[Path | None, str]:
    """llama-server's binary and "", or None and why this system is skipped."""
    if explicit is not None:
        return (explicit, "") if explicit.is_file() else (None, f"{explicit} does not exist")
    script = ROOT / "bench" / "build_llama_server.sh"
    version = SERVER_VERSION_RE.search(script.read_text())
    cache = Path.home() / ".cache" / "aistack-bench"
    binary = cache / f"llama-server-{version.group(1) if version else '?'}" / "bin" / "llama-server"
    if binary.is_file():
        return binary, ""
    if no_build:
        return None, f"no {binary} and --no-build: run bench/build_llama_server.sh (about 10 minutes on 2 cores)"
    building = [d for d in cache.glob("build-*") if time.time() - d.stat().st_mtime < 600]
    if building:  # the script would delete that build's folder and start over
        return None, f"a build is under way in {building[0]}: run again when {binary} exists"
    print("building llama-server with bench/build_llama_server.sh (about 10 minutes on 2 cores) ...", flush=True)
    done = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    path = Path(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else None
    if path is None or not path.is_file():
        return None, f"bench/build_llama_server.sh failed (exit {done.returncode})"
    return path, ""


@contextmanager
def llama_server(binary: Path, model_file: Path, parallel: int, threads: int) -> Iterator[str]:
    port = free_port()
    cmd = [str(binary), "-m", str(model_file), "--parallel", str(parallel), "-c", str(parallel * CONTEXT),
           "-t", str(threads), "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    # Its log goes to a file: llama.cpp's load log would fill a pipe and stall it.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            if not _wait_healthy(proc, url + "/health"):
                log.seek(0)
                raise RuntimeError(f"llama-server did not start:\n{log.read().decode(errors='replace')[-1500:]}")
            yield url
        finally:
            stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server; kill it if it is still there after 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:  # 503 while the model loads
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# Model --------------------------------------------------------------------------------
def model_file_of(data_dir: Path) -> Path:
    """The starter GGUF under the data dir, installed first if it is not there yet (as bench/llm.py finds it)."""
    from models.store.model_store import ModelStore
    from models.store.starter import install_starter

    store = ModelStore(data_dir / "models")
    install_starter(store, report=lambda _line: None)
    model = store.get(MODEL_ID)
    assert model is not None
    return Path(model.file(model.manifest["files"][0]["name"]))


def end_tokens(model_file: Path) -> tuple[list[int], int]:
    """The model's end-of-generation token ids (SmolLM2: <|endoftext|>, <|im_end|>, <reponame>), and a prompt's length."""
    import llama_cpp
    from llama_cpp import Llama
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):  # llama.cpp warns about the context a vocab-only model never uses
        vocab_only = Llama(str(model_file), vocab_only=True, verbose=False)
    try:
        vocab = vocab_only._model.vocab
        eog = [t for t in range(vocab_only.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        sample = messages("Tale 1.8.8", 7)
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in sample) + "<|im_start|>assistant\n"
        return eog, len(vocab_only.tokenize(text.encode(), add_bos=False, special=True))
    finally:
        vocab_only.close()


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


# Report -------------------------------------------------------------------------------
def progress(run: Run) -> None:
    ttft = f"{run.ttft * 1000:.0f} ms" if run.ttft is not None else "-"
    print(f"  round {run.round + 1} {run.system:<13}{run.clients:>3} clients: {run.aggregate:7.1f} tok/s, TTFT {ttft}, "
          f"{run.count('answered')} answered, {run.count('refused')} refused, {run.count('failed')} failed", flush=True)
    for stream in run.streams:
        if stream.error:
            print(f"    {stream.status}: {stream.error}", flush=True)


def _cell(values: Iterable[float | None], scale: float = 1.0, digits: int = 0) -> str:
    return " / ".join("-" if v is None else f"{v * scale:.{digits}f}" for v in values)


COLUMNS = ("agg tok/s", "TTFT ms", "decode tok/s", "tokens", "answered", "refused", "failed")


def table(runs: list[Run]) -> None:
    """One row per client count and system; a cell lists each round's number."""
    order = {system: i for i, system in enumerate(SYSTEMS)}
    keys = sorted({(r.clients, order.get(r.system, len(SYSTEMS)), r.system) for r in runs})
    rows: list[tuple[int, str, list[str]]] = []
    for clients, _, system in keys:
        rs = sorted((r for r in runs if r.system == system and r.clients == clients), key=lambda r: r.round)
        cells = [
            _cell([r.aggregate for r in rs], digits=1),
            _cell([r.ttft for r in rs], 1000),
            _cell([r.decode for r in rs], digits=1),
            _cell([r.mean_tokens for r in rs], digits=1),
            _cell([r.count("answered") for r in rs]),
            _cell([r.count("refused") for r in rs]),
            _cell([r.count("failed") for r in rs]),
        ]
        rows.append((clients, system, cells))
    widths = [max([len(name), *(len(cells[i]) for _, _, cells in rows)]) + 3 for i, name in enumerate(COLUMNS)]
    header = f"{'clients':>7}  {'system':<13}" + "".join(f"{name:>{width}}" for name, width in zip(COLUMNS, widths, strict=True))
    print("\n" + header + "\n" + "-" * len(header))
    for clients, system, cells in rows:
        print(f"{clients:>7}  {system:<13}" + "".join(f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True)))


def median_of(runs: list[Run], system: str, clients: int, metric: Callable[[Run], float | None]) -> float | None:
    values = [v for r in runs if r.system == system and r.clients == clients and (v := metric(r)) is not None]
    return statistics.median(values) if values else None


def checks(runs: list[Run]) -> list[dict[str, Any]]:
    """Issue 28's acceptance ratios, from the medians over rounds; a check without its numbers is n/a."""

    def agg(system: str, clients: int) -> float | None:
        return median_of(runs, system, clients, lambda r: r.aggregate or None)

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    out: list[dict[str, Any]] = []

    def add(text: str, value: float | None, ok: bool | None, shown: str | None = None) -> None:
        if shown is None:
            shown = "n/a" if value is None else f"{value:.3f}"
        out.append({"check": text, "value": value, "shown": shown, "pass": ok})

    gains: dict[tuple[str, int], float | None] = {}
    for system in ("aistack", "llama-server"):
        for n in (4, 8):
            gains[system, n] = gain = ratio(agg(system, n), agg(system, 1))
            add(f"{system} gain at {n} clients (aggregate at {n} / at 1)", gain, None)
    for n in (4, 8):
        value = ratio(gains["aistack", n], gains["llama-server", n])
        add(f"aistack gain / llama-server gain at {n} clients (>= 0.9)", value, None if value is None else value >= 0.9)
    ours = median_of(runs, "aistack", 4, lambda r: r.ttft)
    peer = median_of(runs, "llama-server", 4, lambda r: r.ttft)
    bound = None if peer is None else 2 * peer + 0.05
    both = ours is not None and bound is not None
    add("aistack TTFT at 4 clients <= 2 x llama-server's + 50 ms (seconds)", ours if both else None,
        ours <= bound if ours is not None and bound is not None else None,
        f"{ours * 1000:.0f} ms vs {bound * 1000:.0f} ms" if ours is not None and bound is not None else "n/a")
    decode = {s: median_of(runs, s, 1, lambda r: r.decode) for s in SYSTEMS}
    value = ratio(decode["aistack"], decode["raw"])
    add("aistack / raw decode at 1 client (>= 0.95)", value, None if value is None else value >= 0.95)
    add("aistack / llama-server decode at 1 client", ratio(decode["aistack"], decode["llama-server"]), None)
    add("aistack / llama-server aggregate at 1 client", ratio(agg("aistack", 1), agg("llama-server", 1)), None)
    return out


def print_checks(results: list[dict[str, Any]]) -> None:
    print()
    for c in results:
        mark = {True: "PASS", False: "FAIL", None: "    "}[c["pass"]]
        print(f"{mark}  {c['check'].removesuffix(' (seconds)')}: {c['shown']}")


def print_tokens(runs: list[Run], max_tokens: int) -> None:
    parts = []
    for system in SYSTEMS:
        answered = [s for r in runs if r.system == system for s in r.answered()]
        if answered:
            parts.append(f"{system} {sum(s.tokens for s in answered) / len(answered):.1f}")
    short = sorted({r.system for r in runs for s in r.answered() if s.tokens != max_tokens})
    print(f"\nmean completion tokens: {', '.join(parts)} (asked for {max_tokens})"
          + (f"; NOT all {max_tokens} in: {', '.join(short)}" if short else ""))


def print_overload(runs: list[Run], parallel: int) -> None:
    defaults = {"AISTACK_QUEUE_MAX": "16", "AISTACK_QUEUE_WAIT_SEC": "0 (waits while the client does)"}
    queue = ", ".join(f"{name} {os.environ.get(name, default)}" for name, default in defaults.items())
    print(f"\noverload: aistack, AISTACK_LLM_PARALLEL={parallel}, queue: {queue}")
    for run in runs:
        firsts = [s.first for s in run.answered() if s.first is not None]
        slowest = f", slowest TTFT {max(firsts) * 1000:.0f} ms" if firsts else ""
        print(f"  {run.clients:>2} clients: {run.count('answered')} answered, {run.count('refused')} refused, "
              f"{run.count('failed')} failed; {run.aggregate:.1f} tok/s{slowest}")


# Main ---------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", default="1,2,4,8", help="client counts, comma-separated (default 1,2,4,8)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole sweep this many times")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=4, help="sequences decoded at once: AISTACK_LLM_PARALLEL, llama-server --parallel")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--overload", action="store_true", help="then 8 and 16 clients at once against aistack")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    parser.add_argument("--no-build", action="store_true", help="skip llama-server when its binary is missing")
    parser.add_argument("--llama-server", type=Path, help="this llama-server binary instead of the built one")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("AISTACK_TEST_DATA_DIR") or DEFAULT_DATA))
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if unknown := [s for s in systems if s not in SYSTEMS]:
        parser.error(f"unknown system {unknown[0]!r}; choose from {', '.join(SYSTEMS)}")
    if any(c < 1 for c in counts) or args.rounds < 1 or args.max_tokens < 2 or args.parallel < 1:
        parser.error("--clients, --rounds and --parallel must be at least 1, --max-tokens at least 2")

    model_file = model_file_of(args.data_dir)
    threads = physical_cores()
    if (load := os.getloadavg()[0]) > 0.5 * threads:
        print(f"warning: load average {load:.1f} on {threads} cores: something else is running, the numbers will be noisy")
    eog, prompt_tokens = end_tokens(model_file)
    skipped: dict[str, str] = {}
    binary: Path | None = None
    if "llama-server" in systems:
        binary, why = llama_server_binary(args.llama_server, args.no_build)
        if binary is None:
            skipped["llama-server"] = why
            systems.remove("llama-server")
            print(f"skipping llama-server: {why}")
    print(f"model {model_file.name}, {CONTEXT} tokens per sequence, {threads} threads, parallel {args.parallel}, "
          f"{args.max_tokens} tokens per answer (end tokens {eog} banned), prompts of ~{prompt_tokens} tokens, "
          f"temperature {SAMPLING['temperature']}, clients {counts}, {args.rounds} round(s), systems {', '.join(systems)}",
          flush=True)

    runs: list[Run] = []
    overload: list[Run] = []
    interrupted = False
    signal.signal(signal.SIGTERM, _interrupt)  # `timeout` and `kill`: stop the servers, report what was measured
    try:
        for round_ in range(args.rounds):
            # The same prompts for every system; a new tag per round and client count.
            plan = [(n, requests_for(f"Tale {round_ + 1}.{n}", n)) for n in counts]
            for system in systems:
                if system == "raw":
                    run_raw(model_file, threads, eog, plan, round_, args.max_tokens, runs)
                elif system == "aistack":
                    with aistack(args.data_dir, args.parallel) as url:
                        run_server("aistack", url, plan, round_, args.max_tokens, eog, {}, runs)
                        if round_ == 0:
                            print(f"  aistack reports slots: {aistack_slots(url)}")
                else:
                    assert binary is not None
                    with llama_server(binary, model_file, args.parallel, threads) as url:
                        run_server("llama-server", url, plan, round_, args.max_tokens, eog, {"ignore_eos": True}, runs)
        if args.overload:
            with aistack(args.data_dir, args.parallel) as url:
                plan = [(n, requests_for(f"Flood {n}", n)) for n in OVERLOAD_CLIENTS]
                run_server("aistack", url, plan, 0, args.max_tokens, eog, {}, overload)
    except KeyboardInterrupt:
        STOP.set()
        interrupted = True
        print("\ninterrupted: the servers are stopped; what follows is what was measured so far", flush=True)

    table(runs)
    print_tokens(runs, args.max_tokens)
    results = checks(runs)
    print_checks(results)
    if overload:
        print_overload(overload, args.parallel)
    for system, why in skipped.items():
        print(f"\n{system} skipped: {why}")
    if args.json:
        args.json.write_text(json.dumps({
            "config": {"model": model_file.name, "context_per_sequence": CONTEXT, "threads": threads, "parallel": args.parallel,
                       "max_tokens": args.max_tokens, "clients": counts, "rounds": args.rounds, "systems": systems,
                       "sampling": SAMPLING, "banned_tokens": eog, "prompt_tokens": prompt_tokens, "skipped": skipped},
            "runs": [r.summary() for r in runs],
            "checks": results,
            "overload": [r.summary() for r in overload],
        }, indent=2))
        print(f"\nwrote {args.json}")
    failed = [r for r in runs + overload for s in r.streams if s.status == "failed"]
    return 1 if interrupted or failed or any(c["pass"] is False for c in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
