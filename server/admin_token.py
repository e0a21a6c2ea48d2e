"""The admin token: a random secret in the data dir, readable only by the user.

State-changing admin routes require it as `Authorization: Bearer <token>`; the
tray passes it to the dashboard it opens. Anyone who can read the file is the
user already.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request

from models.errors import Forbidden

TOKEN_FILE = "admin-token"
COOKIE_NAME = "aistack_admin"  # set by /dashboard/login (HttpOnly, SameSite=Strict)


def ensure_admin_token(data_dir: Path) -> str:
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token)
    return token


def is_admin_token(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def require_admin(request: Request) -> None:
    """FastAPI dependency for admin routes that change state."""
    expected: str = request.app.state.admin_token
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-aistack-admin-token", "")
    given = given or request.cookies.get(COOKIE_NAME, "")
    if not is_admin_token(given, expected):
        raise Forbidden(
            "This admin action needs the admin token (Authorization: Bearer <token>). "
            "It is in the file 'admin-token' in the aistack data folder."
        )
