"""The FastAPI app factory."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from models.core.settings import Settings
from models.runtime.manager import Manager
from models.store.model_store import ModelStore
from server.admin_token import ensure_admin_token
from server.errors import install_error_handlers
from server.middleware import EdgeMiddleware
from server.observability import Observability, server_log_tail
from server.version import VERSION

log = logging.getLogger("aistack.server")


def create_app(settings: Settings, *, engines: dict[str, str] | None = None) -> FastAPI:
    """Build the app. `engines` adds engine classes by name (the tests add small ones)."""
    store = ModelStore(settings.models_dir)
    observability = Observability.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager = Manager(store, settings, engines=engines)
        app.state.manager = manager
        await manager.start()
        from server.routes.status import start_game_mode

        game_mode = start_game_mode(app, manager)
        from server.routes.catalog import resume_downloads

        resume_downloads(app)  # unfinished downloads continue by themselves
        observability.start()
        try:
            yield
        finally:
            await game_mode.close()
            await manager.close()
            observability.close()

    app = FastAPI(
        title="aistack",
        version=VERSION,
        description="Local speech to text, text to speech and chat, OpenAI-compatible. Errors use one envelope.",
        lifespan=lifespan,
        docs_url=None,  # served offline by server.routes.docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.started_at = time.monotonic()
    app.state.store = store
    app.state.admin_token = ensure_admin_token(settings.data_dir)
    app.state.observability = observability
    server_log_tail()
    install_error_handlers(app)

    from server.routes import admin, asr, catalog, chat, health, models, status, tts

    for module in (health, models, asr, tts, chat, admin, status, catalog):
        app.include_router(module.router)
    from server.routes import dashboard, docs
    from server.routes import observability as observability_routes

    app.include_router(observability_routes.router)
    dashboard.mount_dashboard(app)
    docs.mount_docs(app)
    app.add_middleware(EdgeMiddleware, settings=settings, observability=observability)
    return app
