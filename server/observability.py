"""Access log: one JSON line per request in `<log dir>/access-YYYY-MM-DD.jsonl` (UTC).

Records go on a queue and a background thread writes them, so a slow disk
never blocks a request. Routes add their own fields through
`request.state.obs` (`model`, `extra`, `slot_wait_ms`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("aistack.server")

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
)


def category_of(path: str) -> str:
    return next((name for prefix, name in _CATEGORIES if path.startswith(prefix)), "other")


class AccessLog:
    def __init__(self, folder: Path, enabled: bool = True):
        self.folder = folder
        self.enabled = enabled
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._write_forever, name="aistack-access-log", daemon=True)
            self._thread.start()

    def record(self, entry: dict[str, Any]) -> None:
        if self.enabled:
            self._queue.put(entry)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def path_for(self, when: float) -> Path:
        day = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d")
        return self.folder / f"access-{day}.jsonl"

    def _write_forever(self) -> None:
        while (entry := self._queue.get()) is not None:
            batch = [entry]
            while True:  # drain what else is waiting: one open/write per burst
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._write(batch)
                    return
                batch.append(more)
            self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            by_file: dict[Path, list[str]] = {}
            for entry in batch:
                ts = float(entry.get("ts", 0))
                line = {**entry, "ts": dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")}
                by_file.setdefault(self.path_for(ts), []).append(json.dumps(line, default=str))
            for path, lines in by_file.items():
                with path.open("a", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")
        except OSError as exc:
            log.warning("could not write the access log: %s", exc)
