"""The operating system's side of the tray's actions: open a folder or a web page, copy text.

Everything here ends in one of two calls, `launch` (start a program) or the
`webbrowser` module, so tests replace exactly the OS boundary and nothing of
the app's own logic.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import webbrowser
from pathlib import Path

log = logging.getLogger("aistack.app")


class DesktopError(Exception):
    """The desktop could not do it; the message says what to do instead."""


def launch(argv: list[str], stdin_text: str | None = None) -> None:
    """Start a desktop program and do not wait for it (except to hand it `stdin_text`)."""
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    if stdin_text is None:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         creationflags=flags, start_new_session=sys.platform != "win32")
    else:
        subprocess.run(argv, input=stdin_text.encode("utf-16-le" if sys.platform == "win32" else "utf-8"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, creationflags=flags, timeout=5, check=True)


def open_folder(path: Path) -> None:
    """Show a folder in the file manager (it is created first, so there is always something to show)."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        launch(["explorer", str(path)])
    elif sys.platform == "darwin":
        launch(["open", str(path)])
    else:
        opener = shutil.which("xdg-open") or shutil.which("gio")
        if opener is None:
            raise DesktopError(f"No file manager opener (xdg-open) found. The folder is {path}")
        launch([opener, "open", str(path)] if opener.endswith("gio") else [opener, str(path)])


def open_url(url: str) -> None:
    if not webbrowser.open(url):
        raise DesktopError(f"No web browser could be started. Open {url.split('?')[0]} yourself.")


def clipboard_command() -> list[str] | None:
    """The program that copies stdin to the clipboard here, or None."""
    if sys.platform == "win32":
        return ["clip"]
    if sys.platform == "darwin":
        return ["pbcopy"]
    if os.environ.get("WAYLAND_DISPLAY") and shutil.which("wl-copy"):
        return ["wl-copy"]
    if shutil.which("xclip"):
        return ["xclip", "-selection", "clipboard"]
    if shutil.which("xsel"):
        return ["xsel", "--clipboard", "--input"]
    return None


def copy_text(text: str) -> None:
    command = clipboard_command()
    if command is None:
        raise DesktopError(f"No clipboard program (xclip, xsel or wl-copy) is installed. The text is: {text}")
    try:
        launch(command, stdin_text=text)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DesktopError(f"Copying failed ({exc}). The text is: {text}") from exc
