"""What the tray shows: the menu, the icon state and the tooltip, from one `GET /admin/api/status` reading.

Pure functions of a `TrayView`, so a test can build the menu from a real
server's status and check every label, check mark and enabled state without
a display. `app.tray` turns the entries into pystray items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from app.icons import IconState

CAPABILITIES = (("asr", "Speech to text"), ("tts", "Voices"), ("llm", "Chat"))
IN_PROGRESS = ("queued", "downloading", "verifying", "loading", "unloading")
_DOWNLOAD_WORDS = {"queued": "waiting to download", "downloading": "downloading", "verifying": "checking files"}
# Windows' NOTIFYICONDATAW.szTip holds 128 UTF-16 units with the terminating zero; pystray's win32
# backend raises on a longer title, and every later update of the icon fails with it.
TOOLTIP_MAX = 127


@dataclass(frozen=True)
class Entry:
    """One menu line. `checked` None means not a check item; a disabled line says why in its label."""

    label: str
    action: Callable[[], None] | None = None
    checked: bool | None = None
    enabled: bool = True
    default: bool = False
    submenu: tuple[Entry, ...] = ()

    @property
    def is_separator(self) -> bool:
        return self.label == SEPARATOR.label


SEPARATOR = Entry("----", enabled=False)


class TrayActions(Protocol):
    def load(self, model_id: str) -> None: ...
    def unload(self, model_id: str) -> None: ...
    def free_memory(self) -> None: ...
    def open_dashboard(self) -> None: ...
    def open_models_folder(self) -> None: ...
    def open_logs(self) -> None: ...
    def copy_address(self) -> None: ...
    def set_autostart(self, on: bool) -> None: ...
    def set_game_mode(self, on: bool) -> None: ...
    def quit(self) -> None: ...


@dataclass
class TrayView:
    """Everything the tray shows. `status` is None while the server does not answer (`problem` says why)."""

    address: str
    status: dict[str, Any] | None = None
    problem: str | None = None
    starting: bool = False
    autostart: bool | None = False  # None: start at login cannot be set here
    clipboard: bool = True
    rows: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.rows = list((self.status or {}).get("models") or [])

    @property
    def gpu(self) -> dict[str, Any]:
        return dict((self.status or {}).get("gpu") or {})

    @property
    def loaded(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row.get("loaded")]


def build_menu(view: TrayView, actions: TrayActions) -> list[Entry]:
    entries = [Entry(title_line(view), enabled=False), Entry(gpu_line(view), enabled=False)]
    entries += [Entry(f"Warning: {_clip(text, 90)}", enabled=False) for text in (view.status or {}).get("warnings") or []]
    entries.append(SEPARATOR)
    for capability, name in CAPABILITIES:
        entries.append(Entry(name, submenu=tuple(_model_entries(view, capability, actions))))
    entries.append(SEPARATOR)
    entries += [
        _free_memory_entry(view, actions),
        *_game_mode_entry(view, actions),
        Entry("Open dashboard", actions.open_dashboard, default=True),
        Entry("Open models folder", actions.open_models_folder),
        Entry("Open logs", actions.open_logs),
        Entry(f"Copy API address ({view.address})", actions.copy_address) if view.clipboard
        else Entry(f"API address: {view.address} (no clipboard program to copy it)", enabled=False),
        _autostart_entry(view, actions),
        SEPARATOR,
        Entry("Quit", actions.quit),
    ]
    return entries


def title_line(view: TrayView) -> str:
    where = view.address.split("://", 1)[-1]
    if view.status is not None:
        return f"aistack: running on {where}"
    if view.starting:
        return f"aistack: starting on {where}"
    return f"aistack: {view.problem or 'not answering'}"


def gpu_line(view: TrayView) -> str:
    gpu = view.gpu
    if view.status is None:
        return "GPU: unknown until the server answers"
    if gpu.get("available"):
        used, total = gpu.get("memory_used_bytes"), gpu.get("memory_total_bytes")
        memory = f"VRAM {used / 1e9:.1f} / {total / 1e9:.0f} GB" if used is not None and total else "VRAM unknown"
        return f"{gpu.get('name') or 'NVIDIA GPU'}: {memory}"
    return f"CPU only: {_clip(str(gpu.get('reason') or 'no usable NVIDIA GPU'), 80)}"


def _model_entries(view: TrayView, capability: str, actions: TrayActions) -> list[Entry]:
    rows = [row for row in view.rows if row.get("capability") == capability]
    if not rows:
        return [Entry("No models installed (add some in the dashboard)", enabled=False)]
    return [_model_entry(row, actions) for row in sorted(rows, key=lambda r: str(r.get("id")))]


def _model_entry(row: dict[str, Any], actions: TrayActions) -> Entry:
    model_id, state = str(row["id"]), str(row.get("state"))
    if state in _DOWNLOAD_WORDS:
        return Entry(f"{model_id}: {_DOWNLOAD_WORDS[state]}{_percent(row)}", enabled=False)
    if state in ("loading", "unloading"):
        return Entry(f"{model_id}: {state}...", enabled=False)
    if state == "failed":
        reason = _clip(str(row.get("error") or "unknown error"), 60)
        return Entry(f"{model_id}: failed ({reason}); click to retry", partial(actions.load, model_id), checked=False)
    if row.get("loaded"):
        detail = row.get("device_detail") or ("GPU" if row.get("device") == "cuda" else "CPU")
        busy = ", busy" if row.get("busy") else ""
        return Entry(f"{model_id} ({detail}{busy})", partial(actions.unload, model_id), checked=True)
    return Entry(model_id, partial(actions.load, model_id), checked=False)


def _percent(row: dict[str, Any]) -> str:
    download = row.get("download") or {}
    done, total = download.get("bytes_done"), download.get("bytes_total")
    return f" {100 * done / total:.0f}%" if done is not None and total else ""


def _free_memory_entry(view: TrayView, actions: TrayActions) -> Entry:
    label = "Free GPU memory" if view.gpu.get("available") else "Free memory (unload all models)"
    if not view.loaded:
        return Entry(f"{label}: nothing is loaded", enabled=False)
    return Entry(label, actions.free_memory)


def _game_mode_entry(view: TrayView, actions: TrayActions) -> list[Entry]:
    game_mode = (view.status or {}).get("game_mode")
    if not isinstance(game_mode, dict):
        return []  # a server without game mode
    enabled = bool(game_mode.get("enabled"))
    label = "Game mode (step aside while a game uses the GPU)"
    if enabled and game_mode.get("active"):
        label = f"Game mode: active ({_clip(str(game_mode.get('reason') or 'a game uses the GPU'), 60)})"
    return [Entry(label, partial(actions.set_game_mode, not enabled), checked=enabled)]


def _autostart_entry(view: TrayView, actions: TrayActions) -> Entry:
    if view.autostart is None:
        return Entry("Start at login (not supported on this system)", enabled=False)
    return Entry("Start at login", partial(actions.set_autostart, not view.autostart), checked=view.autostart)


def icon_state(view: TrayView) -> IconState:
    if view.status is None:
        return IconState.LOADING if view.starting else IconState.ERROR
    states = {str(row.get("state")) for row in view.rows}
    if states & set(IN_PROGRESS):
        return IconState.LOADING
    if any(row.get("busy") or row.get("queued") for row in view.rows):
        return IconState.WORKING
    if "failed" in states:
        return IconState.ERROR
    return IconState.IDLE if view.gpu.get("available") else IconState.CPU_ONLY


def tooltip(view: TrayView) -> str:
    lines = [title_line(view)]
    if view.status is not None:
        loaded = [str(row["id"]) for row in view.loaded]
        lines.append(f"{len(loaded)} loaded: {', '.join(loaded)}" if loaded else "no model loaded")
        busy = [str(row["id"]) for row in view.rows if str(row.get("state")) in IN_PROGRESS]
        if busy:
            lines.append(f"in progress: {', '.join(busy)}")
        lines.append(gpu_line(view))
    return _clip("\n".join(lines), TOOLTIP_MAX)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split()) if "\n" not in text else text
    return clip_utf16(text, limit)


def clip_utf16(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 units (what Windows counts), with "..." where it was cut."""
    if _utf16_len(text) <= limit:
        return text
    kept = text[: limit - 3]
    while _utf16_len(kept) > limit - 3:  # characters beyond the BMP (emoji) take two units each
        kept = kept[:-1]
    return kept + "..."


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2
