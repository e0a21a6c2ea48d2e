"""The observability parts on their own: percentiles and classes, the dropping queue, masking, the sweeper."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from server.background_writer import BackgroundWriter
from server.capture import folder_name, masked_headers, masked_query, sweep
from server.metrics import Metrics, Sample, percentile, status_class
from server.observability import AccessLog


def sample(latency_ms: float, status: int = 200, *, busy: bool = False, ts: float | None = None, wait: float | None = None) -> Sample:
    return Sample(time.time() if ts is None else ts, "id", "llm", "POST", "/v1/chat/completions", status,
                  status_class(status, busy), latency_ms, wait)


def test_status_classes() -> None:
    assert [status_class(s) for s in (200, 204, 307, 400, 404, 413, 500, 503, 499)] == [
        "2xx", "2xx", "2xx", "4xx", "4xx", "4xx", "5xx", "5xx", "client-disconnect"]
    assert status_class(503, busy=True) == "503-busy"


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([7.0], 99) == 7 and percentile([], 50) is None


def test_window_numbers_after_a_known_mix() -> None:
    metrics = Metrics(window_sec=60)
    for latency in range(1, 97):  # 96 successes of 1..96 ms
        metrics.record(sample(float(latency), wait=1.0))
    metrics.record(sample(200, 400))
    metrics.record(sample(300, 503, busy=True))
    metrics.record(sample(400, 499))
    metrics.record(sample(500, 500))
    llm = metrics.snapshot()["categories"]["llm"]
    assert llm["total"] == 100
    assert llm["classes"] == {"2xx": 96, "4xx": 1, "5xx": 1, "503-busy": 1, "client-disconnect": 1}
    assert llm["error_rate"] == 0.02
    assert llm["latency_ms"] == {"p50": 50, "p95": 95, "p99": 400, "max": 500}
    assert llm["slot_wait_ms"] == {"p50": 1.0, "p95": 1.0, "p99": 1.0, "max": 1.0}
    assert sum(llm["latency_histogram"]) == 100


def test_old_samples_leave_the_window_but_stay_in_the_totals() -> None:
    metrics = Metrics(window_sec=60)
    metrics.record(sample(10, ts=time.time() - 120))
    metrics.record(sample(20))
    snapshot = metrics.snapshot()
    assert snapshot["categories"]["llm"]["total"] == 1
    assert metrics.since.counts[("llm", "2xx")] == 2


def test_the_queue_drops_and_counts_when_full() -> None:
    gate = threading.Event()
    written: list[int] = []
    writer: BackgroundWriter[int] = BackgroundWriter("test", lambda batch: (gate.wait(10), written.extend(batch)), max_queue=5)
    writer.start()
    assert writer.put(0)
    time.sleep(0.2)  # the writer has taken item 0 and waits at the gate
    results = [writer.put(i) for i in range(1, 11)]
    assert results == [True] * 5 + [False] * 5  # the request never waits
    assert writer.dropped == 5
    gate.set()
    writer.close()
    assert written == [0, 1, 2, 3, 4, 5]


def test_access_log_counts_what_it_drops(tmp_path: Path) -> None:
    log = AccessLog(tmp_path, max_queue=3)  # not started: nothing drains the queue
    for i in range(5):
        log.record({"ts": time.time(), "request_id": str(i)})
    assert log.dropped == 2
    log.start()
    log.close()
    assert [json.loads(line)["request_id"] for line in next(tmp_path.glob("*.jsonl")).read_text().splitlines()] == ["0", "1", "2"]


def test_masking_of_headers_query_and_folder_names() -> None:
    raw = [(b"Authorization", b"Bearer x"), (b"X-Api-Key", b"k"), (b"Cookie", b"a=b"), (b"Content-Type", b"application/json")]
    assert masked_headers(raw) == {"authorization": "***", "x-api-key": "***", "cookie": "***", "content-type": "application/json"}
    assert masked_query("token=abc&lines=5") == "token=%2A%2A%2A&lines=5"
    assert folder_name("..") == "_.." and folder_name("a:b") == "a_b"


def make_capture(root: Path, day: str, name: str, size: int, age_sec: float) -> Path:
    folder = root / day / name
    folder.mkdir(parents=True)
    (folder / "request.bin").write_bytes(b"x" * size)
    (folder / "meta.json").write_text("{}")
    when = time.time() - age_sec
    os.utime(folder, (when, when))
    return folder


def test_sweeper_removes_by_age_then_by_size(tmp_path: Path) -> None:
    ancient = make_capture(tmp_path, "2020-01-01", "ancient", 10, age_sec=30 * 86400)
    old = make_capture(tmp_path, "2026-01-01", "old", 600, age_sec=3000)
    mid = make_capture(tmp_path, "2026-01-01", "mid", 600, age_sec=2000)
    new = make_capture(tmp_path, "2026-01-02", "new", 600, age_sec=1000)
    result = sweep(tmp_path, max_age_sec=7 * 86400, max_bytes=1300)
    assert result["removed_by_age"] == 1 and result["removed_by_size"] == 1
    assert not ancient.exists() and not (tmp_path / "2020-01-01").exists()  # empty day folders go too
    assert not old.exists() and mid.exists() and new.exists()
