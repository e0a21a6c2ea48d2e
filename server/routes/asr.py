"""Routes for the asr capability (being built: see the issue for asr)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
