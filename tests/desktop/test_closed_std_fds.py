"""A launch with no stdin, stdout or stderr (a windowed start, `<&- >&- 2>&-`) still serves every model.

With fds 0-2 closed, the next files the app opens take those numbers, and the runner
processes inherit the mix-up: before the fix every runner died at load with exit code 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port


def _close_standard_fds() -> None:
    for fd in (0, 1, 2):
        os.close(fd)


def test_a_server_started_with_closed_standard_fds_runs_its_models(starter_data_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(starter_data_dir / "models", data / "models", symlinks=True)
    port = free_port()
    env = {**os.environ, "AISTACK_DATA_DIR": str(data)}
    env.pop("AISTACK_RUNNER_LOG", None)
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            preexec_fn=_close_standard_fds)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        answer = httpx.post(url + "/v1/audio/speech", json={"input": "Hello there."}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.content[:4] == b"RIFF"
        chat = httpx.post(url + "/v1/chat/completions", timeout=120, json={
            "model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        assert chat.status_code == 200, chat.text
    finally:
        proc.terminate()
        proc.wait(30)
