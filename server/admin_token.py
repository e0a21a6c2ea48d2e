"""The admin token: a random secret in the data dir, readable only by the user.

State-changing admin routes require it as `X-Aistack-Admin-Token: <token>` or
`Authorization: Bearer <token>` (with `AISTACK_API_KEY` set, Authorization carries
the API key, so the token goes in X-Aistack-Admin-Token); the tray passes it to
the dashboard it opens. Anyone who can read the file is the
user already.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request

from models.core.errors import Forbidden

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
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else ""
    # With AISTACK_API_KEY set, Authorization carries the key and the token travels in X-Aistack-Admin-Token.
    given = (bearer, request.headers.get("x-aistack-admin-token", "").strip(), request.cookies.get(COOKIE_NAME, ""))
    if not any(is_admin_token(value, expected) for value in given):
        raise Forbidden(
            "This admin action needs the admin token (X-Aistack-Admin-Token: <token>, or Authorization: Bearer <token> "
            "when no API key is set). It is in the file 'admin-token' in the aistack data folder."
        )
