"""Start at login: the XDG autostart entry under a temp home, from the tray menu and from `aistack autostart`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import autostart
from app.tray_menu import Entry, TrayView, build_menu
from tests.conftest import ROOT

pytestmark = [pytest.mark.untimed, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG autostart entry is Linux's")]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return tmp_path


class Toggle:
    """Only the menu's own start-at-login item is used; the other actions are not part of this test."""

    def set_autostart(self, on: bool) -> None:
        autostart.enable() if on else autostart.disable()

    def __getattr__(self, name: str) -> object:
        return lambda *_args: None


def login_item() -> Entry:
    view = TrayView(address="http://127.0.0.1:11500", status={"models": []}, autostart=autostart.is_enabled())
    return next(e for e in build_menu(view, Toggle()) if e.label == "Start at login")  # type: ignore[arg-type]


def test_menu_item_writes_and_removes_the_autostart_entry(home: Path) -> None:
    entry = home / ".config" / "autostart" / "aistack.desktop"
    assert login_item().checked is False and not entry.exists()
    login_item().action()  # type: ignore[misc]
    text = entry.read_text()
    assert "[Desktop Entry]" in text and "Type=Application" in text and "Name=aistack" in text
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))[5:]
    assert exec_line == autostart.command_line(autostart.launch_command())
    assert login_item().checked is True
    login_item().action()  # type: ignore[misc]
    assert not entry.exists() and login_item().checked is False


def test_the_entry_starts_aistack_with_the_tray(home: Path) -> None:
    """The command in the entry is this installation's `aistack` with no arguments (tray and server)."""
    line = autostart.enable()
    argv = line.split(" ")
    assert len(argv) == 1 and Path(argv[0]).name == "aistack" and os.access(argv[0], os.X_OK), line


def test_xdg_config_home_is_honoured(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "cfg"))
    autostart.enable()
    assert (home / "cfg" / "autostart" / "aistack.desktop").is_file()


def test_cli_turns_it_on_reports_it_and_turns_it_off(home: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOME": str(home), "AISTACK_DATA_DIR": str(home / "data")}
        env.pop("XDG_CONFIG_HOME", None)
        return subprocess.run([sys.executable, "-m", "app", "autostart", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    assert run("status").stdout.strip() == "off"
    on = run("on")
    assert on.returncode == 0 and on.stdout.startswith("aistack will start at login: ")
    assert (home / ".config" / "autostart" / "aistack.desktop").is_file()
    status = run("status")
    assert status.returncode == 0 and status.stdout.startswith("on: ")
    off = run("off")
    assert off.returncode == 0 and not (home / ".config" / "autostart" / "aistack.desktop").exists()
    assert run("status").stdout.strip() == "off"
    bad = run("maybe")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
