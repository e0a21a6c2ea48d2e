"""Admin API: the catalog with installed, downloading and loaded state; install, delete, load, unload.

Reading is open (it is what the dashboard and tray show); changing state needs the admin token.
Installs run in background threads (models.store.download_jobs); the catalog rows show their progress.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from models.core.errors import Conflict, Malformed
from models.runtime.status import model_status
from models.store.download import prepare
from models.store.download_jobs import Downloads
from models.store.model_store import validate_model_id
from server.admin_token import require_admin
from server.jobs import manager_of, obs_of
from server.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/admin/api", tags=["admin"], responses=ERROR_RESPONSES)


@router.get("/models")
async def catalog(request: Request) -> dict[str, Any]:
    """Every catalog model and every installed model, with install and load state."""
    manager, downloads = manager_of(request), downloads_of(request)
    installed = {m.id: m for m in manager.store.installed()}
    rows: list[dict[str, Any]] = []
    for entry in manager.store.catalog.entries:
        rows.append({"id": entry.id, "capability": entry.capability, "engine": entry.engine, "owned_by": entry.owned_by,
                     "size_bytes": entry.size_bytes, "installed": entry.id in installed, "starter": entry.starter,
                     "aliases": list(entry.aliases), "description": entry.description})
    known = {entry.id for entry in manager.store.catalog.entries}
    for model in installed.values():
        if model.id not in known:  # imported or added by the user
            rows.append({"id": model.id, "capability": model.capability, "engine": model.engine, "owned_by": model.owned_by,
                         "size_bytes": model.size_bytes, "installed": True, "starter": False, "aliases": [],
                         "description": str(model.manifest.get("description", ""))})
    for row in rows:
        row.update(engine_available=manager.engine_available(row["engine"]), **model_status(manager, downloads, row["id"]))
    return {"object": "list", "data": rows}


def downloads_of(request: Request) -> Downloads:
    """The app's install registry, made on first use."""
    downloads: Downloads | None = getattr(request.app.state, "downloads", None)
    if downloads is None:
        downloads = request.app.state.downloads = Downloads()
    return downloads


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


@router.post("/models/{model_id}/install", status_code=202, dependencies=[Depends(require_admin)])
async def install(model_id: str, request: Request) -> JSONResponse:
    """Start installing a catalog model in the background (202); its row shows the progress.

    Asking again while it downloads returns the current state; an installed model answers 200.
    """
    manager, downloads = manager_of(request), downloads_of(request)
    entry = manager.store.catalog.get(validate_model_id(model_id))
    if entry is None:
        raise Malformed(f"'{model_id}' is not a catalog model. GET /admin/api/models lists them; "
                        "`aistack models add-hf` adds any GGUF file from Hugging Face.")
    obs_of(request)["model"] = entry.id
    if manager.store.get(entry.id) is not None:
        return JSONResponse({"id": entry.id, **manager.status(entry.id)}, status_code=200)
    if downloads.claim(entry.id, entry.size_bytes, {"id": entry.id, "catalog": True}):
        try:
            # Asking the hub about the files is quick, and a wrong repo or no network is best said now.
            work = await asyncio.to_thread(prepare, manager.store, entry)
        except BaseException:
            downloads.release(entry.id)
            raise
        downloads.start(entry.id, work)
    return JSONResponse({"id": entry.id, **(downloads.status(entry.id) or {})}, status_code=202)


@router.delete("/models/{model_id}", dependencies=[Depends(require_admin)])
async def delete(model_id: str, request: Request, partial: Literal["discard", "keep"] = "discard") -> dict[str, Any]:
    """Delete an installed model (409 while it is loaded: unload it first), or stop a download.

    A stopped download's partial files are discarded, or kept with `?partial=keep` (paused: installing
    again continues from them).
    """
    manager, downloads = manager_of(request), downloads_of(request)
    validate_model_id(model_id)
    model = manager.store.find(model_id)
    obs_of(request)["model"] = model.id if model else model_id
    if model is None:
        entry = manager.store.catalog.get(model_id)
        target = entry.id if entry else model_id
        keep = partial == "keep"
        if not await asyncio.to_thread(downloads.cancel, target, manager.store, keep_partial=keep):
            raise Malformed(f"Model '{model_id}' is not installed.")
        return {"id": target, "installed": False, "state": "available", "partial": "kept" if keep else "discarded"}
    status = manager.status(model.id)
    if status["state"] != "installed" or status.get("busy"):
        raise Conflict(f"Model {model.id} is {status['state']}. Unload it first "
                       f"(POST /admin/api/models/{model.id}/unload), then delete it.")
    await asyncio.to_thread(manager.store.remove, model.id)
    return {"id": model.id, "installed": False, "state": "available"}
