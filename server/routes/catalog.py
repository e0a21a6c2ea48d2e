"""The catalog sized to this PC, downloads in flight, and adding any GGUF from Hugging Face.

GET /admin/api/catalog      every catalog model with its size, RAM/VRAM need, languages, licence, quality,
                            and `fit` (fits | tight | too big) for this machine; the recommended set.
GET /admin/api/downloads    every download the app knows: state, bytes, speed, time left, current file.
GET /admin/api/hf-quants    ?repo=owner/name: the repo's GGUF files by quant.
POST /admin/api/add-hf      {"repo": "owner/name", "quant": "Q4_K_M", "id": null}: download it (202).

Reading is open, like GET /admin/api/models; adding needs the admin token.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from models.hardware.fit import Hardware, fit, read_hardware, recommended
from models.store.download import prepare
from models.store.entries import CAPABILITIES, CatalogEntry, HubSource
from models.store.user_models import DEFAULT_QUANT, gguf_quants, hub_gguf_entry, parse_repo
from server.admin_token import require_admin
from server.jobs import manager_of
from server.routes.admin import downloads_of
from server.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/admin/api", tags=["admin"], responses=ERROR_RESPONSES)


def hardware_of(request: Request) -> Hardware:
    """RAM, free disk and the GPU (through the app's GPU probe when there is one)."""
    probe = getattr(request.app.state, "gpu_probe", None)
    if probe is None:
        from models.hardware.gpu import default_probe

        probe = default_probe()
    return read_hardware(manager_of(request).store.root, probe)


@router.get("/catalog")
async def catalog(request: Request) -> dict[str, Any]:
    """Every catalog model with what it needs and whether it fits this PC; the recommended set."""
    store = manager_of(request).store
    hw = await asyncio.to_thread(hardware_of, request)
    installed = {m.id for m in store.installed()}
    picks = recommended(store.catalog, hw)
    rows = [_entry_row(entry, hw, entry.id in installed, picks.get(entry.capability) == entry.id) for entry in store.catalog.entries]
    return {"object": "list", "hardware": hw.to_json(), "recommended": picks, "data": rows}


def _entry_row(entry: CatalogEntry, hw: Hardware, installed: bool, is_recommended: bool) -> dict[str, Any]:
    verdict, why = fit(entry, hw, installed=installed)
    source = entry.source
    return {
        "id": entry.id, "capability": entry.capability, "engine": entry.engine, "owned_by": entry.owned_by,
        "aliases": list(entry.aliases), "description": entry.description, "quality": entry.quality,
        "languages": list(entry.languages), "licence": entry.licence, "quant": entry.quant,
        "size_bytes": entry.size_bytes, "ram_bytes": entry.ram_bytes, "vram_bytes": entry.vram_bytes,
        "fit": verdict, "fit_reason": why, "recommended": is_recommended, "installed": installed, "starter": entry.starter,
        "source": {"repo": source.repo, "revision": source.revision} if isinstance(source, HubSource) else {"type": "pypi"},
    }


def first_run(request: Request) -> dict[str, Any]:
    """Per capability: is any model installed, and which one we recommend (GET /admin/api/status)."""
    store = manager_of(request).store
    picks = recommended(store.catalog, hardware_of(request))
    return {c: {"installed": bool(store.by_capability(c)), "recommended": picks.get(c)} for c in CAPABILITIES}


@router.get("/downloads")
async def downloads(request: Request) -> dict[str, Any]:
    """Every download in flight, failed, paused or cancelled since the app started."""
    return {"object": "list", "data": downloads_of(request).all()}


@router.get("/hf-quants")
async def hf_quants(repo: str) -> dict[str, Any]:
    """The single-file GGUFs of a Hugging Face repo, by quant."""
    name, _ = parse_repo(repo)
    quants = await asyncio.to_thread(gguf_quants, name)
    return {"repo": name, "default": DEFAULT_QUANT,
            "data": [{"quant": q, "file": path, "size_bytes": size} for q, (path, size) in quants.items()]}


class AddHf(BaseModel):
    repo: str
    quant: str | None = None
    file: str | None = None
    id: str | None = None
    revision: str = "main"


@router.post("/add-hf", status_code=202, dependencies=[Depends(require_admin)])
async def add_hf(body: AddHf, request: Request) -> JSONResponse:
    """Download a GGUF of any Hugging Face repo as a chat model, picked by quant (Q4_K_M by default) or file."""
    store, jobs = manager_of(request).store, downloads_of(request)
    repo, quant = parse_repo(body.repo)
    entry, intent = await asyncio.to_thread(hub_gguf_entry, store, repo, body.file, quant=body.quant or quant,
                                            model_id=body.id, revision=body.revision)
    if jobs.claim(entry.id, None, intent):
        try:
            work = await asyncio.to_thread(prepare, store, entry, intent=intent)
        except BaseException:
            jobs.release(entry.id)
            raise
        jobs.start(entry.id, work)
    return JSONResponse({"id": entry.id, "file": entry.files[0].source_path, **(jobs.status(entry.id) or {})}, status_code=202)


def resume_downloads(app: Any) -> list[str]:
    """App start-up: resume every unfinished download (not the paused ones) in the background."""
    from models.store.download_jobs import Downloads

    jobs: Downloads | None = getattr(app.state, "downloads", None)
    if jobs is None:
        jobs = app.state.downloads = Downloads()
    return jobs.resume_unfinished(app.state.store)
