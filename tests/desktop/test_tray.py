"""The tray menu, built from a real server's status with the starter models, and what each item does.

The server is the real one in a child process (`aistack serve`); the tray reads
it and changes it through the admin API, exactly as the running tray does.
The only stand-ins are programs at the OS boundary: a fake `xdg-open`, browser
and `xclip` on PATH that write down what they were asked to do.
"""

from __future__ import annotations

import os
import stat
import time
import webbrowser
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from app.admin_client import AdminClient
from app.icons import IconState
from app.tray_actions import Actions
from app.tray_menu import Entry, TrayView, build_menu, icon_state, tooltip
from app.tray_notices import notices
from models.core.settings import Settings
from tests.conftest import ServerProcess
from tests.support.inprocess import install_fake_model

BROKEN = "broken-chat"


@pytest.fixture(scope="module")
def tray_server(starter_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A private server on the starter models plus a chat model whose engine fails to load."""
    data_dir = tmp_path_factory.mktemp("tray") / "data"
    (data_dir / "models").mkdir(parents=True)
    for model in (starter_data_dir / "models").iterdir():
        if (model / "manifest.json").is_file():
            (data_dir / "models" / model.name).symlink_to(model, target_is_directory=True)
    install_fake_model(data_dir, BROKEN, fail_load=True)
    server = ServerProcess(data_dir, {"AISTACK_ENGINES": '{"scripted": "tests.support.engines:ScriptedEngine"}'})
    yield server
    server.stop()


class Recorder:
    """Fake desktop programs on PATH; each appends its arguments (and stdin) to a file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.log = folder / "calls.txt"
        for name in ("xdg-open", "xclip", "browser"):
            script = folder / name
            script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.log}"\n[ "{name}" = xclip ] && cat >> "{self.log}"\nexit 0\n')
            script.chmod(script.stat().st_mode | stat.S_IXUSR)

    def calls(self, timeout: float = 5) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.log.exists():
            time.sleep(0.05)
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def desktop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("BROWSER", str(tmp_path / "browser"))
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(webbrowser, "_tryorder", None)  # read BROWSER again
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    return recorder


