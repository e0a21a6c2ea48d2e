"""Shared fixtures: the real server as a child process, on the real starter models.

- `starter_data_dir`: a data dir with the three starter models installed
  (`AISTACK_TEST_DATA_DIR`, default `.cache/test-data`; installed once, then reused).
- `server`: one aistack server for the whole session on that data dir.
- `http`: an httpx client on `server`; `openai_client`: the official SDK on it.
- `start_server(**env)`: a private server with extra environment (stopped after the test).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bench.harness import DEFAULT_DATA, ROOT, ServerProcess, free_port

__all__ = ["DEFAULT_DATA", "ROOT", "ServerProcess", "free_port"]


@pytest.fixture(scope="session")
def starter_data_dir() -> Path:
    from models.starter import install_starter
    from models.store import ModelStore

    data_dir = Path(os.environ.get("AISTACK_TEST_DATA_DIR") or DEFAULT_DATA)
    install_starter(ModelStore(data_dir / "models"), report=lambda _line: None)
    return data_dir


@pytest.fixture(scope="session")
def server(starter_data_dir: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(starter_data_dir)
    yield proc
    proc.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


@pytest.fixture
def openai_client(server: ServerProcess):  # type: ignore[no-untyped-def]
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start private servers: `start_server(data_dir=None, **env)`; all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, **env: str) -> ServerProcess:
        proc = ServerProcess(data_dir or tmp_path / "data", env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
