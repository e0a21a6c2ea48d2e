"""The tray on Windows: pystray's win32 backend, the real app, a right click, the menu, its actions.

The app runs as a user starts it (`python -m app`, no arguments: tray and server) in
Wine's virtual desktop. A right click is the message the shell sends to the icon's
window; the menu is driven with the keyboard, as a user can; each action is checked
through the app's own status. The dashboard opens in "the browser": a program that
writes down the address it was given, registered as the http handler the way a
browser registers itself on Windows.
"""

from __future__ import annotations

import sys
import time
import winreg
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.tray_menu import Entry, TrayView, build_menu, tooltip
from tests.support.tray_views import edge_views, utf16_units
from tests.windows.support import (
    VK_DOWN,
    VK_ESCAPE,
    VK_RETURN,
    VK_RIGHT,
    App,
    app_children,
    data_dir_with_starter,
    open_menus,
    press,
    right_click_icon,
    screenshot,
    tray_windows,
    wait_until,
)

BROWSER = '''import sys, pathlib
pathlib.Path(sys.argv[1]).open("a", encoding="utf-8").write(" ".join(sys.argv[2:]) + "\\n")
'''


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A stand-in web browser registered for http: (what ShellExecute and webbrowser open)."""
    folder = tmp_path_factory.mktemp("browser")
    script, opened = folder / "browser.py", folder / "opened.txt"
    script.write_text(BROWSER, encoding="utf-8")
    command = f'"{sys.executable}" "{script}" "{opened}" "%1"'
    keys = [r"http\shell\open\command", r"https\shell\open\command"]
    saved = {}
    for key in keys:
        with winreg.CreateKey(winreg.HKEY_CLASSES_ROOT, key) as handle:
            try:
                saved[key] = winreg.QueryValueEx(handle, "")[0]
            except FileNotFoundError:
                saved[key] = None
            winreg.SetValueEx(handle, "", 0, winreg.REG_SZ, command)
    yield opened
    for key, value in saved.items():
        if value is not None:
            with winreg.CreateKey(winreg.HKEY_CLASSES_ROOT, key) as handle:
                winreg.SetValueEx(handle, "", 0, winreg.REG_SZ, value)


@pytest.fixture(scope="module")
def tray(browser: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    data_dir = data_dir_with_starter(tmp_path_factory.mktemp("tray") / "Tray Ü data")
    app = App(data_dir)  # no arguments: the tray app, as the Start menu starts it
    wait_until(lambda: tray_windows(app.proc.pid), 60, "the tray icon")
    yield app
    app.stop()


class NoActions:
    """build_menu needs actions to build entries; the tests only read the entries' order."""

    def __getattr__(self, _name: str) -> Any:
        return lambda *args: None


def current_menu(app: App) -> list[Entry]:
    view = TrayView(app.url, status=app.status())
    return build_menu(view, NoActions())


def keys_to(entries: list[Entry], *path: str) -> list[int]:
    """The keys that select `path` (labels' beginnings, top level first) and press Enter on it."""
    keys: list[int] = []
    level = entries
    for depth, part in enumerate(path):
        items = [entry for entry in level if not entry.is_separator]
        index = next(i for i, entry in enumerate(items) if entry.label.startswith(part))
        keys += [VK_DOWN] * (index + 1 if depth == 0 else index)  # a submenu opens on its first item
        if depth < len(path) - 1:
            keys.append(VK_RIGHT)
            level = list(items[index].submenu)
    return [*keys, VK_RETURN]


def choose(app: App, *path: str) -> None:
    menu = right_click_icon(app.proc.pid)
    press(menu, *keys_to(current_menu(app), *path))
    try:
        wait_until(lambda: not open_menus(app.proc.pid), 10, "the menu to close")
    except AssertionError:
        screenshot(f"menu-stuck-{'-'.join(path)}.png")
        raise


def no_traceback(app: App) -> None:
    for text in (app.app_log(), app.output()):
        assert "Traceback" not in text, text[-3000:]