class Tray:
    """What the running tray does each second: read the status, build the menu; plus its notifications."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.settings = Settings(data_dir=server.data_dir, port=server.port)
        self.client = AdminClient(server.url, server.admin_token)
        self.notes: list[str] = []
        self.quit_asked = False
        self.actions = Actions(self.settings, self.client, self.notes.append, self._quit)

    def _quit(self) -> None:
        self.quit_asked = True

    def view(self) -> TrayView:
        from app import autostart

        return TrayView(address=self.server.url, status=self.client.status(), autostart=autostart.is_enabled())

    def menu(self) -> list[Entry]:
        return build_menu(self.view(), self.actions)

    def item(self, label: str, submenu: str | None = None) -> Entry:
        entries = self.menu()
        if submenu is not None:
            entries = list(next(e for e in entries if e.label == submenu).submenu)
        matches = [e for e in entries if e.label == label or e.label.startswith(label + " ") or e.label.startswith(label + ":")]
        assert len(matches) == 1, f"no single item {label!r} in {[e.label for e in entries]}"
        return matches[0]

    def click(self, label: str, submenu: str | None = None) -> None:
        entry = self.item(label, submenu)
        assert entry.enabled and entry.action is not None, entry
        entry.action()


@pytest.fixture
def tray(tray_server: ServerProcess, desktop: Recorder) -> Iterator[Tray]:
    tray = Tray(tray_server)
    yield tray
    tray.client.unload_all()


def test_menu_lists_the_starter_models_with_state_and_the_fixed_items(tray: Tray) -> None:
    entries = tray.menu()
    labels = [e.label for e in entries]
    assert labels[0] == f"aistack: running on 127.0.0.1:{tray.server.port}"
    gpu = tray.client.status()["gpu"]
    assert labels[1].startswith("CPU only: ") if not gpu["available"] else "VRAM" in labels[1]
    assert not entries[0].enabled and not entries[1].enabled
    submenus = {e.label: e.submenu for e in entries if e.submenu}
    assert list(submenus) == ["Speech to text", "Voices", "Chat"]
    assert [m.label for m in submenus["Speech to text"]] == ["whisper-tiny.en"]
    assert [m.label for m in submenus["Voices"]] == ["piper-en_US-joe-medium"]
    assert [m.label for m in submenus["Chat"]] == [BROKEN, "smollm2-135m-instruct"]
    for model in (m for sub in submenus.values() for m in sub):
        assert model.checked is False and model.enabled and model.action is not None
    free = tray.item("Free GPU memory" if gpu["available"] else "Free memory (unload all models)")
    assert free.label.endswith(": nothing is loaded") and not free.enabled
    assert tray.item("Open dashboard").default
    assert tray.item("Copy API address").label == f"Copy API address ({tray.server.url})"
    game = tray.item("Game mode")
    assert game.label == "Game mode (step aside while a game uses the GPU)" and game.checked is False and game.enabled
    login = tray.item("Start at login")
    assert login.checked is False and login.enabled
    assert labels[-1] == "Quit" and entries[-2].is_separator
    assert icon_state(tray.view()) == (IconState.IDLE if gpu["available"] else IconState.CPU_ONLY)


def test_clicking_a_model_loads_it_with_a_check_mark_and_clicking_again_unloads_it(tray: Tray) -> None:
    tray.click("smollm2-135m-instruct", "Chat")
    row = next(r for r in tray.client.status()["models"] if r["id"] == "smollm2-135m-instruct")
    assert row["loaded"] and row["pinned"], row
    runner = psutil.Process(row["runner_pid"])
    entry = tray.item("smollm2-135m-instruct", "Chat")
    assert entry.checked is True and entry.label == f"smollm2-135m-instruct ({'GPU' if row['device'] == 'cuda' else 'CPU'})"
    assert "1 loaded: smollm2-135m-instruct" in tooltip(tray.view())
    tray.click("smollm2-135m-instruct", "Chat")
    assert tray.item("smollm2-135m-instruct", "Chat").checked is False
    runner.wait(10)  # the runner process really ended
    assert tray.notes == []


def test_free_memory_unloads_everything_and_says_how_much_came_back(tray: Tray) -> None:
    tray.click("smollm2-135m-instruct", "Chat")
    tray.click("piper-en_US-joe-medium", "Voices")
    rows = {r["id"]: r for r in tray.client.status()["models"]}
    runners = [psutil.Process(rows[m]["runner_pid"]) for m in ("smollm2-135m-instruct", "piper-en_US-joe-medium")]
    label = "Free GPU memory" if tray.client.status()["gpu"]["available"] else "Free memory (unload all models)"
    assert tray.item(label).label == label
    tray.click(label)
    assert [r["id"] for r in tray.client.status()["models"] if r["loaded"]] == []
    for runner in runners:
        runner.wait(10)
    assert len(tray.notes) == 1 and tray.notes[0].startswith("Freed "), tray.notes
    assert "unloaded " in tray.notes[0] and "smollm2-135m-instruct" in tray.notes[0] and "piper-en_US-joe-medium" in tray.notes[0]
    assert tray.item(label).label == f"{label}: nothing is loaded"


def test_a_model_that_fails_to_load_says_why_and_offers_a_retry(tray: Tray) -> None:
    before = tray.client.status()["models"]
    tray.click(BROKEN, "Chat")
    assert len(tray.notes) == 1 and tray.notes[0].startswith(f"{BROKEN} did not load: "), tray.notes
    assert "not a valid model file" in tray.notes[0]
    entry = tray.item(BROKEN, "Chat")
    assert entry.label.startswith(f"{BROKEN}: failed (") and entry.label.endswith("click to retry")
    assert entry.enabled and entry.checked is False
    assert icon_state(tray.view()) == IconState.ERROR
    # The tray's poll sees the same change and notifies it (once) even when the load came from elsewhere.
    assert notices(before, tray.client.status()["models"]) == [f"{BROKEN} failed to load: " + next(
        r["error"] for r in tray.client.status()["models"] if r["id"] == BROKEN)]


def test_open_items_hand_the_folder_page_and_address_to_the_desktop(tray: Tray, desktop: Recorder) -> None:
    tray.click("Open models folder")
    tray.click("Open logs")
    tray.click("Open dashboard")
    tray.click("Copy API address")
    calls = desktop.calls()
    deadline = time.monotonic() + 5
    while len(calls) < 5 and time.monotonic() < deadline:  # the openers run detached
        time.sleep(0.05)
        calls = desktop.calls()
    data = tray.server.data_dir
    assert f"xdg-open {data / 'models'}" in calls
    assert f"xdg-open {data / 'logs'}" in calls
    assert f"browser {tray.server.url}/dashboard/login?token={tray.server.admin_token}" in calls
    assert "xclip -selection clipboard" in calls and tray.server.url in calls
    assert tray.notes == []


def test_game_mode_check_item_switches_it_through_the_admin_api(tray: Tray) -> None:
    tray.click("Game mode")
    assert tray.client.status()["game_mode"]["enabled"] is True
    assert tray.item("Game mode").checked is True
    tray.click("Game mode")
    assert tray.client.status()["game_mode"]["enabled"] is False
    assert tray.item("Game mode").checked is False and tray.notes == []


def test_quit_item_ends_the_app(tray: Tray) -> None:
    tray.click("Quit")
    assert tray.quit_asked


def test_notices_for_finished_and_failed_downloads() -> None:
    downloading = [{"id": "whisper-small", "state": "downloading"}, {"id": "qwen", "state": "verifying"}]
    done = [{"id": "whisper-small", "state": "installed"}, {"id": "qwen", "state": "failed", "error": "hash mismatch"}]
    assert notices(downloading, done) == ["whisper-small is downloaded and ready to use.",
                                          "qwen failed to download: hash mismatch"]
    assert notices(done, done) == []


def test_download_in_flight_shows_its_percent_and_cannot_be_clicked() -> None:
    status = {"models": [{"id": "whisper-small", "capability": "asr", "state": "downloading", "loaded": False,
                          "download": {"bytes_done": 250, "bytes_total": 1000}}], "gpu": {"available": False}}

    class NoActions:
        def __getattr__(self, name: str) -> object:
            def refuse(*_args: object) -> None:
                raise AssertionError(f"{name} must not be called")

            return refuse

    entries = build_menu(TrayView(address="http://127.0.0.1:11500", status=status), NoActions())  # type: ignore[arg-type]
    entry = next(e for e in entries if e.label == "Speech to text").submenu[0]
    assert entry.label == "whisper-small: downloading 25%" and not entry.enabled
    assert icon_state(TrayView(address="x", status=status)) == IconState.LOADING
    assert icon_state(TrayView(address="x", status=None, problem="refused")) == IconState.ERROR


def test_no_stdout_or_stderr_is_no_crash_and_the_log_file_gets_everything(tmp_path: Path) -> None:
    """A windowed build starts with sys.stdout and sys.stderr set to None."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys, logging; sys.stdout = None; sys.stderr = None\n"
        "from app.logs import setup_logging; from models.core.settings import Settings\n"
        f"path = setup_logging(Settings(data_dir={str(tmp_path)!r}), runners_to_file=True)\n"
        "print('printed'); sys.stderr.write('written'); logging.getLogger('aistack.test').info('logged')\n"
        "import os; assert os.environ['AISTACK_RUNNER_LOG'].endswith('runners.log')\n"
        "raise RuntimeError('uncaught')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == "" and result.stderr == ""
    text = (tmp_path / "logs" / "aistack.log").read_text()
    assert "aistack.test INFO logged" in text and "RuntimeError: uncaught" in text


