"""/docs and /redoc that work offline.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a PC without
internet (or behind a strict firewall) they are blank. The same pages here
load those scripts from the `fastapi-offline` package, which ships them
(Swagger UI 5, which reads the OpenAPI 3.1 schema FastAPI writes).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs/static"
router = APIRouter(include_in_schema=False)


def swagger_files() -> Path:
    return Path(str(importlib.resources.files("fastapi_offline") / "static"))


def mount_docs(app: FastAPI) -> None:
    """Serve the docs pages and their scripts; call with `docs_url=None, redoc_url=None` on the app."""
    app.mount(STATIC_URL, StaticFiles(directory=swagger_files()), name="docs-static")
    app.include_router(router)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API reference",
        redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        with_google_fonts=False,
    )
