"""Observability through the real server: metrics after a known mix, Prometheus, the access log, payload capture.

One private server on the starter models, with its own log and capture folders,
so the numbers count only the requests these tests send.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)

MODEL = "smollm2-135m-instruct"
HELLO = [{"role": "user", "content": "Say hello."}]
SECRETS = {
    "Authorization": "Bearer sk-secret-1",
    "Cookie": "session=secret-2",
    "X-Api-Key": "secret-3",
    "Proxy-Authorization": "Basic secret-4",
    "X-Aistack-Admin-Token": "secret-5",
}


@pytest.fixture(scope="module")
def observed(starter_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("obs")
    env = {
        "AISTACK_OBS_LOG_DIR": str(folder / "logs"),
        "AISTACK_OBS_PAYLOAD": "on",
        "AISTACK_OBS_PAYLOAD_DIR": str(folder / "captures"),
        "AISTACK_OBS_PAYLOAD_BODY_MAX_MB": str(4096 / 2**20),  # 4 KiB: a spoken sentence is larger
        "AISTACK_QUEUE_MAX": "0",  # a second request is busy at once instead of waiting its turn
        "AISTACK_LLM_PARALLEL": "1",  # ... with a single slot, which the first request holds
    }
    proc = ServerProcess(starter_data_dir, env)
    proc.obs_folder = folder  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def records(server: ServerProcess) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted((server.obs_folder / "logs").glob("access-*.jsonl")):  # type: ignore[attr-defined]
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def wait_for_records(server: ServerProcess, ids: set[str], timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = records(server)
        if ids <= {r["request_id"] for r in found}:
            return found
        time.sleep(0.05)
    raise AssertionError(f"access log lacks {ids - {r['request_id'] for r in records(server)}}")


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def chat(http: httpx.Client, request_id: str, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 4, **extra}
    return http.post("/v1/chat/completions", json=body, headers={"X-Request-ID": request_id})


def run_known_mix(server: ServerProcess, eos: int) -> dict[str, str]:
    """Two successes, one 400, one busy 503, one client that hangs up; returns the request id of each."""
    tag = uuid.uuid4().hex[:6]
    ids = {name: f"mix-{name}-{tag}" for name in ("ok1", "ok2", "bad", "busy", "gone")}
    endless = {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
               "max_tokens": 3000, "stream": True, "logit_bias": {str(eos): -100}}
    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert chat(http, ids["ok1"]).status_code == 200
        assert chat(http, ids["ok2"]).status_code == 200
        assert http.post("/v1/chat/completions", json={"model": MODEL},
                         headers={"X-Request-ID": ids["bad"]}).status_code == 400
        with http.stream("POST", "/v1/chat/completions", json=endless, headers={"X-Request-ID": ids["gone"]}) as stream:
            lines = stream.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            busy = httpx.post(server.url + "/v1/chat/completions", headers={"X-Request-ID": ids["busy"]},
                              json={"model": MODEL, "messages": HELLO, "max_tokens": 4}, timeout=30)
            assert busy.status_code == 503 and busy.headers.get("retry-after")
        # leaving the `with` hangs up mid-stream: the server logs 499
    return ids


def test_metrics_count_a_known_mix_and_agree_with_the_access_log(observed: ServerProcess, eos: int) -> None:
    ids = run_known_mix(observed, eos)
    logged = wait_for_records(observed, set(ids.values()))
    llm_records = [r for r in logged if r["category"] == "llm"]
    assert {r["request_id"]: r["status"] for r in llm_records if r["request_id"] in ids.values()} == {
        ids["ok1"]: 200, ids["ok2"]: 200, ids["bad"]: 400, ids["busy"]: 503, ids["gone"]: 499,
    }

    snapshot = httpx.get(observed.url + "/admin/api/metrics").json()
    llm = snapshot["categories"]["llm"]
    assert llm["classes"] == {"2xx": 2, "4xx": 1, "5xx": 0, "503-busy": 1, "client-disconnect": 1}
    assert llm["total"] == 5 and llm["errors"] == 1  # busy and the hang-up are not errors
    assert llm["error_rate"] == pytest.approx(0.2)
    assert llm["throughput_per_min"] > 0
    latencies = [r["latency_ms"] for r in llm_records]
    for p in (50, 95, 99):
        assert llm["latency_ms"][f"p{p}"] == nearest_rank(latencies, p)
    assert llm["latency_ms"]["max"] == max(latencies)
    assert sum(llm["latency_histogram"]) == 5
    waits = [r["slot_wait_ms"] for r in llm_records if r["slot_wait_ms"] is not None]
    assert llm["slot_wait_ms"]["p50"] == nearest_rank(waits, 50)
    recent = {s["request_id"]: s for s in snapshot["recent"]}
    assert recent[ids["ok1"]]["model"] == MODEL and recent[ids["ok1"]]["extra"]["completion_tokens"] >= 1
    assert recent[ids["busy"]]["status_class"] == "503-busy"

    families = {f.name: f for f in text_string_to_metric_families(httpx.get(observed.url + "/metrics").text)}
    counts = {(s.labels["category"], s.labels["class"]): s.value
              for s in families["aistack_requests"].samples if s.name == "aistack_requests_total"}
    assert counts[("llm", "2xx")] == 2 and counts[("llm", "503-busy")] == 1 and counts[("llm", "client-disconnect")] == 1
    histogram = {s.name: s for s in families["aistack_request_duration_seconds"].samples if s.labels["category"] == "llm"}
    assert histogram["aistack_request_duration_seconds_count"].value == 5
    assert histogram["aistack_request_duration_seconds_sum"].value == pytest.approx(sum(latencies) / 1000, rel=1e-3)
    assert families["aistack_uptime_seconds"].samples[0].value > 0
    loaded = {s.labels["capability"]: s.value for s in families["aistack_models_loaded"].samples}
    assert loaded["llm"] == 1


def test_access_log_has_one_valid_line_per_request(observed: ServerProcess) -> None:
    tag = uuid.uuid4().hex[:6]
    sent = [f"line-{i}-{tag}" for i in range(20)]
    with httpx.Client(base_url=observed.url) as http:
        for i, request_id in enumerate(sent):
            path = "/v1/models" if i % 2 else "/health"
            assert http.get(path, headers={"X-Request-ID": request_id}).status_code == 200
    logged = [r for r in wait_for_records(observed, set(sent)) if r["request_id"] in sent]
    assert sorted(r["request_id"] for r in logged) == sorted(sent)  # one line each, none lost, none doubled
    for record in logged:
        assert {"ts", "method", "path", "status", "category", "model", "latency_ms", "slot_wait_ms", "client", "extra"} <= set(record)
        assert record["ts"].endswith("+00:00") and record["status"] == 200 and record["latency_ms"] >= 0
        assert record["category"] in ("health", "models")


def capture_of(server: ServerProcess, request_id: str, timeout: float = 10) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((server.obs_folder / "captures").glob(f"*/{request_id}/meta.json"))  # type: ignore[attr-defined]
        if found:
            return found[0].parent
        time.sleep(0.05)
    raise AssertionError(f"no capture for {request_id}")


def test_capture_writes_bodies_masks_secrets_and_marks_truncation(observed: ServerProcess) -> None:
    request_id = f"cap-{uuid.uuid4().hex[:6]}"
    body = {"model": "tts-1", "input": "Capture this sentence, please.", "response_format": "wav"}
    answer = httpx.post(observed.url + "/v1/audio/speech", json=body, timeout=60,
                        headers={"X-Request-ID": request_id, **SECRETS})
    assert answer.status_code == 200 and len(answer.content) > 4096
    folder = capture_of(observed, request_id)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["route"] == "/v1/audio/speech" and meta["status"] == 200 and meta["latency_ms"] > 0
    for name, secret in SECRETS.items():
        assert meta["request"]["headers"][name.lower()] == "***"
        assert secret not in (folder / "meta.json").read_text()
    assert json.loads((folder / meta["request"]["file"]).read_bytes()) == body
    assert meta["request"]["truncated"] is False
    response = meta["response"]
    assert response["content_type"].startswith("audio/wav") and response["bytes"] == len(answer.content)
    assert response["truncated"] is True and response["captured_bytes"] == 4096
    assert (folder / response["file"]).read_bytes() == answer.content[:4096]


def test_switches_flip_at_run_time_with_the_admin_token(observed: ServerProcess) -> None:
    url = observed.url + "/admin/api/observability"
    assert httpx.post(url, json={"payload": False}).status_code == 403
    assert httpx.post(url, json={"payload": "maybe"}, headers=observed.admin_headers).status_code == 400
    try:
        flipped = httpx.post(url, json={"payload": False, "metrics": False}, headers=observed.admin_headers).json()
        assert flipped["payload"] is False and flipped["metrics"] is False and flipped["access_log"] is True
        before = httpx.get(observed.url + "/admin/api/metrics").json()["all"]["total"]
        quiet = f"quiet-{uuid.uuid4().hex[:6]}"
        httpx.get(observed.url + "/health", headers={"X-Request-ID": quiet})
        wait_for_records(observed, {quiet})  # the access log stayed on
        assert httpx.get(observed.url + "/admin/api/metrics").json()["all"]["total"] == before
        assert not list((observed.obs_folder / "captures").glob(f"*/{quiet}"))  # type: ignore[attr-defined]
    finally:
        httpx.post(url, json={"payload": True, "metrics": True}, headers=observed.admin_headers)
    assert httpx.get(url).json()["payload"] is True


def test_log_tail_needs_the_admin_token(observed: ServerProcess) -> None:
    request_id = f"tail-{uuid.uuid4().hex[:6]}"
    httpx.get(observed.url + "/health", headers={"X-Request-ID": request_id})
    wait_for_records(observed, {request_id})
    assert httpx.get(observed.url + "/admin/api/logs").status_code == 403
    tail = httpx.get(observed.url + "/admin/api/logs?lines=5", headers=observed.admin_headers).json()
    assert request_id in {r["request_id"] for r in tail["lines"]}
    server_log = httpx.get(observed.url + "/admin/api/logs?source=server", headers=observed.admin_headers).json()
    assert isinstance(server_log["lines"], list)
    assert httpx.get(observed.url + "/admin/api/logs?lines=0", headers=observed.admin_headers).status_code == 400
