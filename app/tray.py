"""The tray icon. Until the tray lands, `aistack` alone runs the server headless and says so."""

from __future__ import annotations

import logging

from models.settings import Settings

log = logging.getLogger("aistack.app")


def run_tray_or_headless(settings: Settings) -> int:
    from app.serving import serve_forever

    log.warning("The tray icon is not available in this build; running headless. Use `aistack serve` to say so.")
    return serve_forever(settings)
