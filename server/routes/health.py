"""GET /health: the process is up (it certifies no model)."""

from __future__ import annotations

from fastapi import APIRouter

from server.schemas import Health
from server.version import VERSION

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health(version=VERSION, app="aistack")
