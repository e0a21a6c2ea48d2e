"""The outermost layer every request passes: request id, Host/Origin guard, body limits, access log, metrics, capture.

Written as plain ASGI (not BaseHTTPMiddleware) so streamed responses pass
through untouched and a client disconnect reaches the route.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.core.errors import AistackError, Malformed, Overflow
from models.core.settings import Settings
from server.admin_token import ensure_admin_token
from server.capture import Capture
from server.errors import envelope_bytes, unexpected
from server.guard import Guard, is_loopback_host
from server.json_body import clean_json_receive, is_json_request
from server.metrics import Sample, status_class
from server.observability import Observability, category_of

log = logging.getLogger("aistack.server")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9\-_:.]{1,128}$")
UPLOAD_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations")


def request_id_from(headers: dict[str, str]) -> str:
    """The client's X-Request-ID when it is 1-128 of [A-Za-z0-9-_:.], else 16 fresh hex digits."""
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID_RE.match(given) else secrets.token_hex(8)


__all__ = ["EdgeMiddleware", "is_loopback_host", "request_id_from"]


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, observability: Observability):
        self.app = app
        self.settings = settings
        self.obs = observability
        self.guard = Guard(settings, ensure_admin_token(settings.data_dir))

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
                raw += self.guard.cors_headers(headers)
                status_holder["busy"] = any(k.lower() == b"retry-after" for k, _ in raw)  # how clients tell busy
                message = {**message, "headers": raw}
            if capture is not None:
                capture.saw(message)
            await send(message)

        try:
            handler = self._guard(scope, headers)
            receive = self._limit_body(scope, headers, receive)
            if capture is not None:
                receive = capture.wrap_receive(receive)
            await handler(scope, receive, send_wrapper)
        except AistackError as exc:
            await self._send_error(exc, send_wrapper, status_holder)
        except Exception as exc:
            log.exception("unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"), request_id)
            await self._send_error(unexpected(exc), send_wrapper, status_holder)
        finally:
            self._record(scope, request_id, obs, started, status_holder, capture)

    def _guard(self, scope: Scope, headers: dict[str, str]) -> ASGIApp:
        """Raise if the request may not pass (server.guard); the app that answers it if it may."""
        self.guard.check(scope, headers)
        preflight = self.guard.preflight(scope, headers)
        if preflight is None:
            return self.app

        async def answer_preflight(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 204, "headers": preflight})
            await send({"type": "http.response.body", "body": b""})

        return answer_preflight

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

        return clean_json_receive(limited) if not is_upload and is_json_request(headers) else limited

    async def _send_error(self, exc: AistackError, send: Send, status_holder: dict[str, Any]) -> None:
        if status_holder["started"]:
            return  # mid-stream: the route's own error event is all the client can get now
        body = envelope_bytes(exc)
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
