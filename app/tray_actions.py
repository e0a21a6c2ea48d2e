"""What each tray menu item does. Model changes go through the admin API (the same manager
operations the dashboard uses); folders, pages and the clipboard through `app.desktop`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from app import autostart, desktop
from app.admin_client import AdminClient, AdminError
from app.logs import log_path
from models.core.settings import Settings

log = logging.getLogger("aistack.tray")
Notify = Callable[[str], None]


class Actions:
    """The tray's actions; `notify` tells the user the outcome, `on_quit` ends the app."""

    def __init__(self, settings: Settings, client: AdminClient, notify: Notify, on_quit: Callable[[], None]):
        self.settings = settings
        self.client = client
        self.notify = notify
        self.on_quit = on_quit

    def load(self, model_id: str) -> None:
        try:
            row = self.client.load(model_id)
        except AdminError as exc:
            self.notify(f"{model_id} did not load: {exc}")
            return
        log.info("tray: loaded %s on %s", model_id, row.get("device_detail") or row.get("device") or "cpu")

    def unload(self, model_id: str) -> None:
        try:
            self.client.unload(model_id)
        except AdminError as exc:
            self.notify(f"{model_id} did not unload: {exc}")
            return
        log.info("tray: unloaded %s", model_id)

    def free_memory(self) -> None:
        """Unload every model now, then say how much memory came back."""
        try:
            before = self.client.status()
            self.client.unload_all()
            after = self.client.status()
        except AdminError as exc:
            self.notify(f"Freeing memory failed: {exc}")
            return
        self.notify(freed_message(before, after))

    def open_dashboard(self) -> None:
        self._desktop(desktop.open_url, dashboard_url(self.settings))

    def open_models_folder(self) -> None:
        self._desktop(desktop.open_folder, self.settings.models_dir)

    def open_logs(self) -> None:
        self._desktop(desktop.open_folder, log_path(self.settings).parent)

    def copy_address(self) -> None:
        self._desktop(desktop.copy_text, local_url(self.settings))

    def set_autostart(self, on: bool) -> None:
        try:
            if on:
                line = autostart.enable()
                log.info("start at login on: %s", line)
            else:
                autostart.disable()
                log.info("start at login off")
        except (OSError, autostart.AutostartError) as exc:
            self.notify(f"Start at login could not be changed: {exc}")

    def set_game_mode(self, on: bool) -> None:
        try:
            self.client.set_game_mode(on)
        except AdminError as exc:
            self.notify(f"Game mode could not be changed: {exc}")
            return
        log.info("tray: game mode %s", "on" if on else "off")

    def quit(self) -> None:
        self.on_quit()

    def _desktop(self, call: Callable[[Any], None], target: Any) -> None:
        try:
            call(target)
        except (OSError, desktop.DesktopError) as exc:
            self.notify(str(exc))


def local_url(settings: Settings) -> str:
    """The address a program on this PC uses (a wildcard bind is reached through loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


def dashboard_url(settings: Settings, base_url: str | None = None) -> str:
    """The dashboard's login link: the admin token is traded for a cookie and leaves the address bar."""
    token = read_admin_token(settings)
    return f"{base_url or local_url(settings)}/dashboard/login?token={token}"


def read_admin_token(settings: Settings) -> str:
    from server.admin_token import ensure_admin_token

    return ensure_admin_token(settings.data_dir)


def freed_message(before: dict[str, Any], after: dict[str, Any]) -> str:
    unloaded = [str(row["id"]) for row in before.get("models") or [] if row.get("loaded")]
    if not unloaded:
        return "Nothing was loaded, so there was no memory to free."
    gpu_before, gpu_after = before.get("gpu") or {}, after.get("gpu") or {}
    if gpu_before.get("available") and gpu_before.get("memory_used_bytes") is not None:
        freed = max(0, int(gpu_before["memory_used_bytes"]) - int(gpu_after.get("memory_used_bytes") or 0))
        where = "GPU memory"
    else:
        freed = sum(int(row.get("memory_bytes") or 0) for row in before.get("models") or [] if row.get("loaded"))
        where = "memory"
    still = [str(row["id"]) for row in after.get("models") or [] if row.get("loaded")]
    tail = f" Still loaded: {', '.join(still)}." if still else ""
    return f"Freed {_size(freed)} of {where}: unloaded {', '.join(unloaded)}.{tail}"


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"
