"""The HTTP/1.1 connection: uvicorn's h11 protocol with timeouts, a connection bound and enveloped errors.

uvicorn alone keeps a connection that sends nothing, or drips its headers a
byte a second, open for ever; answers broken requests with plain text; and
keeps a connection open after a request that carried both Content-Length and
Transfer-Encoding, so bytes smuggled after it are served as a second request.
This subclass closes those holes where they live, in the connection:

- a connection idle with no request in progress is closed after
  `http_idle_timeout_sec` (from the start, and between keep-alive requests);
- a request head must be complete within `http_header_timeout_sec` of its first
  byte, else 408 and close;
- a request body that stops arriving for `http_body_timeout_sec` gets 408 and the
  connection is closed (the app sees the client leave). The clock runs only while
  the server waits for the client: a slow but steady upload is never cut, and time
  the body waits for the app to read it (reading paused) does not count;
- beyond `http_max_connections` open connections, a request gets a 503 busy
  envelope with `Retry-After` and the connection is closed;
- a request with both Content-Length and Transfer-Encoding is answered, then
  the connection is closed (RFC 9112 section 6.1), whatever follows it unread;
- a request h11 cannot parse (missing or duplicate Host, bad Transfer-Encoding,
  oversized head, NUL in a header) gets the contract's envelope and an
  X-Request-ID, then the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from models.core.errors import AistackError, Malformed
from models.core.settings import Settings
from server.errors import envelope_bytes
from server.guard import MAX_HEAD_BYTES, OVERLOADED, HeadTooLarge
from server.middleware import request_id_from

log = logging.getLogger("aistack.server")
_CLOSE = (b"connection", b"close")  # in the request's headers, uvicorn repeats it in the answer
_REQUEST_ID = re.compile(rb"\r\nx-request-id[ \t]*:[ \t]*([A-Za-z0-9\-_:.]{1,128})[ \t]*\r\n", re.IGNORECASE)


class RequestTimeout(Malformed):
    status = 408


class NotImplementedEncoding(Malformed):
    status = 501


class _Connection(h11.Connection):
    """h11's connection, remembering the parse error uvicorn swallows (its status hint picks our answer)."""

    protocol_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.protocol_error = exc
            raise


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parser = _Connection(h11.SERVER, MAX_HEAD_BYTES)
        self.conn = self.parser
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_seen = 0.0  # loop time of the last body bytes (or of the head)
        self._head = bytearray()  # the current request head as received, to find its X-Request-ID on a parse error
        self._overloaded = False

    # Connection life ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._overloaded = len(self.connections) > self.max_connections
        # uvicorn arms its keep-alive timer only after a first response: a silent new connection waits too.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and len(self._head) < MAX_HEAD_BYTES:
            self._head += data[: MAX_HEAD_BYTES - len(self._head)]
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before and self.cycle is not None:
            self._on_request(self.cycle.scope)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()
        elif self.conn.trailing_data[0] and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)
        if self.conn.their_state is h11.SEND_BODY:
            self._body_seen = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_timeout, self._body_check)
        else:
            self._cancel_body_timer()

    def _on_request(self, scope: Any) -> None:
        self._head.clear()
        names = {name for name, _ in scope["headers"]}
        if b"content-length" in names and b"transfer-encoding" in names:
            log.warning("request from %s has both Content-Length and Transfer-Encoding; closing after it", self.client)
            self._close_after(scope)
        if self._overloaded:
            self._close_after(scope)
            scope[OVERLOADED] = self.max_connections

    def _close_after(self, scope: Any) -> None:
        """Answer this request, then close: nothing after it on this connection is read as a request."""
        self.cycle.keep_alive = False
        if _CLOSE not in scope["headers"]:
            scope["headers"].append(_CLOSE)

    # Answers the app never sees ------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """h11 could not parse the request: the envelope instead of uvicorn's plain text."""
        exc = self.parser.protocol_error
        detail = (str(exc) if exc is not None else msg).split(": bytearray(")[0]  # h11 quotes the raw line
        hint = getattr(exc, "error_status_hint", 400)
        error: AistackError
        if hint == 431 or "buffer" in detail.lower():
            error = HeadTooLarge(f"The request head is larger than {MAX_HEAD_BYTES // 1024} KB. Send fewer or shorter headers.")
        elif hint == 501:
            error = NotImplementedEncoding(f"Invalid HTTP request: {detail}. Use Transfer-Encoding: chunked or Content-Length.")
        else:
            error = Malformed(f"Invalid HTTP request: {detail[:200]}. The request line or headers break HTTP/1.1.")
        log.warning("HTTP protocol error from %s: %s", self.client, detail[:200])
        self._send_and_close(error)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        log.warning("request head from %s not complete after %.0f s; closing", self.client, self.header_timeout)
        self._send_and_close(
            RequestTimeout(
                f"The request head did not arrive within {self.header_timeout:g} s (AISTACK_HTTP_HEADER_TIMEOUT_SEC). "
                "Send the whole request line and headers at once."
            )
        )

    def _body_check(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow.read_paused:  # the app has not read what came: the client is not the one keeping us waiting
            self._body_seen = self.loop.time()
        waited = self.loop.time() - self._body_seen
        if waited < self.body_timeout:
            self._body_timer = self.loop.call_later(self.body_timeout - waited, self._body_check)
            return
        log.warning("request body from %s stalled for %.0f s; closing", self.client, self.body_timeout)
        state = (self.cycle.scope.get("state") or {}) if self.cycle else {}
        if isinstance(state.get("obs"), dict):  # the app then reads a disconnect; the access log says what was sent
            state["obs"]["status_override"] = RequestTimeout.status
        self._send_and_close(
            RequestTimeout(
                f"The request body stopped arriving for {self.body_timeout:g} s (AISTACK_HTTP_BODY_TIMEOUT_SEC). "
                "Send the body without pauses, or check the network between client and server."
            ),
            request_id=state.get("request_id"),
        )

    def _send_and_close(self, error: AistackError, *, request_id: str | None = None) -> None:
        """Write a complete envelope response straight to the socket (h11 may be in its error state), then close.

        `request_id`: the id the app gave the request in progress; else the head's X-Request-ID, else a fresh one.
        """
        if request_id is None:
            match = _REQUEST_ID.search(bytes(self._head))
            request_id = request_id_from({"x-request-id": match.group(1).decode("ascii")} if match else {})
        body = envelope_bytes(error)
        head = [
            f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            f"x-request-id: {request_id}",
            "connection: close",
        ] + [f"{name.lower()}: {value}" for name, value in error.headers.items()]
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE, h11.ERROR) and not self.transport.is_closing():
            self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        self._cancel_head_timer()
        self._cancel_body_timer()
        self.transport.close()

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large", 501: "Not Implemented"}


def protocol_for(settings: Settings) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with this server's limits."""
    return type(
        "AistackH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout": settings.http_header_timeout_sec,
            "body_timeout": settings.http_body_timeout_sec,
            "max_connections": settings.http_max_connections,
        },
    )
