"""What a test can see of a running server from outside: one model's row, its runner, when bytes arrive.

Tests compare a model's *own* runner (its `runner_pid` in the admin API), never
every child of the server: another model's keep-alive may end its runner in
the middle of a test, and that is not this test's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

STARTER_ASR = "whisper-tiny.en"
STARTER_TTS = "piper-en_US-joe-medium"
STARTER_LLM = "smollm2-135m-instruct"


def model_row(url: str, model_id: str) -> dict[str, Any]:
    """The model's row in GET /admin/api/models (state, loaded, runner_pid, expires_in_sec, ...)."""
    rows = httpx.get(url + "/admin/api/models", timeout=30).json()["data"]
    return dict(next(r for r in rows if r["id"] == model_id))


def runner_pid(url: str, model_id: str) -> int | None:
    pid = model_row(url, model_id).get("runner_pid")
    return int(pid) if pid else None


def is_loaded(url: str, model_id: str) -> bool:
    return bool(model_row(url, model_id).get("loaded"))


def process_alive(pid: int | None) -> bool:
    import psutil

    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def eos_token(data_dir: Path) -> int:
    """The starter chat model's end-of-turn token: banning it with logit_bias makes the model talk until max_tokens."""
    from llama_cpp import Llama

    llm = Llama(str(next((data_dir / "models" / STARTER_LLM).glob("*.gguf"))), vocab_only=True, verbose=False)
    try:
        return int(llm.token_eos())
    finally:
        llm.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@dataclass
class Timed:
    """Pieces of a response with the time each arrived, in seconds from the request."""

    pieces: list[Any] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    ended: float = 0.0

    @property
    def first(self) -> float:
        return self.arrivals[0]


def timed_post(client: httpx.Client, url: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    """A whole (not streamed) answer and how long it took."""
    started = time.perf_counter()
    response = client.post(url, **kwargs)
    return response, time.perf_counter() - started


def timed_stream(client: httpx.Client, url: str, *, lines: bool, **kwargs: Any) -> Timed:
    """Read a streamed answer to its end: raw chunks (`lines=False`) or non-empty lines, each with its arrival."""
    timed = Timed()
    started = time.perf_counter()
    with client.stream("POST", url, **kwargs) as response:
        assert response.status_code == 200, response.read()
        source: Iterator[Any] = response.iter_lines() if lines else response.iter_raw()
        for piece in source:
            if piece:
                timed.pieces.append(piece)
                timed.arrivals.append(time.perf_counter() - started)
    timed.ended = time.perf_counter() - started
    return timed
