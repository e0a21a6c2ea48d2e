"""Payload capture (off by default): each request's bodies on disk, to see what a client really sent.

Layout: `<capture dir>/<YYYY-MM-DD>/<request id>/` with `meta.json`,
`request.<ext>` and `response.<ext>`. Secrets in headers (and the login
token in a query) are masked before anything is written. A body over the cap
keeps its first bytes and is marked `truncated` in `meta.json`. Files are
written by a background thread; the sweeper keeps the folder within its age,
then its total size, at start and every 30 minutes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import mimetypes
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import Message, Receive, Scope

from server.background_writer import BackgroundWriter

log = logging.getLogger("aistack.server")

SECRET_HEADERS = frozenset(
    {"authorization", "cookie", "set-cookie", "x-api-key", "proxy-authorization", "x-aistack-admin-token"}
)
SECRET_QUERY = frozenset({"token", "api_key", "key"})
MASK = "***"
SWEEP_EVERY_SEC = 30 * 60
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def masked_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in raw:
        name = key.decode("latin-1").lower()
        text = MASK if name in SECRET_HEADERS else value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


def masked_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, MASK if k.lower() in SECRET_QUERY else v) for k, v in pairs])


def folder_name(request_id: str) -> str:
    """A request id as a folder name on any OS (no ':' on Windows, no '.' or '..')."""
    name = _UNSAFE.sub("_", request_id)
    return f"_{name}" if name.startswith(".") else name


def extension_for(content_type: str | None) -> str:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base == "text/event-stream":
        return ".sse"
    if base.startswith("multipart/"):
        return ".multipart"
    return (mimetypes.guess_extension(base) if base else None) or ".bin"


@dataclass
class Body:
    """One direction's bytes, kept up to the cap; the size counts every byte seen."""

    cap: int
    chunks: list[bytes] = field(default_factory=list)
    kept: int = 0
    size: int = 0

    def add(self, data: bytes) -> None:
        self.size += len(data)
        room = self.cap - self.kept
        if room > 0 and data:
            part = data[:room]
            self.chunks.append(part)
            self.kept += len(part)

    @property
    def truncated(self) -> bool:
        return self.size > self.kept


@dataclass
class Capture:
    """What one request sent and got back, collected as it passes the middleware."""

    request_id: str
    scope: Scope
    started: float
    request: Body
    response: Body
    status: int = 0
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def wrap_receive(self, receive: Receive) -> Receive:
        async def tee() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.request.add(message.get("body", b""))
            return message

        return tee

    def saw(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.response.add(message.get("body", b""))


class PayloadCapture:
    def __init__(self, folder: Path, *, enabled: bool = False, body_cap_bytes: int = 10 * 2**20,
                 max_bytes: int = 5 * 2**30, max_age_sec: float = 7 * 86400):
        self.folder = folder
        self.enabled = enabled
        self.body_cap_bytes = body_cap_bytes
        self.max_bytes = max_bytes
        self.max_age_sec = max_age_sec
        self.writer: BackgroundWriter[tuple[Capture, dict[str, Any]]] = BackgroundWriter(
            "aistack-capture", self._write, max_queue=64  # a full capture can be tens of MB: keep few in memory
        )
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        return self.writer.dropped

    def start(self) -> None:
        self.writer.start()
        if self._sweeper is None:
            self._stop.clear()
            self._sweeper = threading.Thread(target=self._sweep_forever, name="aistack-capture-sweeper", daemon=True)
            self._sweeper.start()

    def close(self) -> None:
        self._stop.set()
        self.writer.close()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
            self._sweeper = None

    def begin(self, scope: Scope, request_id: str) -> Capture | None:
        if not self.enabled:
            return None
        cap = self.body_cap_bytes
        return Capture(request_id, scope, time.time(), Body(cap), Body(cap))

    def finish(self, capture: Capture, status: int, latency_ms: float) -> None:
        self.writer.put((capture, {"status": status, "latency_ms": latency_ms}))

    def _write(self, batch: list[tuple[Capture, dict[str, Any]]]) -> None:
        for capture, outcome in batch:
            try:
                self._write_one(capture, outcome)
            except OSError as exc:
                log.warning("could not write the capture of request %s: %s", capture.request_id, exc)

    def _write_one(self, capture: Capture, outcome: dict[str, Any]) -> None:
        day = dt.datetime.fromtimestamp(capture.started, dt.UTC).strftime("%Y-%m-%d")
        base = self.folder / day / folder_name(capture.request_id)
        target, n = base, 1
        while target.exists():  # a client may reuse its request ids
            n += 1
            target = base.with_name(f"{base.name}-{n}")
        target.mkdir(parents=True)
        scope = capture.scope
        request_headers = masked_headers(list(scope.get("headers", [])))
        response_headers = masked_headers(capture.response_headers)
        meta = {
            "request_id": capture.request_id,
            "ts": dt.datetime.fromtimestamp(capture.started, dt.UTC).isoformat(timespec="milliseconds"),
            "method": scope.get("method"),
            "route": scope.get("path"),
            "query": masked_query(scope.get("query_string", b"").decode("latin-1")),
            "status": outcome["status"],
            "latency_ms": outcome["latency_ms"],
            "request": self._save_body(target, "request", capture.request, request_headers),
            "response": self._save_body(target, "response", capture.response, response_headers),
        }
        (target / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @staticmethod
    def _save_body(folder: Path, stem: str, body: Body, headers: dict[str, str]) -> dict[str, Any]:
        content_type = headers.get("content-type")
        info: dict[str, Any] = {"headers": headers, "content_type": content_type, "bytes": body.size,
                                "captured_bytes": body.kept, "truncated": body.truncated, "file": None}
        if body.size:
            name = stem + extension_for(content_type)
            (folder / name).write_bytes(b"".join(body.chunks))
            info["file"] = name
        return info

    def _sweep_forever(self) -> None:
        while True:
            try:
                sweep(self.folder, max_age_sec=self.max_age_sec, max_bytes=self.max_bytes)
            except OSError as exc:
                log.warning("could not sweep old captures in %s: %s", self.folder, exc)
            if self._stop.wait(SWEEP_EVERY_SEC):
                return


def _size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def sweep(folder: Path, *, max_age_sec: float, max_bytes: int, now: float | None = None) -> dict[str, int]:
    """Remove captures older than `max_age_sec`, then the oldest until the rest fit in `max_bytes`."""
    now = time.time() if now is None else now
    captures = sorted((p.stat().st_mtime, p) for day in folder.glob("*") if day.is_dir() for p in day.iterdir() if p.is_dir())
    removed_by_age = removed_by_size = 0
    kept: list[tuple[float, Path, int]] = []
    for mtime, path in captures:
        if now - mtime > max_age_sec:
            shutil.rmtree(path, ignore_errors=True)
            removed_by_age += 1
        else:
            kept.append((mtime, path, _size_of(path)))
    total = sum(size for _, _, size in kept)
    for _, path, size in kept:  # oldest first
        if total <= max_bytes:
            break
        shutil.rmtree(path, ignore_errors=True)
        total -= size
        removed_by_size += 1
    for day in folder.glob("*"):
        if day.is_dir() and not any(day.iterdir()):
            day.rmdir()
    return {"removed_by_age": removed_by_age, "removed_by_size": removed_by_size, "kept_bytes": total}
