"""Installs running in the background, one per model: what the admin API, dashboard and tray show.

The download itself runs in a daemon thread, not in the event loop's executor:
a multi-gigabyte download must neither block requests nor hold up quitting
the app (Python waits for executor threads at exit). A download cut short by
quitting leaves its partial files, and the next install continues from them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from models.download import Work
from models.errors import AistackError, Cancelled

log = logging.getLogger("aistack.download")


@dataclass
class _Job:
    model_id: str
    done: int = 0
    total: int | None = None
    running: bool = True
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def progress(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total


class Downloads:
    """The registry of installs in flight or failed. Thread-safe; cheap to query."""

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def status(self, model_id: str) -> dict[str, Any] | None:
        """`downloading` with progress, or the error of the last failed try; None when there is neither."""
        job = self._jobs.get(model_id)
        if job is None:
            return None
        if job.running:
            return {"state": "downloading", "loaded": False, "progress": {"done": job.done, "total": job.total}}
        return {"state": "available", "loaded": False, "error": job.error}

    def claim(self, model_id: str, total: int | None) -> bool:
        """Reserve the model for one install. False when one is already running."""
        with self._lock:
            job = self._jobs.get(model_id)
            if job is not None and job.running:
                return False
            self._jobs[model_id] = _Job(model_id, total=total)
            return True

    def release(self, model_id: str) -> None:
        """Forget a claim whose install never started (its preparation failed and said why)."""
        with self._lock:
            self._jobs.pop(model_id, None)

    def start(self, model_id: str, work: Work) -> None:
        """Run a claimed install in its thread."""
        job = self._jobs[model_id]
        job.thread = threading.Thread(target=self._run, args=(job, work), name=f"aistack-install-{model_id}", daemon=True)
        job.thread.start()

    def _run(self, job: _Job, work: Work) -> None:
        try:
            work(job.progress, job.cancel)
        except Cancelled:
            self.release(job.model_id)
            return
        except AistackError as exc:
            log.warning("install of %s failed: %s", job.model_id, exc.message)
            job.error = exc.message
        except Exception:
            log.exception("install of %s failed", job.model_id)
            job.error = "The install failed unexpectedly; the aistack log has the details."
        else:
            log.info("installed %s", job.model_id)
            self.release(job.model_id)
            return
        job.running = False

    def cancel(self, model_id: str, timeout: float = 30) -> bool:
        """Stop a running install and wait for its thread. True when one was running or had failed."""
        job = self._jobs.get(model_id)
        if job is None:
            return False
        job.cancel.set()
        if job.thread is not None:
            job.thread.join(timeout)
        self.release(model_id)
        return True
