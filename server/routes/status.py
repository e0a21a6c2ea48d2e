"""GET /admin/api/status: one page of truth for the tray and the dashboard.

Version, address, uptime, RAM, the GPU (or why there is none), game mode, and
one row per installed model (and per download in flight) with where it runs
and how much memory it holds. Reading is open, like GET /admin/api/models.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from models.hardware.game_mode import GameMode, attach
from models.hardware.gpu import GpuProbe, GpuProcess, default_probe
from models.runtime.manager import Manager
from server.admin_token import require_admin
from server.jobs import manager_of
from server.routes.catalog import first_run
from server.schemas import ERROR_RESPONSES
from server.version import VERSION

router = APIRouter(prefix="/admin/api", tags=["admin"], responses=ERROR_RESPONSES)

_STATUS_KEYS = ("state", "loaded", "pinned", "busy", "queued", "slots", "device", "device_detail", "device_reason", "runner_pid",
                "memory_bytes", "expires_in_sec", "error", "download")


def gpu_probe_of(request: Request) -> GpuProbe:
    """The app's GPU probe (tests put a fake one on app.state)."""
    probe: GpuProbe | None = getattr(request.app.state, "gpu_probe", None)
    return probe if probe is not None else default_probe()


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    """Version, uptime, RAM, GPU, game mode and every model's state, device and memory."""
    import psutil

    settings = request.app.state.settings
    gpu = await asyncio.to_thread(gpu_probe_of(request).read)
    memory = psutil.virtual_memory()
    started = getattr(request.app.state, "started_at", None)
    return {
        "app": "aistack",
        "version": VERSION,
        "address": settings.base_url,
        "uptime_sec": round(time.monotonic() - started, 1) if started is not None else None,
        "warnings": list(getattr(request.app.state, "warnings", [])),
        "system": {"cpu_count": psutil.cpu_count(), "ram_total_bytes": memory.total, "ram_available_bytes": memory.available},
        "gpu": gpu.to_json(),
        "game_mode": _game_mode(request),
        "models": _with_vram(model_rows(request), gpu.processes),
        "first_run": await asyncio.to_thread(first_run, request),
    }


def _game_mode(request: Request) -> dict[str, Any]:
    game_mode = getattr(request.app.state, "game_mode", None)
    if game_mode is not None:
        state: dict[str, Any] = game_mode.status()
        return state
    return {"enabled": False, "active": False, "reason": None}


def model_rows(request: Request) -> list[dict[str, Any]]:
    """Every installed model, then every catalog model being downloaded."""
    manager = manager_of(request)
    rows = []
    installed = manager.store.installed()
    for model in installed:
        rows.append(_row(model.id, model.capability, model.engine, manager.status(model.id)))
    downloads = getattr(request.app.state, "downloads", None)
    if downloads is not None:
        have = {m.id for m in installed}
        for entry in manager.store.catalog.entries:
            state = downloads.status(entry.id) if entry.id not in have else None
            if state and state.get("state") not in (None, "available"):
                rows.append(_row(entry.id, entry.capability, entry.engine, state))
    return rows


def _row(model_id: str, capability: str, engine: str, status: dict[str, Any]) -> dict[str, Any]:
    info = status.get("info") or {}
    row: dict[str, Any] = {"id": model_id, "capability": capability, "engine": engine}
    for key in _STATUS_KEYS:
        row[key] = status.get(key, info.get(key))
    row["loaded"] = bool(row["loaded"])
    row["pinned"] = bool(row["pinned"])
    row["busy"] = bool(row["busy"])
    row["queued"] = int(row["queued"] or 0)
    if row["memory_bytes"] is None and row["runner_pid"]:
        row["memory_bytes"] = _rss(int(row["runner_pid"]))
    return row


def _with_vram(rows: list[dict[str, Any]], processes: list[GpuProcess]) -> list[dict[str, Any]]:
    """Each row's GPU memory, from NVML's process list (null where the model is not on the GPU or NVML cannot say)."""
    by_pid = {p.pid: p.used_bytes for p in processes}
    for row in rows:
        row["vram_bytes"] = by_pid.get(row["runner_pid"]) if row.get("runner_pid") else None
    return rows


def _rss(pid: int) -> int | None:
    """The runner's resident memory (RAM; VRAM is in the GPU's process list)."""
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.Error, OSError):
        return None


class GameModeSwitch(BaseModel):
    enabled: bool = Field(description="Turn game mode on (watch the GPU and step aside for games) or off.")


@router.post("/game-mode", dependencies=[Depends(require_admin)])
async def switch_game_mode(body: GameModeSwitch, request: Request) -> dict[str, Any]:
    """Turn game mode on or off now (the tray's check item); lasts until restart, AISTACK_GAME_MODE sets the default."""
    game_mode: GameMode = request.app.state.game_mode
    return await game_mode.set_enabled(body.enabled)


def start_game_mode(app: Any, manager: Manager) -> GameMode:
    """Give the manager the GPU probe (VRAM placement), create game mode, hook it into the manager's loads, start it."""
    probe = getattr(app.state, "gpu_probe", None) or default_probe()
    manager.gpu = probe
    game_mode = GameMode.from_settings(probe, manager, app.state.settings)
    attach(manager, game_mode)
    app.state.game_mode = game_mode
    game_mode.start()
    return game_mode
