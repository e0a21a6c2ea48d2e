"""Start at login: a value under HKCU\\...\\Run on Windows, an XDG autostart `.desktop` file on Linux.

The Windows installer writes the same value (name `aistack`, the quoted path
of `aistack.exe`), so the tray's check item, `aistack autostart` and the
installer's "start at login" box all read and change one entry.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

ENTRY_NAME = "aistack"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
TRAY_PROGRAM = "aistack"  # the frozen tray app (pyinstaller.spec); `aistack-cli` is its console twin


class AutostartError(Exception):
    """Start at login cannot be changed here; the message says why."""


def launch_command() -> list[str]:
    """The command that starts this app with the tray (no arguments)."""
    if getattr(sys, "frozen", False):
        # Both executables share one folder; from `aistack-cli autostart on` the entry must still name
        # the windowed tray program, or every login opens a console window and no tray.
        tray = Path(sys.executable).with_name(TRAY_PROGRAM + Path(sys.executable).suffix)
        return [str(tray) if tray.is_file() else sys.executable]
    if sys.platform == "win32":
        # A console script (Scripts\aistack.exe) or python.exe would open a console window at every login.
        windowed = Path(sys.executable).with_name("pythonw.exe")
        if windowed.is_file():
            return [str(windowed), "-m", "app"]
    # The console script installed beside this Python (a venv's bin/ or Scripts\), else one on PATH.
    beside = Path(sys.executable).parent / ("aistack.exe" if sys.platform == "win32" else "aistack")
    script = str(beside) if beside.is_file() else shutil.which("aistack")
    if script:
        return [script]
    return [sys.executable, "-m", "app"]


def command_line(argv: list[str]) -> str:
    if sys.platform == "win32":
        return " ".join(f'"{part}"' for part in argv)  # as the installer writes it: "C:\...\aistack.exe"
    return shlex.join(argv)


def is_enabled() -> bool:
    return current_entry() is not None


def current_entry() -> str | None:
    """The command line registered to start at login, or None."""
    if sys.platform == "win32":
        return _registry_get()
    path = desktop_file()
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Exec="):
            return line[5:]
    return ""


def enable(argv: list[str] | None = None) -> str:
    """Register the app to start at login; returns the command line written."""
    line = command_line(argv or launch_command())
    if sys.platform == "win32":
        _registry_set(line)
    elif sys.platform.startswith("linux"):
        path = desktop_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_desktop_entry(line), encoding="utf-8")
    else:
        raise AutostartError(f"Start at login is not supported on {sys.platform}; add aistack to your login items.")
    return line


def disable() -> None:
    if sys.platform == "win32":
        _registry_delete()
    else:
        desktop_file().unlink(missing_ok=True)


def desktop_file() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "autostart" / f"{ENTRY_NAME}.desktop"


def _desktop_entry(exec_line: str) -> str:
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=aistack\n"
        "Comment=Local speech, voice and chat models for your apps\n"
        f"Exec={exec_line}\n"
        "Terminal=false\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def _registry_get() -> str | None:
    if sys.platform != "win32":  # also tells mypy the rest is Windows-only code
        raise AutostartError("The registry exists on Windows only.")
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            value, _kind = winreg.QueryValueEx(key, ENTRY_NAME)
            return str(value)
    except FileNotFoundError:
        return None


def _registry_set(line: str) -> None:
    if sys.platform != "win32":  # also tells mypy the rest is Windows-only code
        raise AutostartError("The registry exists on Windows only.")
    import winreg

    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
        winreg.SetValueEx(key, ENTRY_NAME, 0, winreg.REG_SZ, line)


def _registry_delete() -> None:
    if sys.platform != "win32":  # also tells mypy the rest is Windows-only code
        raise AutostartError("The registry exists on Windows only.")
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            winreg.DeleteValue(key, ENTRY_NAME)
    except FileNotFoundError:
        pass


def run_autostart_command(action: str) -> int:
    """`aistack autostart on|off|status`."""
    try:
        if action == "on":
            print(f"aistack will start at login: {enable()}")
        elif action == "off":
            disable()
            print("aistack will not start at login.")
        else:
            entry = current_entry()
            print(f"on: {entry}" if entry is not None else "off")
    except (OSError, AutostartError) as exc:
        print(f"aistack: cannot change start at login: {exc}", file=sys.stderr)
        return 1
    return 0
