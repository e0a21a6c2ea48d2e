"""One tray app per data dir: an OS lock on `<data dir>/aistack.lock`, plus `GET /health` to find it.

The first instance holds the lock for its whole life and writes its address
into the file. A second one cannot take the lock, reads the address, checks
that an aistack answers there, leaves a "show yourself" request beside the
lock and exits 0; the first sees the request on its next status poll and
opens the dashboard. The OS drops the lock when a process dies, so a crash
never leaves a stale lock behind.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

LOCK_FILE = "aistack.lock"
SHOW_REQUEST_FILE = "show-request"
# Windows locks are mandatory: lock a byte far past the text, so others can still read the address.
_LOCK_OFFSET = 1 << 20


class InstanceLock:
    """The lock a running tray app holds."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fh: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # held open while we hold the lock
        try:
            _lock(fh)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        show_request_path(self.data_dir).unlink(missing_ok=True)  # a request left for a dead instance
        return True

    def publish(self, url: str) -> None:
        """Say where this instance serves (read by a second launch)."""
        assert self._fh is not None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(json.dumps({"pid": os.getpid(), "url": url}))
        self._fh.flush()

    def release(self) -> None:
        if self._fh is not None:
            try:
                self._fh.seek(0)
                self._fh.truncate()
                _unlock(self._fh)
            except OSError:
                pass
            self._fh.close()
            self._fh = None


def running_instance(data_dir: Path) -> dict[str, Any]:
    """What the lock file says about the instance holding it: {"pid", "url"} (empty while it starts)."""
    try:
        text = (data_dir / LOCK_FILE).read_text(encoding="utf-8").strip()
        return dict(json.loads(text)) if text else {}
    except (OSError, ValueError):
        return {}


def is_aistack(url: str, timeout: float = 1.5) -> bool:
    """True when `GET /health` at `url` says it is an aistack."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return bool(json.loads(response.read()).get("app") == "aistack")
    except (OSError, ValueError):
        return False


def wait_for_running(data_dir: Path, timeout: float = 15) -> str | None:
    """The address of the instance holding the lock once it answers, or None if it does not in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = running_instance(data_dir).get("url")
        if url and is_aistack(str(url)):
            return str(url)
        time.sleep(0.25)
    return None


def show_request_path(data_dir: Path) -> Path:
    return data_dir / SHOW_REQUEST_FILE


def ask_to_show(data_dir: Path, timeout: float = 3) -> bool:
    """Ask the running instance to open its dashboard; True when it took the request in time."""
    path = show_request_path(data_dir)
    path.write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not path.exists():
            return True
        time.sleep(0.1)
    path.unlink(missing_ok=True)  # a headless instance never takes it
    return False


def take_show_request(data_dir: Path) -> bool:
    """True (once) when a second launch asked this instance to show itself."""
    try:
        show_request_path(data_dir).unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return False


def _lock(fh: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        fh.seek(_LOCK_OFFSET)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        fh.seek(0)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(fh: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        fh.seek(_LOCK_OFFSET)
        msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
