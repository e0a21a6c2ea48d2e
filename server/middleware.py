"""The outermost layer every request passes: request id, Host/Origin guard, body limits, access log, metrics, capture.

Written as plain ASGI (not BaseHTTPMiddleware) so streamed responses pass
through untouched and a client disconnect reaches the route.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.errors import AistackError, Forbidden, Malformed, Overflow
from models.settings import Settings
from server.capture import Capture
from server.errors import unexpected
from server.metrics import Sample, status_class
from server.observability import Observability, category_of

log = logging.getLogger("aistack.server")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9\-_:.]{1,128}$")
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
UPLOAD_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations")


def request_id_from(headers: dict[str, str]) -> str:
    """The client's X-Request-ID when it is 1-128 of [A-Za-z0-9-_:.], else 16 fresh hex digits."""
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID_RE.match(given) else secrets.token_hex(8)


def is_loopback_host(host: str) -> bool:
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, observability: Observability):
        self.app = app
        self.settings = settings
        self.obs = observability
        self.open_host = not is_loopback_host(settings.host)  # bound to the LAN on purpose
        self.allowed_origins = {o.rstrip("/").lower() for o in settings.allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = request_id_from(headers)
        obs: dict[str, Any] = {"model": None, "extra": {}, "slot_wait_ms": None}
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        scope["state"]["obs"] = obs
        started = time.perf_counter()
        status_holder = {"status": 0, "started": False, "busy": False}
        capture = self.obs.capture.begin(scope, request_id)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                raw.append((b"x-request-id", request_id.encode()))
                status_holder["busy"] = any(k.lower() == b"retry-after" for k, _ in raw)  # how clients tell busy
                message = {**message, "headers": raw}
            if capture is not None:
                capture.saw(message)
            await send(message)

        try:
            self._guard(scope, headers)
            receive = self._limit_body(scope, headers, receive)
            if capture is not None:
                receive = capture.wrap_receive(receive)
            await self.app(scope, receive, send_wrapper)
        except AistackError as exc:
            await self._send_error(exc, send_wrapper, status_holder)
        except Exception as exc:
            log.exception("unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"), request_id)
            await self._send_error(unexpected(exc), send_wrapper, status_holder)
        finally:
            self._record(scope, request_id, obs, started, status_holder, capture)

    def _guard(self, scope: Scope, headers: dict[str, str]) -> None:
        host = headers.get("host", "")
        if not self.open_host and host and not is_loopback_host(host):
            raise Forbidden(
                f"Host '{host[:100]}' is not allowed: aistack answers only to localhost. "
                "Use http://127.0.0.1 or set AISTACK_HOST to serve the network."
            )
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin):
            raise Forbidden(
                f"Origin '{origin[:100]}' may not call aistack from a browser. "
                "Add it to AISTACK_ALLOWED_ORIGINS if you trust it."
            )

    def _origin_allowed(self, origin: str) -> bool:
        value = origin.strip().rstrip("/").lower()
        if value in self.allowed_origins or "*" in self.allowed_origins:
            return True
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and is_loopback_host(parts.netloc)

    def _limit_body(self, scope: Scope, headers: dict[str, str], receive: Receive) -> Receive:
        is_upload = scope.get("path", "") in UPLOAD_PATHS
        limit_mb = self.settings.max_upload_mb if is_upload else self.settings.max_body_mb
        limit = int(limit_mb * 1024 * 1024)
        what = "upload" if is_upload else "request body"
        setting = "AISTACK_MAX_UPLOAD_MB" if is_upload else "AISTACK_MAX_BODY_MB"
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Malformed("Content-Length must be a whole number of bytes.")
            if int(declared) > limit:
                raise Overflow(f"The {what} is {int(declared) / 2**20:.1f} MB; the limit is {limit_mb:g} MB ({setting}).")
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise Overflow(f"The {what} is larger than the {limit_mb:g} MB limit ({setting}).")
            return message

        return limited

    async def _send_error(self, exc: AistackError, send: Send, status_holder: dict[str, Any]) -> None:
        if status_holder["started"]:
            return  # mid-stream: the route's own error event is all the client can get now
        body = json.dumps({"error": exc.to_dict()}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _record(
        self, scope: Scope, request_id: str, obs: dict[str, Any], started: float, status_holder: dict[str, Any],
        capture: Capture | None,
    ) -> None:
        path = scope.get("path", "")
        status = obs.get("status_override") or status_holder["status"] or 499
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        now = time.time()
        category = category_of(path)
        if self.obs.metrics.enabled:
            self.obs.metrics.record(
                Sample(now, request_id, category, scope.get("method", ""), path, status,
                       status_class(status, status_holder["busy"]), latency_ms, obs.get("slot_wait_ms"), obs.get("model"),
                       obs.get("extra") or {})
            )
        if capture is not None:
            self.obs.capture.finish(capture, status, latency_ms)
        client = scope.get("client")
        self.obs.access_log.record(
            {
                "ts": now,
                "request_id": request_id,
                "method": scope.get("method"),
                "path": path,
                "status": status,
                "category": category,
                "model": obs.get("model"),
                "latency_ms": latency_ms,
                "slot_wait_ms": obs.get("slot_wait_ms"),
                "client": f"{client[0]}:{client[1]}" if client else None,
                "extra": obs.get("extra") or {},
            }
        )
