"""HF_TOKEN goes to Hugging Face and never to its CDN, even when the hub redirects a download there.

The stand-in hub (tests/support/fake_hub.py) answers LFS files with a redirect to its
"CDN", another host name (`localhost` against the hub's `127.0.0.1`), as the
real hub does. Every request is recorded with the host it was sent to and its
Authorization header.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.fake_hub import FakeHub

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

REPO, GGUF = "someone/SmolLM2-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKEN = "hf_test_token_never_for_the_cdn"


class RecordingHub(FakeHub):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str | None]] = []  # (Host header, path, Authorization header)

    def handle(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        self.seen.append((req.headers.get("Host", ""), req.path, req.headers.get("Authorization")))
        super().handle(req, head)


@pytest.fixture
def hub(starter_data_dir: Path) -> Iterator[RecordingHub]:
    fake = RecordingHub()
    fake.add_file(REPO, GGUF, starter_data_dir / "models" / "smollm2-135m-instruct" / GGUF)  # LFS: via the CDN
    yield fake
    fake.close()


def test_hf_token_is_sent_to_the_hub_and_never_to_the_cdn(hub: RecordingHub, tmp_path: Path) -> None:
    env = {**os.environ, "AISTACK_DATA_DIR": str(tmp_path / "data"), "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN,
           "HF_HOME": str(tmp_path / "hf-home")}  # no saved login of the machine's user in the way
    result = subprocess.run([sys.executable, "-m", "app", "models", "add-hf", REPO, GGUF, "--id", "gated-smol"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    hub_port = hub.url.rsplit(":", 1)[1]
    to_hub = [(path, auth) for host, path, auth in hub.seen if host == f"127.0.0.1:{hub_port}"]
    to_cdn = [(path, auth) for host, path, auth in hub.seen if host == f"localhost:{hub_port}"]
    assert to_cdn and any(path.startswith("/repos/") for path, _ in to_cdn)  # the weights did come from the CDN
    assert [auth for _, auth in to_cdn] == [None] * len(to_cdn), to_cdn
    for_the_repo = [(path, auth) for path, auth in to_hub if REPO in path]  # (the hub client may ask other things too)
    assert for_the_repo and all(auth == f"Bearer {TOKEN}" for _, auth in for_the_repo), to_hub
    assert TOKEN not in result.stdout + result.stderr  # nor printed
