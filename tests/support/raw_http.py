"""Raw-socket HTTP for the tests where a client library would fix the request before sending it."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after this response
    rest: bytes = b""  # bytes after this response (a second response, if one was served)
    seconds: float = 0.0
    header_list: list[tuple[str, str]] = field(default_factory=list)

    def envelope(self) -> dict[str, str]:
        data = json.loads(self.body.decode("utf-8"))
        assert set(data) == {"error"} and set(data["error"]) == {"kind", "provider", "message"}, data
        return dict(data["error"])


def connect(port: int, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_all(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or `timeout` passes in silence (False)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def parse(data: bytes, closed: bool, seconds: float = 0.0) -> RawResponse:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    header_list = [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)]
    headers = dict(header_list)
    length = int(headers.get("content-length", "0"))
    return RawResponse(status, headers, rest[:length], closed, rest[length:], seconds, header_list)


def exchange(port: int, data: bytes, *, wait: float = 3.0) -> RawResponse:
    """Send `data` as is, read until the server closes or goes quiet for `wait` seconds."""
    started = time.monotonic()
    with connect(port) as sock:
        sock.sendall(data)
        received, closed = read_all(sock, wait)
    assert received, f"no answer to {data[:80]!r}"
    return parse(received, closed, time.monotonic() - started)


def is_closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes `sock` (having sent anything or nothing) within `timeout` seconds."""
    _, closed = read_all(sock, timeout)
    return closed
