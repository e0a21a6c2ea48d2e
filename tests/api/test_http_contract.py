"""The contract's ground rules, seen by a client: envelope everywhere, request ids, guards, limits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.inprocess import InProcessServer, install_fake_model

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

HEX16 = re.compile(r"^[0-9a-f]{16}$")


def assert_envelope(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"kind", "provider", "message"}
    assert body["error"]["kind"] == kind and body["error"]["provider"] == "aistack"
    assert body["error"]["message"]
    return str(body["error"]["message"])


@pytest.fixture(scope="module")
def spine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    data_dir = tmp_path_factory.mktemp("contract") / "data"
    install_fake_model(data_dir, "alpha")
    server = InProcessServer(data_dir, max_body_mb=0.01)
    yield server
    server.stop()


def test_health_and_models_shape(http: httpx.Client) -> None:
    health = http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert re.match(r"^\d+\.\d+\.\d+", health.json()["version"])
    data = http.get("/v1/models").json()
    assert data["object"] == "list"
    by_id = {m["id"]: m for m in data["data"]}
    for model_id, capability in [("whisper-tiny.en", "asr"), ("piper-en_US-joe-medium", "tts"),
                                 ("smollm2-135m-instruct", "llm")]:
        entry = by_id[model_id]
        assert entry["object"] == "model" and entry["capabilities"] == [capability]
        assert entry["is_routing_alias"] is False and entry["supports_streaming"] is True
        assert isinstance(entry["owned_by"], str) and isinstance(entry["loaded"], bool)
    assert by_id["whisper-tiny.en"]["languages"] == ["en"]
    assert "languages" not in by_id["smollm2-135m-instruct"]
    assert by_id["auto"]["is_routing_alias"] is True and by_id["auto"]["capabilities"] == ["asr"]


def test_openapi_and_docs_are_served(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    assert "/v1/models" in schema["paths"] and "/health" in schema["paths"]
    assert http.get("/docs").status_code == 200


def test_unknown_route_and_wrong_method_get_the_envelope(http: httpx.Client) -> None:
    assert "/docs" in assert_envelope(http.get("/v1/nope"), 404, "malformed")
    assert "POST" in assert_envelope(http.post("/v1/models"), 405, "malformed")
    assert_envelope(http.delete("/health"), 405, "malformed")


def test_request_ids(http: httpx.Client) -> None:
    assert http.get("/health", headers={"X-Request-ID": "job-42:a.b_c"}).headers["X-Request-ID"] == "job-42:a.b_c"
    for bad in ("x" * 129, "has space", "ünicode", "semi;colon", ""):
        got = http.get("/health", headers={"X-Request-ID": bad.encode("utf-8")}).headers["X-Request-ID"]
        assert HEX16.match(got), (bad, got)
    assert HEX16.match(http.get("/health").headers["X-Request-ID"])
    assert http.get("/nope", headers={"X-Request-ID": "err-1"}).headers["X-Request-ID"] == "err-1"
    assert len("y" * 128) == len(http.get("/health", headers={"X-Request-ID": "y" * 128}).headers["X-Request-ID"])


def test_host_and_origin_guard(http: httpx.Client) -> None:
    assert "localhost" in assert_envelope(http.get("/health", headers={"Host": "evil.example"}), 403, "forbidden")
    assert_envelope(http.get("/v1/models", headers={"Host": "192.168.1.10:11500"}), 403, "forbidden")
    for host in ("localhost:11500", "127.0.0.1", "[::1]:11500"):
        assert http.get("/health", headers={"Host": host}).status_code == 200, host
    assert "AISTACK_ALLOWED_ORIGINS" in assert_envelope(
        http.get("/v1/models", headers={"Origin": "https://evil.example"}), 403, "forbidden")
    assert_envelope(http.get("/health", headers={"Origin": "null"}), 403, "forbidden")
    assert http.get("/health", headers={"Origin": "http://localhost:3000"}).status_code == 200


def test_allowed_origins_setting(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(AISTACK_ALLOWED_ORIGINS="https://editor.example, https://other.example")
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/health", headers={"Origin": "https://editor.example"}).status_code == 200
        assert client.get("/health", headers={"Origin": "https://third.example"}).status_code == 403


def test_admin_changes_need_the_token(http: httpx.Client, server) -> None:  # type: ignore[no-untyped-def]
    assert http.get("/admin/api/models").status_code == 200
    msg = assert_envelope(http.post("/admin/api/models/whisper-tiny.en/unload"), 403, "forbidden")
    assert "admin-token" in msg
    wrong = http.post("/admin/api/models/whisper-tiny.en/unload", headers={"Authorization": "Bearer nope"})
    assert_envelope(wrong, 403, "forbidden")
    ok = http.post("/admin/api/models/whisper-tiny.en/unload", headers=server.admin_headers)
    assert ok.status_code == 200 and ok.json()["loaded"] is False
    assert_envelope(http.post("/admin/api/models/evil;rm/load", headers=server.admin_headers), 400, "malformed")
    assert_envelope(http.post("/admin/api/models/..%2Fetc/load", headers=server.admin_headers), 404, "malformed")


def test_validation_errors_are_400_naming_the_field(spine: InProcessServer) -> None:
    with spine.client() as client:
        assert "'job' is required" in assert_envelope(client.post("/test/run/alpha", json={}), 400, "malformed")
        assert "JSON" in assert_envelope(
            client.post("/test/run/alpha", content=b"{not json", headers={"content-type": "application/json"}),
            400, "malformed")
        assert "'job'" in assert_envelope(client.post("/test/run/alpha", json={"job": 5}), 400, "malformed")


def test_body_limit_is_413(spine: InProcessServer) -> None:
    with spine.client() as client:
        big = {"job": {"echo": "x" * 20_000}}
        assert "AISTACK_MAX_BODY_MB" in assert_envelope(client.post("/test/run/alpha", json=big), 413, "overflow")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must still hold
            yield b'{"job": {"echo": "'
            for _ in range(30):
                yield b"x" * 1000
            yield b'"}}'

        assert_envelope(client.post("/test/run/alpha", content=chunks(),
                                    headers={"content-type": "application/json"}), 413, "overflow")


def test_a_bug_is_500_unknown_without_internals_and_is_logged(spine: InProcessServer,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with spine.client() as client:
        response = client.get("/test/boom", headers={"X-Request-ID": "bug-1"})
    message = assert_envelope(response, 500, "unknown")
    assert "ZeroDivision" not in message and "bug-1" == response.headers["X-Request-ID"]
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)


# Promises about files and settings, each on a private server -------------------------------------------
ACCESS_FIELDS = {"ts", "request_id", "method", "path", "status", "category", "model", "latency_ms", "slot_wait_ms",
                 "client", "extra"}


def test_access_log_record_has_the_documented_fields(http: httpx.Client, server) -> None:  # type: ignore[no-untyped-def]
    http.get("/v1/nope", headers={"X-Request-ID": "contract-fields-1"})
    record = server.access_record("contract-fields-1")
    assert set(record) == ACCESS_FIELDS
    assert record["method"] == "GET" and record["path"] == "/v1/nope" and record["status"] == 404
    assert record["category"] == "other" and record["latency_ms"] >= 0 and record["client"].startswith("127.0.0.1:")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", record["ts"])  # UTC, milliseconds


def test_access_log_off_writes_nothing(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    logs = tmp_path / "logs"
    server = start_server(AISTACK_OBS_ACCESS_LOG="off", AISTACK_OBS_LOG_DIR=str(logs))
    for _ in range(3):
        assert httpx.get(server.url + "/health").status_code == 200
    assert httpx.get(server.url + "/v1/nope").status_code == 404
    server.stop()  # the writer flushes on the way out: only now is "nothing" final
    assert not logs.exists() or not list(logs.glob("access-*.jsonl"))
    on = start_server(data_dir=tmp_path / "other", AISTACK_OBS_LOG_DIR=str(logs))
    assert httpx.get(on.url + "/health", headers={"X-Request-ID": "log-on-1"}).status_code == 200
    on.stop()
    assert any("log-on-1" in p.read_text() for p in logs.glob("access-*.jsonl"))  # the same folder, when on


def test_admin_token_is_readable_only_by_the_user(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server()
    token = server.data_dir / "admin-token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert len(token.read_text().strip()) >= 32
