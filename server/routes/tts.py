"""Routes for the tts capability (being built: see the issue for tts)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
