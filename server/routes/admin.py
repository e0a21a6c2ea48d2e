"""Admin API: the catalog with installed and loaded state, and load/unload.

Reading is open (it is what the dashboard and tray show); changing state needs the admin token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from models.errors import Malformed
from models.store import validate_model_id
from server.admin_token import require_admin
from server.jobs import manager_of, obs_of
from server.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/admin/api", tags=["admin"], responses=ERROR_RESPONSES)


@router.get("/models")
async def catalog(request: Request) -> dict[str, Any]:
    """Every catalog model and every installed model, with install and load state."""
    manager = manager_of(request)
    installed = {m.id: m for m in manager.store.installed()}
    rows: list[dict[str, Any]] = []
    for entry in manager.store.catalog.entries:
        rows.append(_row(manager, entry.id, entry.capability, entry.engine, entry.owned_by, entry.size_bytes,
                         installed.get(entry.id) is not None, entry.starter, list(entry.aliases), entry.description))
    known = {entry.id for entry in manager.store.catalog.entries}
    for model in installed.values():
        if model.id not in known:  # imported or added by the user
            rows.append(_row(manager, model.id, model.capability, model.engine, model.owned_by, model.size_bytes,
                             True, False, [], str(model.manifest.get("description", ""))))
    return {"object": "list", "data": rows}


def _row(manager: Any, model_id: str, capability: str, engine: str, owned_by: str, size: int | None,
         installed: bool, starter: bool, aliases: list[str], description: str) -> dict[str, Any]:
    status = manager.status(model_id) if installed else {"state": "available", "loaded": False}
    return {
        "id": model_id, "capability": capability, "engine": engine, "owned_by": owned_by, "size_bytes": size,
        "installed": installed, "starter": starter, "aliases": aliases, "description": description,
        "engine_available": manager.engine_available(engine), **status,
    }


@router.post("/models/{model_id}/load", dependencies=[Depends(require_admin)])
async def load(model_id: str, request: Request) -> dict[str, Any]:
    """Load a model and keep it until it is unloaded."""
    manager = manager_of(request)
    validate_model_id(model_id)
    if manager.store.get(model_id) is None:
        raise Malformed(f"Model '{model_id}' is not installed.")
    obs_of(request)["model"] = model_id
    return {"id": model_id, **await manager.load(model_id, pinned=True)}


@router.post("/models/{model_id}/unload", dependencies=[Depends(require_admin)])
async def unload(model_id: str, request: Request) -> dict[str, Any]:
    """Unload a model now: its runner process exits and its memory comes back."""
    manager = manager_of(request)
    validate_model_id(model_id)
    if manager.store.get(model_id) is None:
        raise Malformed(f"Model '{model_id}' is not installed.")
    obs_of(request)["model"] = model_id
    return {"id": model_id, **await manager.unload(model_id)}


@router.post("/unload-all", dependencies=[Depends(require_admin)])
async def unload_all(request: Request) -> dict[str, Any]:
    """Free all model memory at once (the tray's "Free GPU memory")."""
    await manager_of(request).unload_all()
    return {"status": "ok"}
