"""Request metrics kept in memory: per category, over a rolling window, plus totals since start.

Recording is an append and a few counter bumps (it runs on every request);
all the arithmetic (percentiles, histogram, rates) happens when someone reads
the numbers. The window answers "how is it doing now" for the dashboard and
`/admin/api/metrics`; the totals since start feed Prometheus, whose counters
must never go down.
"""

from __future__ import annotations

import bisect
import collections
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

CLASSES = ("2xx", "4xx", "5xx", "503-busy", "client-disconnect")
CATEGORIES = ("asr", "tts", "llm", "models", "admin")
# Upper bounds in milliseconds; the last bucket takes everything slower.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000, 300_000, math.inf)
RECENT = 100
MAX_WINDOW_SAMPLES = 100_000  # per category: bounds memory even under a flood


def status_class(status: int, busy: bool = False) -> str:
    """The class a response counts in. Busy is a 503 with Retry-After: a full slot, not a failure."""
    if status == 499:
        return "client-disconnect"
    if status == 503 and busy:
        return "503-busy"
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    return "2xx"


@dataclass(slots=True)
class Sample:
    ts: float
    request_id: str
    category: str
    method: str
    path: str
    status: int
    status_class: str
    latency_ms: float
    slot_wait_ms: float | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: a value that was really seen."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "max": ordered[-1] if ordered else None,
    }


class Since:
    """Totals since the server started, for Prometheus: counts by class and a cumulative latency histogram."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.buckets: dict[str, list[int]] = {}
        self.latency_sum_ms: dict[str, float] = collections.defaultdict(float)

    def add(self, sample: Sample) -> None:
        self.counts[(sample.category, sample.status_class)] += 1
        buckets = self.buckets.get(sample.category)
        if buckets is None:
            buckets = self.buckets[sample.category] = [0] * len(LATENCY_BUCKETS_MS)
        buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, sample.latency_ms)] += 1
        self.latency_sum_ms[sample.category] += sample.latency_ms


class Metrics:
    """Per-category samples over the last `window_sec`, and totals since start."""

    def __init__(self, window_sec: float = 3600, enabled: bool = True):
        self.window_sec = window_sec
        self.enabled = enabled
        self.started = time.time()
        self.since = Since()
        self._window: dict[str, collections.deque[Sample]] = {}
        self._recent: collections.deque[Sample] = collections.deque(maxlen=RECENT)

    def record(self, sample: Sample) -> None:
        if not self.enabled:
            return
        self.since.add(sample)
        if sample.category in CATEGORIES and not (sample.category == "admin" and sample.method in ("GET", "HEAD")):
            self._recent.append(sample)  # the dashboard's own polling would push every real request out
        samples = self._window.get(sample.category)
        if samples is None:
            samples = self._window[sample.category] = collections.deque(maxlen=MAX_WINDOW_SAMPLES)
        samples.append(sample)
        self._expire(samples, sample.ts)

    def _expire(self, samples: collections.deque[Sample], now: float) -> None:
        oldest = now - self.window_sec
        while samples and samples[0].ts < oldest:
            samples.popleft()

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The JSON of GET /admin/api/metrics."""
        now = time.time() if now is None else now
        for samples in self._window.values():
            self._expire(samples, now)
        names = [*CATEGORIES, *sorted(set(self._window) - set(CATEGORIES))]
        covered_min = max(min(self.window_sec, now - self.started), 1.0) / 60
        every = [s for name in names for s in self._window.get(name, ())]
        return {
            "enabled": self.enabled,
            "window_min": self.window_sec / 60,
            "uptime_sec": round(now - self.started, 1),
            "histogram_buckets_ms": [b if b != math.inf else None for b in LATENCY_BUCKETS_MS],
            "all": self._category_numbers(every, covered_min),
            "categories": {name: self._category_numbers(list(self._window.get(name, ())), covered_min) for name in names},
            "recent": [asdict(s) for s in reversed(self._recent)],
        }

    @staticmethod
    def _category_numbers(samples: list[Sample], covered_min: float) -> dict[str, Any]:
        classes = dict.fromkeys(CLASSES, 0)
        histogram = [0] * len(LATENCY_BUCKETS_MS)
        for s in samples:
            classes[s.status_class] = classes.get(s.status_class, 0) + 1
            histogram[bisect.bisect_left(LATENCY_BUCKETS_MS, s.latency_ms)] += 1
        total = len(samples)
        errors = classes["4xx"] + classes["5xx"]  # busy and client hang-ups are not the server failing
        waits = [s.slot_wait_ms for s in samples if s.slot_wait_ms is not None]
        return {
            "total": total,
            "classes": classes,
            "errors": errors,
            "error_rate": round(errors / total, 4) if total else 0.0,
            "throughput_per_min": round(total / covered_min, 3),
            "latency_ms": summary([s.latency_ms for s in samples]),
            "latency_histogram": histogram,
            "slot_wait_ms": summary(waits),
            "recent": [asdict(s) for s in samples[-10:][::-1]],
        }


def prometheus_text(metrics: Metrics, loaded: dict[str, int], gpu: Any, dropped: int) -> tuple[bytes, str]:
    """The Prometheus exposition of the totals since start (counters never go down, as Prometheus needs)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    since = metrics.since
    uptime = GaugeMetricFamily("aistack_uptime_seconds", "Seconds since the server started.")
    uptime.add_metric([], time.time() - metrics.started)
    requests = CounterMetricFamily("aistack_requests", "Requests by category and class.", labels=["category", "class"])
    for (category, cls), count in sorted(since.counts.items()):
        requests.add_metric([category, cls], count)
    latency = HistogramMetricFamily("aistack_request_duration_seconds", "Request latency.", labels=["category"])
    for category, buckets in sorted(since.buckets.items()):
        cumulative, running = [], 0
        for bound, count in zip(LATENCY_BUCKETS_MS, buckets, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == math.inf else repr(bound / 1000), running))
        latency.add_metric([category], cumulative, since.latency_sum_ms[category] / 1000)
    models = GaugeMetricFamily("aistack_models_loaded", "Models loaded now, by capability.", labels=["capability"])
    for capability in ("asr", "tts", "llm"):
        models.add_metric([capability], loaded.get(capability, 0))
    lost = CounterMetricFamily("aistack_access_log_dropped", "Access-log records dropped because the writer fell behind.")
    lost.add_metric([], dropped)
    families = [uptime, requests, latency, models, lost]
    if getattr(gpu, "memory_total_bytes", None) is not None:
        total = GaugeMetricFamily("aistack_gpu_memory_total_bytes", "GPU memory in all.", labels=["gpu"])
        used = GaugeMetricFamily("aistack_gpu_memory_used_bytes", "GPU memory in use (every process).", labels=["gpu"])
        total.add_metric([gpu.name or "0"], gpu.memory_total_bytes)
        used.add_metric([gpu.name or "0"], gpu.memory_used_bytes or 0)
        families += [total, used]

    class Snapshot:
        def collect(self) -> Any:
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    return generate_latest(registry), CONTENT_TYPE_LATEST
