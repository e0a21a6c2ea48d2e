"""The HTTP connection itself, attacked with raw sockets (issue 9, defects 4, 5 and 6).

- Connections that send nothing, drip their headers or stop sending their body
  are closed (idle, header and body timeouts), while a slow but steady body is
  served; open connections are bounded, and the one over the bound gets
  the busy envelope.
- A request with both Content-Length and Transfer-Encoding is answered, then the
  connection is closed: the request smuggled after it is never served.
- Requests h11 cannot parse get the contract's envelope and an X-Request-ID.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.harness import ServerProcess
from tests.support.raw_http import connect, exchange, is_closed, parse, read_all

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
IDLE_TIMEOUT = 1.5
MAX_CONNECTIONS = 12
SLACK = 3.0  # a loaded 2-core machine answers late


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("edge"),
        {
            "AISTACK_HTTP_HEADER_TIMEOUT_SEC": str(HEADER_TIMEOUT),
            "AISTACK_HTTP_BODY_TIMEOUT_SEC": str(BODY_TIMEOUT),
            "AISTACK_HTTP_IDLE_TIMEOUT_SEC": str(IDLE_TIMEOUT),
            "AISTACK_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        },
    )
    yield proc
    proc.stop()


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


# Defect 4: timeouts and the connection bound ---------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts descriptors in /proc")
def test_silent_connections_are_closed(edge: ServerProcess) -> None:
    fds_before = open_fds(edge.proc.pid)
    socks = [connect(edge.port) for _ in range(10)]
    started = time.monotonic()
    assert all(is_closed(sock, IDLE_TIMEOUT + SLACK) for sock in socks)
    assert time.monotonic() - started < IDLE_TIMEOUT + SLACK + 1
    for sock in socks:
        sock.close()
    time.sleep(0.3)
    assert open_fds(edge.proc.pid) <= fds_before + 1


def test_idle_keep_alive_connection_is_closed_after_its_answer(edge: ServerProcess) -> None:
    with connect(edge.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        started = time.monotonic()
        data, closed = read_all(sock, IDLE_TIMEOUT + SLACK)
    assert parse(data, closed).status == 200
    assert closed and time.monotonic() - started < IDLE_TIMEOUT + SLACK


def test_dripped_headers_get_408_and_the_connection_closes(edge: ServerProcess) -> None:
    """Slowloris: one byte at a time, never finishing the head."""
    with connect(edge.port) as sock:
        started = time.monotonic()
        head = b"GET /health HTTP/1.1\r\nX-Request-ID: drip-1\r\nHost: localhost\r\nX-Slow: "
        sock.sendall(head)
        answer = b""
        while time.monotonic() - started < HEADER_TIMEOUT + SLACK:
            try:
                sock.sendall(b"a")
            except OSError:
                break  # closed by the server
            time.sleep(0.2)
            answer, closed = read_all(sock, 0.01)
            if answer or closed:
                break
        rest, closed = read_all(sock, SLACK)
    response = parse(answer + rest, closed)
    assert response.status == 408 and response.closed
    assert response.envelope()["kind"] == "malformed" and "AISTACK_HTTP_HEADER_TIMEOUT_SEC" in response.envelope()["message"]
    assert response.headers["x-request-id"] == "drip-1"
    assert time.monotonic() - started < HEADER_TIMEOUT + SLACK


CHAT_HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             b"X-Request-ID: %s\r\nContent-Length: %d\r\n\r\n")
CHAT_BODY = b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hello"}]}'
UPLOAD_HEAD = (b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: %s\r\n"
               b"Content-Type: multipart/form-data; boundary=b0undary\r\nTransfer-Encoding: chunked\r\n\r\n")
UPLOAD_START = b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'


@pytest.mark.parametrize(
    ("request_id", "sent"),
    [
        (b"stall-json", CHAT_HEAD % (b"stall-json", len(CHAT_BODY)) + CHAT_BODY[:20]),  # Content-Length, 20 bytes of it
        (b"stall-upload", UPLOAD_HEAD % b"stall-upload" + b"%x\r\n%s\r\n" % (len(UPLOAD_START), UPLOAD_START)),
    ],
)
def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(edge: ServerProcess, request_id: bytes,
                                                                      sent: bytes) -> None:
    with connect(edge.port) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        data, closed = read_all(sock, BODY_TIMEOUT + SLACK)
        waited = time.monotonic() - started
    response = parse(data, closed) if data else None
    assert response is not None and response.status == 408 and response.closed, (data, closed, waited)
    assert BODY_TIMEOUT - 0.5 < waited < BODY_TIMEOUT + SLACK
    error = response.envelope()
    assert error["kind"] == "malformed" and "AISTACK_HTTP_BODY_TIMEOUT_SEC" in error["message"]
    assert response.headers["x-request-id"] == request_id.decode()
    assert httpx.get(edge.url + "/health", timeout=5).status_code == 200
    deadline = time.monotonic() + 5  # the app notes the request once it has seen the client leave
    while not (records := [r for r in edge.access_log() if r.get("request_id") == request_id.decode()]):
        assert time.monotonic() < deadline, "the stalled request was never logged"
        time.sleep(0.1)
    assert [r["status"] for r in records] == [408], records  # what the client got, not the app's view of a disconnect


def test_a_slow_but_steady_body_is_served(edge: ServerProcess) -> None:
    """The body clock measures pauses, not the whole upload: 4 s of 0.4 s pauses outlasts the 2 s timeout."""
    pieces = [CHAT_BODY[i : i + 8] for i in range(0, len(CHAT_BODY), 8)]
    with connect(edge.port) as sock:
        sock.sendall(CHAT_HEAD % (b"steady-1", len(CHAT_BODY)))
        started = time.monotonic()
        for piece in pieces:
            time.sleep(0.4)
            sock.sendall(piece)
        took = time.monotonic() - started
        data, closed = read_all(sock, IDLE_TIMEOUT + SLACK)
    response = parse(data, closed)
    assert took > 2 * BODY_TIMEOUT
    assert response.status == 400 and "Unknown model 'no-such-model'" in response.envelope()["message"]  # read whole
    assert response.headers["x-request-id"] == "steady-1"


def test_connections_over_the_bound_get_busy_and_are_closed(edge: ServerProcess) -> None:
    held = [connect(edge.port) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        response = exchange(edge.port, b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: over-1\r\n\r\n")
        assert response.status == 503 and response.closed
        assert response.envelope()["kind"] == "network" and "AISTACK_HTTP_MAX_CONNECTIONS" in response.envelope()["message"]
        assert response.headers["retry-after"] == "1" and response.headers["x-request-id"] == "over-1"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert httpx.get(edge.url + "/health").status_code == 200


def test_many_silent_connections_do_not_lock_out_a_client(edge: ServerProcess) -> None:
    """A local program opening sockets and sending nothing: after the idle timeout the server serves again."""
    hogs = [connect(edge.port) for _ in range(MAX_CONNECTIONS * 3)]
    try:
        time.sleep(IDLE_TIMEOUT + SLACK)
        assert httpx.get(edge.url + "/health", timeout=5).status_code == 200
    finally:
        for sock in hogs:
            sock.close()


# Defect 5: Content-Length and Transfer-Encoding together -----------------------------------------
SMUGGLED = (
    b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\n{}\r\n0\r\n\r\n"
    b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: smuggled-1\r\n\r\n"
)


def test_content_length_with_transfer_encoding_closes_the_connection(edge: ServerProcess) -> None:
    response = exchange(edge.port, SMUGGLED, wait=HEADER_TIMEOUT + SLACK)
    assert response.status == 400 and response.closed  # the first request is answered (its body lacks fields) ...
    assert response.headers.get("connection") == "close"
    assert b"HTTP/1.1" not in response.rest  # ... and the smuggled one is never served
    assert not any(r.get("request_id") == "smuggled-1" for r in edge.access_log())


def test_pipelined_requests_without_the_clash_are_still_served(edge: ServerProcess) -> None:
    two = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    response = exchange(edge.port, two, wait=IDLE_TIMEOUT + SLACK)
    assert response.status == 200 and response.rest.startswith(b"HTTP/1.1 200")


# Defect 6: protocol errors get the envelope ------------------------------------------------------
BROKEN = {
    "missing Host": (b"GET /health HTTP/1.1\r\nX-Request-ID: broken-1\r\n\r\n", 400, "Host"),
    "duplicate Host": (b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nX-Request-ID: broken-1\r\n\r\n",
                       400, "Host"),
    "bad Transfer-Encoding": (b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: broken-1\r\n"
                              b"Transfer-Encoding: gzip\r\n\r\n", 501, "Transfer-Encoding"),
    "NUL in a header": (b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: broken-1\r\nX-Evil: a\x00b\r\n\r\n",
                        400, "header"),
    "conflicting Content-Length": (b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: broken-1\r\n"
                                   b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "Content-Length"),
    "garbage request line": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n", 400, "HTTP"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_protocol_errors_get_the_envelope(edge: ServerProcess, case: str) -> None:
    data, status, words = BROKEN[case]
    response = exchange(edge.port, data)
    assert response.status == status and response.closed
    assert response.headers["content-type"] == "application/json"
    error = response.envelope()
    assert error["provider"] == "aistack" and words in error["message"], error
    expected_id = "broken-1" if b"broken-1" in data else None
    assert response.headers["x-request-id"] == (expected_id or response.headers["x-request-id"])
    assert len(response.headers["x-request-id"]) >= 8


def test_oversized_heads_get_431(edge: ServerProcess) -> None:
    big = b"X-Big: " + b"a" * 100_000 + b"\r\n"
    # All at once (parsed whole) and in pieces (h11's buffer bound trips first): 431 either way.
    whole = exchange(edge.port, b"GET /health HTTP/1.1\r\nHost: localhost\r\n" + big + b"\r\n")
    assert whole.status == 431 and whole.envelope()["kind"] == "overflow"
    with connect(edge.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: big-1\r\n")
        try:
            for start in range(0, len(big), 4096):
                sock.sendall(big[start : start + 4096])
                time.sleep(0.005)
        except OSError:
            pass  # the server answered and closed mid-send
        data, closed = read_all(sock, SLACK)
    pieces = parse(data, closed)
    assert pieces.status == 431 and pieces.envelope()["kind"] == "overflow" and pieces.closed
    assert pieces.headers["x-request-id"] == "big-1"


def test_the_server_still_serves_after_the_attacks(edge: ServerProcess) -> None:
    assert httpx.get(edge.url + "/health").status_code == 200
    assert edge.proc.poll() is None
    assert "Traceback" not in edge.log()
