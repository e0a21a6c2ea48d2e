"""The FastAPI app factory."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from models.manager import Manager
from models.settings import Settings
from models.store import ModelStore
from server.admin_token import ensure_admin_token
from server.errors import install_error_handlers
from server.middleware import EdgeMiddleware
from server.observability import AccessLog
from server.version import VERSION

log = logging.getLogger("aistack.server")


def create_app(settings: Settings, *, engines: dict[str, str] | None = None) -> FastAPI:
    """Build the app. `engines` adds engine classes by name (the tests add small ones)."""
    store = ModelStore(settings.models_dir)
    access_log = AccessLog(settings.log_dir, enabled=settings.obs_access_log)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager = Manager(store, settings, engines=engines)
        app.state.manager = manager
        await manager.start()
        from server.routes.catalog import resume_downloads

        resume_downloads(app)  # unfinished downloads continue by themselves
        access_log.start()
        try:
            yield
        finally:
            await manager.close()
            access_log.close()

    app = FastAPI(
        title="aistack",
        version=VERSION,
        description="Local speech to text, text to speech and chat, OpenAI-compatible. Errors use one envelope.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.started_at = time.monotonic()
    app.state.store = store
    app.state.admin_token = ensure_admin_token(settings.data_dir)
    install_error_handlers(app)

    from server.routes import admin, asr, catalog, chat, health, models, status, tts

    for module in (health, models, asr, tts, chat, admin, status, catalog):
        app.include_router(module.router)
    app.add_middleware(EdgeMiddleware, settings=settings, access_log=access_log)
    return app
