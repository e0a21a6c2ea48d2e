"""One status row per model: what the admin API, the tray and the dashboard show.

A model's state has two owners, each the only writer of its part: the
downloads (`available`, `queued`, `downloading`, `verifying`, `failed`, with
progress) until the model is installed, then the manager (`installed`,
`loading`, `loaded` with device, pid and memory, `unloading`, `failed` with the
reason). This module is the one place that puts the two together, in the row
shape INTERFACES.md fixes.
"""

from __future__ import annotations

from typing import Any, Protocol

from models.runtime.manager import Manager

ROW_KEYS = (
    "state", "loaded", "pinned", "busy", "queued", "slots", "device", "device_detail", "runner_pid", "memory_bytes",
    "expires_in_sec", "error", "download", "info",
)


class DownloadStatus(Protocol):
    def status(self, model_id: str) -> dict[str, Any] | None:
        """A download's row fields (`state`, `error`, `download` progress); None when there is none."""
        ...


def model_status(manager: Manager, downloads: DownloadStatus | None, model_id: str) -> dict[str, Any]:
    """The status of one model, installed or not: the fields of ROW_KEYS."""
    if manager.store.get(model_id) is not None:
        row = manager.status(model_id)
        row["download"] = None
    else:
        row = (downloads.status(model_id) if downloads is not None else None) or {"state": "available"}
    return {key: row.get(key, _EMPTY.get(key)) for key in ROW_KEYS}


def model_rows(manager: Manager, downloads: DownloadStatus | None) -> list[dict[str, Any]]:
    """Every installed model, then every catalog model with a download in flight or failed."""
    installed = manager.store.installed()
    rows = [{"id": m.id, "capability": m.capability, "engine": m.engine, **model_status(manager, downloads, m.id)}
            for m in installed]
    have = {m.id for m in installed}
    for entry in manager.store.catalog.entries:
        if entry.id not in have:
            status = model_status(manager, downloads, entry.id)
            if status["state"] != "available":
                rows.append({"id": entry.id, "capability": entry.capability, "engine": entry.engine, **status})
    return rows


# `info` is what a loaded engine said about itself (compute type, CPU fallback reason...).
_EMPTY: dict[str, Any] = {"loaded": False, "pinned": False, "busy": False, "queued": 0, "info": {}}
