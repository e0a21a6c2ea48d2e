"""What the Windows tests share: the app as a Windows process, and the desktop seen through user32.

Runs in the Windows Python under Wine (tests/windows/lane.py). Windows are
wineserver objects, so another process's windows can be found, sent messages
and photographed; a popup menu's items cannot be read from outside its process
under Wine, so the tests drive the menu as a user's keyboard does and check what
each action did through the app's own API.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from ctypes import wintypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[3]
BUILD = Path(os.environ.get("AISTACK_WINDOWS_BUILD") or ROOT / "build" / "windows")
ARTIFACTS = BUILD / "artifacts"
STARTER_MODELS = Path(os.environ.get("AISTACK_TEST_DATA_DIR") or ROOT / ".cache" / "test-data") / "models"
STARTER_IDS = ("whisper-tiny.en", "piper-en_US-joe-medium", "smollm2-135m-instruct")

user32 = ctypes.WinDLL("user32", use_last_error=True) if sys.platform == "win32" else None
WM_KEYDOWN, WM_KEYUP = 0x0100, 0x0101
VK_RETURN, VK_ESCAPE, VK_UP, VK_RIGHT, VK_DOWN = 0x0D, 0x1B, 0x26, 0x27, 0x28
PYSTRAY_NOTIFY = 0x0400 + 11  # pystray's WM_NOTIFY (WM_USER + 11): the shell's tray-icon callback message
WM_RBUTTONUP = 0x0205


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def data_dir_with_starter(folder: Path) -> Path:
    """`folder` as an aistack data dir holding copies of the three starter models."""
    for model in STARTER_IDS:
        if not (folder / "models" / model).is_dir():
            shutil.copytree(STARTER_MODELS / model, folder / "models" / model)
    return folder


class App:
    """aistack as a Windows process: `python -m app ...`, or a frozen executable with `exe`."""

    def __init__(self, data_dir: Path, *args: str, port: int | None = None, exe: Path | None = None,
                 env: dict[str, str] | None = None, wait_healthy: bool = True):
        self.data_dir, self.port = data_dir, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"app-{self.port}.out"
        command = [str(exe)] if exe else [sys.executable, "-m", "app"]
        full_env = {**os.environ, "AISTACK_DATA_DIR": str(data_dir), "AISTACK_PORT": str(self.port),
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([*command, *args], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        if wait_healthy:
            wait_until(self.healthy, 90, f"{self.url}/health ({self.output()[-2000:]})")

    @classmethod
    def started_elsewhere(cls, proc: subprocess.Popen[bytes], data_dir: Path, port: int) -> App:
        """An app another launcher started (the Run value, the installer): the same checks on it."""
        app = cls.__new__(cls)
        app.proc, app.data_dir, app.port, app.url = proc, data_dir, port, f"http://127.0.0.1:{port}"
        app.log_path = data_dir / f"app-{port}.out"
        return app

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the app exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.is_file() else ""

    def app_log(self) -> str:
        path = self.data_dir / "logs" / "aistack.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.data_dir / 'admin-token').read_text().strip()}"}

    def status(self) -> dict[str, Any]:
        response = httpx.get(self.url + "/admin/api/status", headers=self.admin_headers, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def loaded(self) -> set[str]:
        return {str(row["id"]) for row in self.status()["models"] if row.get("loaded")}

    def stop(self, timeout: float = 20) -> None:
        """End the app and every process it started (its runners); a tray app by its own Quit first.

        Killing a tray app leaves its icon's window in Wine's tray; the next icon then fails with an
        X error (BadWindow) that ends the process making it.
        """
        if self.proc.poll() is None and tray_windows(self.proc.pid):
            quit_from_menu(self.proc)
        kill_tree(self.proc.pid, timeout)
        self.proc.wait(timeout)


def app_children(pid: int) -> list[psutil.Process]:
    """The processes an app started (its runners). The lane starts Wine's desktop (explorer.exe) itself,
    so it is no app's child: ending an app's tree never takes the desktop and every later window with it."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int, timeout: float = 20) -> None:
    try:
        family = [*app_children(pid), psutil.Process(pid)]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=timeout)


# --- the desktop through user32 ---------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    hwnd: int
    class_name: str
    pid: int
    visible: bool


def windows() -> list[Window]:
    assert user32 is not None
    found: list[Window] = []
    proc_type = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)

    def visit(hwnd: int, _lparam: int) -> bool:
        name = ctypes.create_unicode_buffer(256)
        user32.GetClassNameW(hwnd, name, 256)
        pid = wintypes.DWORD()
        user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
        found.append(Window(int(hwnd), name.value, int(pid.value), bool(user32.IsWindowVisible(hwnd))))
        return True

    user32.EnumWindows(proc_type(visit), 0)
    return found


def process_family(pid: int) -> set[int]:
    try:
        return {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        return {pid}


def tray_windows(pid: int) -> list[Window]:
    """pystray's two hidden windows for the icon (the icon's own comes second)."""
    return [w for w in windows() if re.fullmatch(r"aistack\d+SystemTrayIcon", w.class_name) and w.pid in process_family(pid)]


def open_menus(pid: int) -> list[Window]:
    return [w for w in windows() if w.class_name == "#32768" and w.visible and w.pid in process_family(pid)]


def right_click_icon(pid: int, timeout: float = 40) -> Window:
    """What the shell does on a right click on the icon; returns the menu that opens.

    The icon gets its menu with the tray's first status reading, so early clicks may open nothing.
    """
    assert user32 is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        icons = tray_windows(pid)  # pystray's menu window, then the icon's own
        if icons:
            user32.PostMessageW(icons[-1].hwnd, PYSTRAY_NOTIFY, 0, WM_RBUTTONUP)
            try:  # a busy app may take a while; a second click queued meanwhile would open the menu again later
                return wait_until(lambda: (open_menus(pid) or [None])[-1], 8, "the tray menu")
            except AssertionError:
                continue
        time.sleep(0.5)
    raise AssertionError(f"a right click on the tray icon opened no menu in {timeout:.0f} s")


def press(menu: Window, *keys: int) -> None:
    """Keys as the menu's modal loop reads them (posted to the menu window's thread)."""
    assert user32 is not None
    for key in keys:
        user32.PostMessageW(menu.hwnd, WM_KEYDOWN, key, 0)
        user32.PostMessageW(menu.hwnd, WM_KEYUP, key, 0xC0000001)
        time.sleep(0.15)


def quit_from_menu(proc: subprocess.Popen[bytes], timeout: float = 20) -> bool:
    """Quit, the menu's last item, as a user chooses it; True when the app has ended."""
    try:
        press(right_click_icon(proc.pid, timeout=15), VK_UP, VK_RETURN)
        proc.wait(timeout)
        return True
    except (AssertionError, subprocess.TimeoutExpired):
        return False


def screenshot(name: str) -> Path:
    from PIL import ImageGrab

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    ImageGrab.grab().save(path)
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