def test_every_tooltip_is_taken_by_the_win32_backend() -> None:
    """Each status the tray can show, as the title of a real notification-area icon."""
    import pystray
    from PIL import Image

    icon = pystray.Icon("aistack-tooltips", Image.new("RGB", (16, 16), "green"), "aistack")
    icon.run_detached()
    try:
        wait_until(lambda: icon._running, 10, "the icon's loop")
        icon.visible = True
        for name, view in edge_views().items():
            text = tooltip(view)
            icon.title = text  # pystray raises ValueError past Windows' 128 units, and every later update fails
            assert utf16_units(text) <= 127, name
        icon.title = "aistack: still updating"
    finally:
        icon.stop()


def test_the_icon_shows_status_and_right_click_opens_the_menu(tray: App) -> None:
    wait_until(lambda: "tray icon starting (pystray backend win32)" in tray.app_log(), 30, "the win32 tray")
    menu = right_click_icon(tray.proc.pid)
    time.sleep(0.5)  # the menu draws itself
    shot = screenshot("tray-menu.png")
    assert shot.stat().st_size > 10_000
    items = [entry for entry in current_menu(tray) if not entry.is_separator]
    assert [e.label for e in items][-1] == "Quit" and len(items) >= 12
    press(menu, VK_ESCAPE)
    wait_until(lambda: not open_menus(tray.proc.pid), 10, "the menu to close")
    time.sleep(2)  # a few status polls: each one sets the tooltip and the menu again
    no_traceback(tray)


def test_load_and_unload_from_the_menu(tray: App) -> None:
    choose(tray, "Chat", "smollm2-135m-instruct")
    wait_until(lambda: "smollm2-135m-instruct" in tray.loaded(), 60, "the chat model to load")
    time.sleep(1.5)  # the tray's next status poll puts the check mark in the menu
    choose(tray, "Chat", "smollm2-135m-instruct")
    wait_until(lambda: "smollm2-135m-instruct" not in tray.loaded(), 30, "the chat model to unload")
    no_traceback(tray)


def test_free_memory_unloads_everything(tray: App) -> None:
    for model in ("whisper-tiny.en", "piper-en_US-joe-medium"):
        httpx.post(f"{tray.url}/admin/api/models/{model}/load", headers=tray.admin_headers, timeout=120).raise_for_status()
    wait_until(lambda: {"whisper-tiny.en", "piper-en_US-joe-medium"} <= tray.loaded(), 60, "two models loaded")
    time.sleep(1.5)  # the tray's menu now offers to free memory
    choose(tray, "Free ")
    wait_until(lambda: not tray.loaded(), 30, "every model to unload")


def test_open_dashboard_opens_the_browser_with_the_admin_token(tray: App, browser: Path) -> None:
    choose(tray, "Open dashboard")
    opened = wait_until(lambda: browser.is_file() and browser.read_text(encoding="utf-8"), 20, "the browser")
    assert tray.url in opened and "/dashboard" in opened, opened


def test_a_second_launch_hands_over_and_exits(tray: App, browser: Path) -> None:
    before = browser.read_text(encoding="utf-8").count("\n") if browser.is_file() else 0
    second = App(tray.data_dir, port=tray.port, wait_healthy=False)
    assert second.proc.wait(30) == 0, second.output()
    wait_until(lambda: browser.is_file() and browser.read_text(encoding="utf-8").count("\n") > before, 20,
               "the first instance to open its dashboard")
    assert tray.proc.poll() is None and len(tray_windows(tray.proc.pid)) >= 1  # still one tray, the first


def test_quit_ends_the_app_and_its_runners(tray: App) -> None:
    httpx.post(f"{tray.url}/admin/api/models/smollm2-135m-instruct/load", headers=tray.admin_headers,
               timeout=120).raise_for_status()
    import psutil

    family = app_children(tray.proc.pid)
    assert family, "a loaded model has a runner process"
    time.sleep(2)  # the tray's status poll rebuilds the menu; keys sent while it does so may be lost
    choose(tray, "Quit")
    assert tray.proc.wait(20) == 0
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, alive
    with pytest.raises(httpx.HTTPError):
        httpx.get(tray.url + "/health", timeout=2)
    no_traceback(tray)
