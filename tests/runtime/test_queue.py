"""Requests for a busy model wait their turn: first come, first served, within limits that are named.

Driven through the real HTTP stack and real runner processes with the scripted
test engine, whose jobs say how long they take and report when they started.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.inprocess import InProcessServer, install_fake_model
from tests.support.observe import wait_until


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[object]:
    servers: list[InProcessServer] = []

    def make(**settings: object) -> InProcessServer:
        data_dir = tmp_path / f"data{len(servers)}"
        for model_id in ("alpha", "beta"):
            install_fake_model(data_dir, model_id)
        server = InProcessServer(data_dir, cancel_grace_sec=1.0, **settings)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def run(server: InProcessServer, model_id: str, timeout: float = 60, request_id: str | None = None,
        **job: object) -> httpx.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    with server.client(timeout) as client:
        return client.post(f"/test/run/{model_id}", json={"job": job}, headers=headers)


def access_record(server: InProcessServer, request_id: str) -> dict[str, object]:
    def found() -> list[dict[str, object]]:
        lines = "".join(p.read_text() for p in (server.data_dir / "logs").glob("access-*.jsonl")).splitlines()
        return [r for r in map(json.loads, lines) if r["request_id"] == request_id]

    assert wait_until(lambda: bool(found()), 5), request_id
    return found()[0]


def busy_envelope(response: httpx.Response, limit: str) -> str:
    assert response.status_code == 503, response.text
    retry_after = response.headers["Retry-After"]
    error = response.json()["error"]
    assert error["kind"] == "network" and limit in error["message"], error
    assert int(retry_after) >= 1 and f"Retry in about {retry_after} s" in error["message"], error
    return str(error["message"])


def test_waiting_requests_are_served_in_arrival_order(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    assert run(server, "alpha").status_code == 200  # loaded: the order below is the queue's, not the load's
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        first = pool.submit(run, server, "alpha", steps=10, delay=0.1, echo="first")
        assert wait_until(lambda: server.status("alpha")["busy"], 5)
        waiting = []
        for i in range(5):
            waiting.append(pool.submit(run, server, "alpha", request_id=f"fifo-{i}", echo=i))
            assert wait_until(lambda n=i + 1: server.status("alpha")["queued"] == n, 5)
        results = [future.result() for future in [first, *waiting]]
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    started = [r.json()["result"]["started_at"] for r in results]
    assert started == sorted(started)
    assert [r.json()["result"]["echo"] for r in results] == ["first", 0, 1, 2, 3, 4]
    # Every waiter's wait is in its access-log record.
    waits = [float(access_record(server, f"fifo-{i}")["slot_wait_ms"]) for i in range(5)]  # type: ignore[arg-type]
    assert min(waits) > 200, waits
    assert server.status("alpha")["queued"] == 0 and not server.status("alpha")["busy"]


def test_a_client_that_leaves_while_waiting_frees_its_place(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(queue_max=1)
    assert run(server, "alpha").status_code == 200
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(run, server, "alpha", steps=30, delay=0.1)
        assert wait_until(lambda: server.status("alpha")["busy"], 5)
        with pytest.raises(httpx.ReadTimeout):
            run(server, "alpha", timeout=0.5, request_id="gave-up")  # waits, then its client hangs up
        assert wait_until(lambda: server.status("alpha")["queued"] == 0, 1)
        # Its place is free at once: the next request queues (queue_max=1) instead of being refused.
        after = pool.submit(run, server, "alpha", echo="after")
        assert wait_until(lambda: server.status("alpha")["queued"] == 1, 2)
        assert slow.result().status_code == 200
        assert after.result().status_code == 200 and after.result().json()["result"]["echo"] == "after"
    assert access_record(server, "gave-up")["status"] == 499


def test_a_full_queue_answers_busy_naming_the_limit(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(queue_max=2)
    assert run(server, "alpha").status_code == 200
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        slow = pool.submit(run, server, "alpha", steps=20, delay=0.1)
        assert wait_until(lambda: server.status("alpha")["busy"], 5)
        queued = [pool.submit(run, server, "alpha") for _ in range(2)]
        assert wait_until(lambda: server.status("alpha")["queued"] == 2, 5)
        message = busy_envelope(run(server, "alpha"), "AISTACK_QUEUE_MAX=2")
        assert "2 requests are already waiting" in message
        assert all(f.result().status_code == 200 for f in [slow, *queued])


def test_retry_after_comes_from_the_measured_time_per_job_and_the_queue(make_server) -> None:  # type: ignore[no-untyped-def]
    """Jobs of about 1.5 s, one waiting: the next one would wait for two of them, so Retry-After says 3 s or
    more (a fixed value would say 5 whatever the model's speed)."""
    server = make_server(queue_max=1, busy_retry_after_sec=30)
    assert run(server, "alpha", steps=15, delay=0.1).status_code == 200  # measured: about 1.5 s a job
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(run, server, "alpha", steps=15, delay=0.1)
        assert wait_until(lambda: server.status("alpha")["busy"], 5)
        queued = pool.submit(run, server, "alpha")
        assert wait_until(lambda: server.status("alpha")["queued"] == 1, 5)
        refused = run(server, "alpha")
        busy_envelope(refused, "AISTACK_QUEUE_MAX=1")
        assert 3 <= int(refused.headers["Retry-After"]) <= 5, refused.headers["Retry-After"]
        assert slow.result().status_code == 200 and queued.result().status_code == 200


def test_a_long_wait_answers_busy_naming_the_limit(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(queue_wait_sec=0.5)
    assert run(server, "alpha").status_code == 200
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(run, server, "alpha", steps=30, delay=0.1)
        assert wait_until(lambda: server.status("alpha")["busy"], 5)
        started = time.monotonic()
        busy_envelope(run(server, "alpha"), "AISTACK_QUEUE_WAIT_SEC=0.5")
        assert 0.4 < time.monotonic() - started < 2.5
        assert server.status("alpha")["queued"] == 0
        assert slow.result().status_code == 200


def test_two_models_queue_independently(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    assert run(server, "alpha").status_code == 200 and run(server, "beta").status_code == 200
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = pool.submit(run, server, "alpha", steps=30, delay=0.1)
        assert wait_until(lambda: server.status("alpha")["busy"], 5)
        waiting = pool.submit(run, server, "alpha")
        assert wait_until(lambda: server.status("alpha")["queued"] == 1, 5)
        started = time.monotonic()
        for _ in range(3):  # beta's own queue is empty: served at once, whatever alpha's holds
            assert run(server, "beta").status_code == 200
        assert time.monotonic() - started < 2
        assert server.status("alpha")["queued"] == 1 and not waiting.done()
        assert slow.result().status_code == 200 and waiting.result().status_code == 200


def test_streamed_and_whole_requests_share_one_queue(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    assert run(server, "alpha").status_code == 200
    with concurrent.futures.ThreadPoolExecutor(1) as pool, server.client() as client:
        stream_job = {"job": {"steps": 10, "delay": 0.1}, "stream": True}
        with client.stream("POST", "/test/run/alpha", json=stream_job) as response:
            lines = response.iter_lines()
            next(line for line in lines if line.startswith("data: "))  # the stream holds the slot now
            whole = pool.submit(run, server, "alpha", echo="whole")
            assert wait_until(lambda: server.status("alpha")["queued"] == 1, 5)
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        assert events[-1]["final"] is True
        stream_ended = time.time()
        assert whole.result().json()["result"]["started_at"] >= stream_ended - 0.5
        # And a stream waits behind a whole request the same way.
        slow = pool.submit(run, server, "alpha", steps=10, delay=0.1)
        assert wait_until(lambda: server.status("alpha")["busy"], 5)
        with client.stream("POST", "/test/run/alpha", json={"job": {"echo": "s"}, "stream": True}) as response:
            assert response.status_code == 200
            events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
        assert slow.done() and events[-1]["echo"] == "s"


@pytest.mark.parametrize("crash", ["garbage", "alien"])
def test_a_malformed_runner_message_is_a_clear_503(make_server, crash: str) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    pid = run(server, "alpha").json()["result"]["pid"]
    started = time.monotonic()
    response = run(server, "alpha", steps=2, crash_at=1, crash=crash)
    assert time.monotonic() - started < 5  # the runner sleeps 30 s after writing it: nobody waits for that
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["kind"] == "network" and error["provider"] == "scripted"
    assert "sent a message aistack cannot read" in error["message"]
    again = run(server, "alpha", echo="again")
    assert again.status_code == 200 and again.json()["result"]["pid"] != pid


def test_a_job_too_deep_to_send_fails_alone(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    pid = run(server, "alpha").json()["result"]["pid"]
    response = run(server, "alpha", nest=5000)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["kind"] == "malformed" and "nested too deeply" in error["message"]
    time.sleep(1.5)  # past the cancel grace: a job taken for stuck would have its runner killed by now
    after = run(server, "alpha", echo="after")
    assert after.status_code == 200 and after.json()["result"]["pid"] == pid
