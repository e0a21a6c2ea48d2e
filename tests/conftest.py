"""Shared fixtures: the real server as a child process, on the real starter models.

- `starter_data_dir`: a data dir with the three starter models installed
  (`AISTACK_TEST_DATA_DIR`, default `.cache/test-data`; installed once, then reused).
- `server`: one aistack server for the whole session on that data dir.
- `http`: an httpx client on `server`; `openai_client`: the official SDK on it.
- `start_server(**env)`: a private server with extra environment (stopped after the test).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bench.harness import DEFAULT_DATA, ROOT, ServerProcess, free_port

__all__ = ["DEFAULT_DATA", "ROOT", "ServerProcess", "free_port"]
collect_ignore = ["windows"]  # the Windows lane's tests: `make test-windows` runs them under Wine

if _WORKER := os.environ.get("PYTEST_XDIST_WORKER"):
    # Each pytest-xdist worker and the servers it starts get their own temp folder, so a check
    # such as "no upload temp file is left" sees only its own server's files.
    _WORKER_TMP = Path(tempfile.gettempdir()) / f"aistack-{os.environ.get('PYTEST_XDIST_TESTRUNUID', '')[:12]}-{_WORKER}"
    _WORKER_TMP.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(_WORKER_TMP)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def pytest_collection_finish(session: pytest.Session) -> None:
    """A frozen test is selected: start the PyInstaller build now, in the background (tests/support/frozen_build.py).

    Not in a pytest-xdist worker: every worker collects every test, and only one runs test_frozen
    (its `app_dir` fixture then builds).
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if any(item.get_closest_marker("frozen") for item in session.items):
        from tests.support import frozen_build

        frozen_build.start()


_RERUNS: list[tuple[str, str]] = []  # (node id, how its first try failed)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.outcome == "rerun":  # type: ignore[comparison-overlap]  # pytest-rerunfailures' own outcome
        _RERUNS.append((report.nodeid, report.longreprtext[-4000:]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A test that passed on its rerun still shows how its first try failed: a flake has a cause to find."""
    for nodeid, text in _RERUNS:
        terminalreporter.write_sep("-", f"first try of {nodeid} (passed when run again)")
        terminalreporter.write_line(text)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.support import frozen_build

    frozen_build.stop()
    if _WORKER:
        shutil.rmtree(_WORKER_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def starter_data_dir() -> Path:
    from models.store.model_store import ModelStore
    from models.store.starter import install_starter

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


@pytest.fixture(scope="session")
def long_transcript(server: ServerProcess) -> dict[str, object]:
    """The long clip (tests.support.speech.LONG_TEXT as mp3, about 53 s) transcribed once as plain verbose_json.

    `{"body": <verbose_json>, "seconds": <time the request took, model already loaded>, "request_id": ...}`:
    tests that only read the transcript, and timing tests that compare against it, share this one run.
    """
    import uuid

    from tests.support.speech import LONG_TEXT, SHORT_TEXT, clip

    url = "/v1/audio/transcriptions"
    request_id = f"asr-long-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=300) as client:
        warm = client.post(url, files={"file": ("clip.mp3", clip(SHORT_TEXT, "mp3"))})  # load time must not count
        assert warm.status_code == 200, warm.text
        started = time.perf_counter()
        response = client.post(url, files={"file": ("long.mp3", clip(LONG_TEXT, "mp3"))},
                               data={"response_format": "verbose_json"}, headers={"X-Request-ID": request_id})
        seconds = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return {"body": response.json(), "seconds": seconds, "request_id": request_id}


@pytest.fixture(scope="session")
def eos(starter_data_dir: Path) -> int:
    """The starter chat model's end-of-turn token (see tests.support.observe.eos_token)."""
    from tests.support.observe import eos_token

    return eos_token(starter_data_dir)
