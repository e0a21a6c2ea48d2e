"""Installs running in the background, one per model: what the admin API, dashboard and tray show.

The download itself runs in a daemon thread, not in the event loop's executor:
a multi-gigabyte download must neither block requests nor hold up quitting
the app (Python waits for executor threads at exit). A download cut short by
quitting leaves its partial files, and the app resumes it when it starts again
(`resume_unfinished`). Cancelling keeps the partial (paused) or discards it.

Where to read it: `Downloads.status(model_id)` gives a model status row's
`state`, `error` and `download` ({state, bytes_done, bytes_total, speed_bps,
eta_sec, current_file}); `Downloads.all()` lists every download the app knows.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from models.core.errors import AistackError, Cancelled
from models.store.download import Work, discard_partial, prepare, unfinished, write_intent
from models.store.model_store import ModelStore
from models.store.progress import DownloadProgress

log = logging.getLogger("aistack.download")

# The model row's state for each download state (INTERFACES.md: the model status row).
_ROW_STATE = {"queued": "queued", "downloading": "downloading", "verifying": "verifying", "done": "installed",
              "failed": "failed", "cancelled": "available", "paused": "available"}


@dataclass
class _Job:
    model_id: str
    progress: DownloadProgress
    intent: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.progress.state in ("queued", "downloading", "verifying")


class Downloads:
    """The registry of installs in flight, failed or paused. Thread-safe; cheap to query."""

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def status(self, model_id: str) -> dict[str, Any] | None:
        """The row fields for a model being (or last) downloaded; None when there is no such download."""
        job = self._jobs.get(model_id)
        if job is None:
            return None
        snap = job.progress.snapshot()
        return {"state": _ROW_STATE[snap["state"]], "loaded": False, "error": job.progress.error, "download": snap}

    def all(self) -> list[dict[str, Any]]:
        return [{"id": job.model_id, **job.progress.snapshot(), "error": job.progress.error} for job in list(self._jobs.values())]

    def claim(self, model_id: str, total: int | None, intent: dict[str, Any] | None = None) -> bool:
        """Reserve the model for one install. False when one is already running."""
        with self._lock:
            job = self._jobs.get(model_id)
            if job is not None and job.running:
                return False
            self._jobs[model_id] = _Job(model_id, DownloadProgress(total), intent)
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
            if job.progress.state != "paused":
                job.progress.finish("cancelled")
            return
        except AistackError as exc:
            log.warning("install of %s failed: %s", job.model_id, exc.message)
            job.progress.finish("failed", exc.message)
            return
        except Exception:
            log.exception("install of %s failed", job.model_id)
            job.progress.finish("failed", "The install failed unexpectedly; the aistack log has the details.")
            return
        log.info("installed %s", job.model_id)
        job.progress.finish("done")
        self.release(job.model_id)

    def cancel(self, model_id: str, store: ModelStore, *, keep_partial: bool = False, timeout: float = 30) -> bool:
        """Stop a download and wait for its thread; keep its partial (paused) or discard it.

        True when there was a download (running, failed or paused) or a partial on disk.
        """
        job = self._jobs.get(model_id)
        if job is not None:
            if keep_partial:
                job.progress.finish("paused")
            job.cancel.set()
            if job.thread is not None:
                job.thread.join(timeout)
        if keep_partial:
            write_intent(store, model_id, (job.intent if job and job.intent else {"id": model_id, "catalog": True}), paused=True)
            return job is not None or store.partial_dir(model_id).exists()
        self.release(model_id)
        return discard_partial(store, model_id) or job is not None

    def resume_unfinished(self, store: ModelStore) -> list[str]:
        """Start again every download the app was doing when it stopped (app start-up). Returns their ids."""
        from models.store.user_models import entry_from_intent

        started = []
        for intent in unfinished(store):
            entry = entry_from_intent(store, intent)
            if entry is None or not self.claim(entry.id, entry.size_bytes, intent):
                continue
            thread = threading.Thread(target=self._prepare_and_run, args=(store, entry, intent),
                                      name=f"aistack-resume-{entry.id}", daemon=True)
            thread.start()
            started.append(entry.id)
        return started

    def _prepare_and_run(self, store: ModelStore, entry: Any, intent: dict[str, Any]) -> None:
        """Resume one download; asking the hub first can fail (offline), and then the row says so."""
        job = self._jobs[entry.id]
        try:
            work = prepare(store, entry, intent=intent)
        except AistackError as exc:
            log.warning("could not resume the download of %s: %s", entry.id, exc.message)
            job.progress.finish("failed", exc.message)
            return
        job.thread = threading.current_thread()
        self._run(job, work)
