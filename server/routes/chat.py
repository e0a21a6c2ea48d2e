"""Routes for the chat capability (being built: see the issue for chat)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
