"""GET /v1/models: what can be served right now (installed, engine importable), plus routing aliases."""

from __future__ import annotations

from fastapi import APIRouter, Request

from models.naming.aliases import ROUTING_ALIASES
from models.runtime.manager import Manager
from models.store.entries import CAPABILITIES
from server.jobs import manager_of
from server.schemas import ERROR_RESPONSES, ModelEntry, ModelList

router = APIRouter(tags=["models"])


def model_entries(manager: Manager) -> list[ModelEntry]:
    servable = manager.servable()
    entries: list[ModelEntry] = []
    for capability in CAPABILITIES:
        members = [m for m in servable if m.capability == capability]
        if members:
            entries += [
                ModelEntry(id=alias, owned_by="aistack", capabilities=[capability], is_routing_alias=True,
                           supports_streaming=True, resolves_to=[m.id for m in members])
                for alias in ROUTING_ALIASES.get(capability, ())
            ]
    for model in servable:
        status = manager.status(model.id)
        entries.append(
            ModelEntry(
                id=model.id,
                owned_by=model.owned_by,
                capabilities=[model.capability],
                languages=model.languages if model.capability == "asr" else None,
                is_routing_alias=False,
                supports_streaming=True,
                loaded=status["loaded"],
                state=status["state"],
                device=status.get("device"),
                size_bytes=model.size_bytes,
            )
        )
    return entries


@router.get("/v1/models", response_model=ModelList, response_model_exclude_none=True, responses=ERROR_RESPONSES)
async def list_models(request: Request) -> ModelList:
    return ModelList(data=model_entries(manager_of(request)))
