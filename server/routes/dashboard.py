"""The dashboard page: `/` sends the browser to `/dashboard`; the files come from `assets/dashboard`.

The tray opens `/dashboard/login?token=...`. The token becomes an HttpOnly,
SameSite=Strict cookie and the browser is sent on to `/dashboard`, so the token
leaves the address bar and history at once. Admin routes accept the cookie
(server.admin_token); a page from another site can neither send it
(SameSite) nor get past the Origin guard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from models.core.errors import Forbidden
from server.admin_token import COOKIE_NAME, is_admin_token

router = APIRouter(include_in_schema=False)
# The page loads only its own files; no frames, so no clickjacking.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def dashboard_files() -> Path:
    """`assets/dashboard` wherever the app runs: a checkout, an installed package or a frozen build."""
    import assets

    return assets.ASSETS / "dashboard"


def mount_dashboard(app: FastAPI) -> None:
    app.mount("/dashboard/static", StaticFiles(directory=dashboard_files()), name="dashboard-static")
    app.include_router(router)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/dashboard")
async def page() -> FileResponse:
    return FileResponse(dashboard_files() / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/dashboard/login")
async def login(request: Request, token: str = Query("", max_length=200)) -> RedirectResponse:
    """Trade the admin token in the address for a cookie, then show the page without it."""
    if not is_admin_token(token, request.app.state.admin_token):
        raise Forbidden(
            "This login link is missing the admin token or has a wrong one. Open the dashboard from the tray menu, "
            "or use /dashboard/login?token=<the text of the file 'admin-token' in the aistack data folder>."
        )
    response = RedirectResponse("/dashboard", status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="strict", path="/")
    return response


@router.get("/dashboard/session")
async def session(request: Request) -> dict[str, Any]:
    """What the page may do: admin actions (the cookie is valid), and which optional admin routes exist."""
    paths = request.app.openapi().get("paths", {})  # built once, then cached by FastAPI
    return {
        "admin": is_admin_token(request.cookies.get(COOKIE_NAME, ""), request.app.state.admin_token),
        "catalog": "/admin/api/catalog" in paths,
    }
