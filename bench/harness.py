"""What the benchmarks and the tests share: the real aistack server as a child process.

It needs only what `make run` installs (httpx, psutil), never pytest, so a user
can run `bench/*.py` after `pip install -r bench/requirements.txt`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / ".cache" / "test-data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`aistack serve` in a child process, started and stopped by the tests."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None,
                 own_process_group: bool = False):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = data_dir / f"server-{self.port}.log"
        full_env = {**os.environ, "AISTACK_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("AISTACK_HOST", None)
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(self.port)],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=own_process_group,
        )
        self.started_in = self._wait_healthy()

    def _wait_healthy(self, timeout: float = 30) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def access_log(self) -> list[dict[str, object]]:
        """Every access-log record written so far (the writer is asynchronous: poll)."""
        records: list[dict[str, object]] = []
        for path in sorted((self.data_dir / "logs").glob("access-*.jsonl")):
            records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return records

    def access_record(self, request_id: str, timeout: float = 5) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.access_log():
                if record.get("request_id") == request_id:
                    return record
            time.sleep(0.05)
        raise AssertionError(f"no access-log record for {request_id}")

    def runner_pids(self) -> list[int]:
        """Child processes of the server (its runners)."""
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
