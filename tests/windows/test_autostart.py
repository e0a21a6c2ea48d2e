"""Start at login on Windows: the HKCU Run value, written by `aistack autostart on` from source.

(The frozen build's `aistack-cli.exe autostart on` is tested in test_frozen.py: it must name aistack.exe.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import winreg
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.autostart import ENTRY_NAME, RUN_KEY
from tests.windows.support import ROOT, App, data_dir_with_starter, free_port, wait_until


def run_value() -> str | None:
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            return str(winreg.QueryValueEx(key, ENTRY_NAME)[0])
    except FileNotFoundError:
        return None


def autostart(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "autostart", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture()
def clean_run_key() -> Iterator[None]:
    autostart("off")
    yield
    autostart("off")


def test_on_status_off_and_the_registered_line_starts_the_tray(clean_run_key: None, tmp_path: Path) -> None:
    on = autostart("on")
    assert on.returncode == 0, on.stderr
    line = run_value()
    assert line is not None and line.startswith('"') and "pythonw.exe" in line, line  # no console window at login
    assert autostart("status").stdout.strip() == f"on: {line}"

    # Log in: Windows starts the Run value's command line as it is written.
    data, port = data_dir_with_starter(tmp_path / "Login data"), free_port()
    env = {**os.environ, "AISTACK_DATA_DIR": str(data), "AISTACK_PORT": str(port)}
    started = subprocess.Popen(line, cwd=os.environ.get("USERPROFILE", str(tmp_path)), env=env)
    probe = App.started_elsewhere(started, data, port)
    try:
        wait_until(probe.healthy, 90, "the app started from the Run value")
        assert "tray icon starting (pystray backend win32)" in wait_until(
            lambda: "pystray backend win32" in probe.app_log() and probe.app_log(), 30, "the tray")
    finally:
        probe.stop()

    off = autostart("off")
    assert off.returncode == 0 and run_value() is None
    assert autostart("status").stdout.strip() == "off"