def test_shipped_icons_are_the_drawn_ones_at_every_size() -> None:
    """assets/icons is generated by `python -m app.icons`; a change to the drawing must regenerate it."""
    from PIL import Image, ImageChops

    from app.icons import ICO_SIZES, IconState, draw, icon_folder

    for state in IconState:
        for size, suffix in ((64, ""), (16, "-16"), (32, "-32")):
            with Image.open(icon_folder() / f"{state.value}{suffix}.png") as shipped:
                diff = ImageChops.difference(shipped.convert("RGBA"), draw(state, size))
                assert max(band[1] for band in diff.getextrema()) <= 8, (state, size)
        with Image.open(icon_folder() / f"{state.value}.ico") as ico:
            assert ico.info["sizes"] == set(ICO_SIZES)
    assert (icon_folder() / "aistack.ico").read_bytes() == (icon_folder() / "idle.ico").read_bytes()


def test_active_game_mode_says_why_in_its_label() -> None:
    status = {"models": [], "gpu": {"available": True, "name": "RTX 4070", "memory_used_bytes": 9.1e9, "memory_total_bytes": 12e9},
              "game_mode": {"enabled": True, "active": True, "reason": "game.exe uses 8.2 GB of VRAM"}}
    view = TrayView(address="http://127.0.0.1:11500", status=status)
    entries = build_menu(view, Actions(Settings(), AdminClient("http://127.0.0.1:9", ""), print, lambda: None))
    labels = [e.label for e in entries]
    assert labels[1] == "RTX 4070: VRAM 9.1 / 12 GB"
    game = next(e for e in entries if e.label.startswith("Game mode"))
    assert game.label == "Game mode: active (game.exe uses 8.2 GB of VRAM)" and game.checked is True
    assert "Free GPU memory: nothing is loaded" in labels
    assert icon_state(view) == IconState.IDLE


def test_every_tooltip_fits_windows_limit() -> None:
    """Windows takes 127 UTF-16 units (emoji count twice); a longer title breaks every later icon update."""
    from tests.support.tray_views import edge_views, utf16_units

    for name, view in edge_views().items():
        text = tooltip(view)
        assert utf16_units(text) <= 127, f"{name}: {utf16_units(text)} units"
        assert text.startswith("aistack: "), name
    assert "Größe-模型" in tooltip(edge_views()["non-ascii names"])  # cut, not mangled
