"""Runner processes and the manager, driven through the real HTTP stack with the scripted test engine.

Each test reads as what a user of the server would see: a crash is an
envelope and the next request works; an unload really ends the process; an
idle model goes away after its keep-alive; a storm of concurrent calls leaves
no stray process behind.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.inprocess import InProcessServer, install_fake_model
from tests.support.observe import wait_until


@pytest.fixture
def spine(tmp_path: Path) -> Iterator[InProcessServer]:
    data_dir = tmp_path / "data"
    for model_id in ("alpha", "beta", "gamma"):
        install_fake_model(data_dir, model_id)
    install_fake_model(data_dir, "broken", fail_load=True)
    install_fake_model(data_dir, "crashy", crash_load=True)
    server = InProcessServer(data_dir, cancel_grace_sec=1.0, model_keep_alive_sec=300)
    yield server
    server.stop()


def run(client: httpx.Client, model_id: str, **job: object) -> httpx.Response:
    return client.post(f"/test/run/{model_id}", json={"job": job})


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def children() -> list[psutil.Process]:
    """Live runner processes this test process spawned.

    Only direct `multiprocessing` spawn children count: servers started by other tests' fixtures
    (and their runners) and multiprocessing's resource tracker are not ours.
    """
    found = []
    for child in psutil.Process().children():
        try:
            cmdline = " ".join(child.cmdline())
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in cmdline and "resource_tracker" not in cmdline:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def assert_envelope(response: httpx.Response, status: int, kind: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["kind"] == kind and error["message"] and error["provider"]
    assert set(error) == {"kind", "provider", "message"}
    return dict(error)


def test_job_runs_in_a_child_process_and_streams_partials(spine: InProcessServer) -> None:
    with spine.client() as client:
        body = run(client, "alpha", steps=3, echo="hi").json()
    assert [p["step"] for p in body["partials"]] == [0, 1, 2]
    assert body["result"]["echo"] == "hi"
    assert body["result"]["pid"] != os.getpid()
    assert spine.status("alpha")["state"] == "loaded"


def test_sigkill_mid_job_gives_envelope_and_next_job_gets_a_fresh_runner(spine: InProcessServer) -> None:
    with spine.client() as client:
        first_pid = run(client, "alpha").json()["result"]["pid"]
        killer = threading.Timer(0.5, os.kill, (first_pid, signal.SIGKILL))
        killer.start()
        response = run(client, "alpha", steps=50, delay=0.1)
        error = assert_envelope(response, 503, "network")
        assert error["provider"] == "scripted" and "SIGKILL" in error["message"]
        assert client.get("/health").status_code == 200
        again = run(client, "alpha", echo="after")
    assert again.status_code == 200 and again.json()["result"]["echo"] == "after"
    assert again.json()["result"]["pid"] != first_pid


def test_sigkill_mid_stream_ends_the_stream_with_an_error_event(spine: InProcessServer) -> None:
    with spine.client() as client:
        events = []
        with client.stream("POST", "/test/run/alpha", json={"job": {"steps": 50, "delay": 0.05}, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 2:
                        os.kill(events[0]["pid"], signal.SIGKILL)
        assert events[-1]["type"] == "error" and events[-1]["error"]["kind"] == "network"
        assert run(client, "alpha").status_code == 200


@pytest.mark.parametrize("crash,status,kind", [("segv", 503, "network"), ("exit", 503, "network"),
                                               ("raise", 500, "unknown"), ("malformed", 400, "malformed")])
def test_engine_failures_map_to_the_envelope(spine: InProcessServer, crash: str, status: int, kind: str) -> None:
    with spine.client() as client:
        error = assert_envelope(run(client, "beta", steps=2, crash_at=1, crash=crash), status, kind)
        assert error["provider"] == "scripted"
        assert run(client, "beta").status_code == 200


def test_load_failures_are_503_and_retried_next_time(spine: InProcessServer) -> None:
    with spine.client() as client:
        failed = assert_envelope(run(client, "broken"), 503, "network")
        assert "not a valid model file" in failed["message"]
        assert spine.status("broken")["state"] == "failed"
        crashed = assert_envelope(run(client, "crashy"), 503, "network")
        assert "crashed while loading" in crashed["message"]
        assert_envelope(run(client, "crashy"), 503, "network")
        assert run(client, "alpha").status_code == 200
    assert len(children()) == 1  # only alpha's runner is left


def test_disconnect_cancels_the_job_and_the_next_request_is_served_at_once(spine: InProcessServer) -> None:
    with spine.client() as client:
        job = {"job": {"steps": 100, "delay": 0.05}, "stream": True}
        with client.stream("POST", "/test/run/gamma", json=job, headers={"X-Request-ID": "gone-1"}) as r:
            lines = r.iter_lines()
            first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        started = time.monotonic()
        after = run(client, "gamma", echo="next")
        assert after.status_code == 200, after.text
        assert time.monotonic() - started < 2
        assert after.json()["result"]["pid"] == first["pid"]  # cancelled cleanly, not killed

    def logged() -> list[dict[str, object]]:
        lines = "".join(p.read_text() for p in (spine.data_dir / "logs").glob("access-*.jsonl")).splitlines()
        return [record for record in map(json.loads, lines) if record["request_id"] == "gone-1"]

    assert wait_until(lambda: bool(logged()), 5)
    record = logged()[0]
    assert record["status"] == 499 and record["model"] == "gamma" and record["extra"]["client_disconnect"] is True


def test_runner_that_ignores_cancel_is_killed_after_the_grace(spine: InProcessServer) -> None:
    with spine.client() as client:
        job = {"steps": 200, "delay": 0.05, "ignore_cancel": True}
        with client.stream("POST", "/test/run/gamma", json={"job": job, "stream": True}) as r:
            lines = r.iter_lines()
            stuck_pid = json.loads(next(line for line in lines if line.startswith("data: "))[6:])["pid"]
        after = run(client, "gamma")
        assert after.status_code == 200, after.text
        assert after.json()["result"]["pid"] != stuck_pid
        assert not pid_alive(stuck_pid)


def test_unload_ends_the_runner_process(spine: InProcessServer) -> None:
    with spine.client() as client:
        no_token = client.post("/admin/api/models/alpha/load")
        assert_envelope(no_token, 403, "forbidden")
        loaded = client.post("/admin/api/models/alpha/load", headers=spine.admin_headers).json()
        assert loaded["state"] == "loaded" and loaded["pinned"]
        pid = loaded["runner_pid"]
        assert pid_alive(pid)
        unloaded = client.post("/admin/api/models/alpha/unload", headers=spine.admin_headers).json()
        assert unloaded["state"] == "installed"
        assert not pid_alive(pid)
        assert children() == []
        rows = {row["id"]: row for row in client.get("/admin/api/models").json()["data"]}
        assert rows["alpha"]["installed"] and not rows["alpha"]["loaded"]
        missing = client.post("/admin/api/models/nope/load", headers=spine.admin_headers)
        assert_envelope(missing, 400, "malformed")


def test_keep_alive_expiry_unloads_idle_models(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    install_fake_model(data_dir, "alpha")
    install_fake_model(data_dir, "pinned")
    server = InProcessServer(data_dir, model_keep_alive_sec=1)
    try:
        with server.client() as client:
            client.post("/admin/api/models/pinned/load", headers=server.admin_headers)
            pid = run(client, "alpha").json()["result"]["pid"]
            assert server.status("alpha")["loaded"]
            assert wait_until(lambda: not pid_alive(pid), 5)
            assert server.status("alpha")["state"] == "installed"
            assert server.status("pinned")["loaded"]  # the user loaded it: it stays

            # A request's own keep_alive wins: 0 unloads right after the answer.
            response = client.post("/test/run/alpha", json={"job": {}, "keep_alive": 0})
            assert wait_until(lambda: not pid_alive(response.json()["result"]["pid"]), 3)
            forever = client.post("/test/run/alpha", json={"job": {}, "keep_alive": "-1"}).json()["result"]["pid"]
            time.sleep(2)
            assert pid_alive(forever)
            bad = client.post("/test/run/alpha", json={"job": {}, "keep_alive": "soon"})
            assert_envelope(bad, 400, "malformed")
    finally:
        server.stop()
    assert children() == []


def test_memory_pressure_evicts_idle_models_then_refuses_clearly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    install_fake_model(data_dir, "small")
    install_fake_model(data_dir, "huge", size=64 << 30)
    reserve_mb = (psutil.virtual_memory().available >> 20) - 2048  # 2 GB "free" for the estimate
    server = InProcessServer(data_dir, memory_reserve_mb=reserve_mb)
    try:
        with server.client() as client:
            small_pid = run(client, "small").json()["result"]["pid"]
            error = assert_envelope(run(client, "huge"), 503, "network")
            assert "Not enough memory" in error["message"]
            assert not pid_alive(small_pid)  # evicted first, least recently used
            assert server.status("small")["state"] == "installed"
    finally:
        server.stop()


def test_fifty_concurrent_mixed_calls_leave_consistent_state(spine: InProcessServer) -> None:
    models = ["alpha", "beta", "gamma"]

    def call(i: int) -> tuple[int, int, str]:
        with spine.client() as client:
            model = models[i % 3]
            action = i % 5
            if action == 0:
                response = client.post(f"/admin/api/models/{model}/load", headers=spine.admin_headers)
            elif action == 1:
                response = client.post(f"/admin/api/models/{model}/unload", headers=spine.admin_headers)
            else:
                response = run(client, model, steps=2, delay=0.01)
            reason = response.headers.get("Retry-After") or response.text if response.status_code != 200 else ""
            return action, response.status_code, reason

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(50)))
    # Loads and unloads always succeed; a job either runs (after waiting its turn) or is cut
    # short by an unload that raced it (an envelope saying so).
    assert all(status == 200 for action, status, _ in results if action < 2), results
    for _action, status, reason in results:
        assert status == 200 or (status == 503 and "unloaded" in reason), (status, reason)
    time.sleep(0.5)
    loaded = {m: spine.status(m) for m in models}
    assert all(s["state"] in ("installed", "loaded") for s in loaded.values()), loaded
    runner_pids = {s["runner_pid"] for s in loaded.values() if s["state"] == "loaded"}
    assert {c.pid for c in children()} == runner_pids
    with spine.client() as client:
        for model in models:
            assert run(client, model).status_code == 200
        client.post("/admin/api/unload-all", headers=spine.admin_headers)
    assert wait_until(lambda: children() == [], 5)
