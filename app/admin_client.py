"""The tray's way to the server: the admin API over HTTP, with the admin token.

The tray runs on another thread than the server's event loop; calling the same
routes the dashboard calls keeps one code path for every state change
(`Manager.load`, `unload`, `unload_all`) and one source for every reading
(`GET /admin/api/status`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class AdminError(Exception):
    """The server refused or could not be reached; the message is the server's own when it sent one."""


class AdminClient:
    def __init__(self, base_url: str, token: str, timeout: float = 10):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def status(self) -> dict[str, Any]:
        """GET /admin/api/status (quick: it never waits for a model)."""
        return self._call("GET", "/admin/api/status", timeout=5)

    def load(self, model_id: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/api/models/{model_id}/load", timeout=600)

    def unload(self, model_id: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/api/models/{model_id}/unload", timeout=60)

    def unload_all(self) -> dict[str, Any]:
        return self._call("POST", "/admin/api/unload-all", timeout=120)

    def set_game_mode(self, enabled: bool) -> dict[str, Any]:
        return self._call("POST", "/admin/api/game-mode", {"enabled": enabled}, timeout=60)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        headers = {"X-Aistack-Admin-Token": self.token, "Accept": "application/json"}
        data = None
        if method == "POST":
            data = json.dumps(body).encode() if body is not None else b""
            if body is not None:
                headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, method=method, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                answer = response.read()
        except urllib.error.HTTPError as exc:
            raise AdminError(_message(exc.read()) or f"HTTP {exc.code} from {path}") from None
        except (OSError, ValueError) as exc:
            raise AdminError(f"aistack at {self.base_url} does not answer ({exc})") from None
        try:
            result = json.loads(answer or b"{}")
        except ValueError:
            raise AdminError(f"{path} answered with something that is not JSON") from None
        return result if isinstance(result, dict) else {"data": result}


def _message(body: bytes) -> str | None:
    try:
        error = json.loads(body).get("error") or {}
        return str(error.get("message")) if error.get("message") else None
    except (ValueError, AttributeError):
        return None
