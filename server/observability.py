"""What the server tells about itself: the access log, the switches, and the tail of its own log.

- `AccessLog`: one JSON line per request in `<log dir>/access-YYYY-MM-DD.jsonl` (UTC).
  Routes add their own fields through `request.state.obs` (`model`, `extra`, `slot_wait_ms`).
- `Observability`: the access log, the metrics and the payload capture, with the
  run-time switches the dashboard flips (never persisted: a restart goes back
  to the settings).
- `LogTail`: the last lines of the server's own log, for the dashboard.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import logging
from pathlib import Path
from typing import Any

from models.core.settings import Settings
from server.background_writer import BackgroundWriter
from server.capture import PayloadCapture
from server.metrics import Metrics

log = logging.getLogger("aistack.server")
_encode = json.JSONEncoder(default=str).encode  # one encoder for every line: building one per call costs more

_CATEGORIES = (
    ("/v1/audio/transcriptions", "asr"),
    ("/v1/audio/translations", "asr"),
    ("/v1/audio/speech", "tts"),
    ("/v1/audio/voices", "tts"),
    ("/v1/chat/", "llm"),
    ("/v1/completions", "llm"),
    ("/v1/embeddings", "llm"),
    ("/v1/models", "models"),
    ("/admin", "admin"),
    ("/health", "health"),
    ("/dashboard", "dashboard"),
    ("/metrics", "metrics"),
    ("/docs", "docs"),
    ("/openapi.json", "docs"),
)


@functools.lru_cache(maxsize=4096)  # runs on every request; a service sees few distinct paths
def category_of(path: str) -> str:
    return next((name for prefix, name in _CATEGORIES if path.startswith(prefix)), "other")


class AccessLog:
    def __init__(self, folder: Path, enabled: bool = True, max_queue: int = 10_000):
        self.folder = folder
        self.enabled = enabled
        self.writer: BackgroundWriter[dict[str, Any]] = BackgroundWriter("aistack-access-log", self._write, max_queue)

    @property
    def dropped(self) -> int:
        return self.writer.dropped

    def start(self) -> None:
        self.writer.start()  # even when off: the dashboard can switch it on

    def record(self, entry: dict[str, Any]) -> None:
        if self.enabled:
            self.writer.put(entry)

    def close(self) -> None:
        self.writer.close()

    def path_for(self, when: float) -> Path:
        day = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d")
        return self.folder / f"access-{day}.jsonl"

    def tail(self, lines: int) -> list[dict[str, Any]]:
        """The last `lines` records of the newest file (read from its end, so a big file costs little)."""
        files = sorted(self.folder.glob("access-*.jsonl"))
        if not files:
            return []
        with files[-1].open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - lines * 2048))
            text = fh.read().decode("utf-8", errors="replace")
        records = []
        for line in text.splitlines()[-lines:]:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # the first line may be cut by the seek
        return records

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            by_day: dict[int, list[str]] = {}  # a batch nearly always falls in one UTC day
            for entry in batch:
                ts = float(entry.get("ts", 0))
                entry["ts"] = dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")
                by_day.setdefault(int(ts // 86400), []).append(_encode(entry))
            for day, lines in by_day.items():
                path = self.path_for(day * 86400.0)
                with path.open("a", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")
        except OSError as exc:
            log.warning("could not write the access log: %s", exc)


class Observability:
    """The three recorders a request feeds, and their run-time switches."""

    SWITCHES = ("metrics", "access_log", "payload")

    def __init__(self, access_log: AccessLog, metrics: Metrics, capture: PayloadCapture):
        self.access_log = access_log
        self.metrics = metrics
        self.capture = capture

    @classmethod
    def from_settings(cls, settings: Settings) -> Observability:
        return cls(
            AccessLog(settings.log_dir, enabled=settings.obs_access_log),
            Metrics(settings.obs_metrics_window_min * 60, enabled=settings.obs_metrics),
            PayloadCapture(
                settings.capture_dir, enabled=settings.obs_payload,
                body_cap_bytes=int(settings.obs_payload_body_max_mb * 2**20),
                max_bytes=int(settings.obs_payload_max_gb * 2**30), max_age_sec=settings.obs_payload_max_days * 86400,
            ),
        )

    def start(self) -> None:
        self.access_log.start()
        self.capture.start()

    def close(self) -> None:
        self.access_log.close()
        self.capture.close()

    def switches(self) -> dict[str, bool]:
        return {"metrics": self.metrics.enabled, "access_log": self.access_log.enabled, "payload": self.capture.enabled}

    def switch(self, name: str, on: bool) -> None:
        if name == "metrics":
            self.metrics.enabled = on
        elif name == "access_log":
            self.access_log.enabled = on
        elif name == "payload":
            self.capture.enabled = on
        else:
            raise ValueError(f"no switch named {name!r}")

    def describe(self) -> dict[str, Any]:
        return {
            **self.switches(),
            "access_log_dir": str(self.access_log.folder),
            "access_log_dropped": self.access_log.dropped,
            "payload_dir": str(self.capture.folder),
            "payload_dropped": self.capture.dropped,
            "metrics_window_min": self.metrics.window_sec / 60,
        }


class LogTail(logging.Handler):
    """Keeps the last lines of the `aistack` loggers in memory (the server may log to a console nobody sees)."""

    def __init__(self, size: int = 500):
        super().__init__(logging.INFO)
        self.lines: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except (TypeError, ValueError):  # a bad log call (wrong % arguments) must not break the request
            text = str(record.msg)
        self.lines.append({"ts": record.created, "level": record.levelname, "logger": record.name, "message": text})


_tail: LogTail | None = None


def server_log_tail() -> LogTail:
    """One handler per process on the `aistack` logger, however many apps are built (the tests build several)."""
    global _tail
    if _tail is None:
        _tail = LogTail()
        logging.getLogger("aistack").addHandler(_tail)  # gets what the chosen log level lets through
    return _tail
