"""The tray app on a virtual X display with a real system tray (Xvfb + trayer), driven with xdotool.

`aistack` starts, its icon docks and the server answers; a second `aistack`
hands over to the first and exits 0; Quit (the menu's own item, clicked like
a user would, on the GTK backend) or SIGTERM (the plain-X backend, which has no
menu) stops everything with no process left. Screenshots go to tmp, or to
AISTACK_TRAY_SCREENSHOTS (the README's pictures come from `AISTACK_TRAY_SCREENSHOTS=docs`).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from app.icons import COLOURS
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb, trayer and xdotool (make system-test-deps)")
DEBIAN_GI = Path("/usr/lib/python3/dist-packages/gi")
GTK_PACKAGES = "python3-gi gir1.2-gtk-3.0 dbus (for dbus-run-session)"


def x(*argv: str, display: str) -> str:
    return subprocess.run(argv, env={**os.environ, "DISPLAY": display}, capture_output=True, text=True, timeout=20).stdout


@pytest.fixture
def bare_display() -> Iterator[str]:
    """A fresh X display (Xvfb picks a free number) with no system tray yet."""
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 30)
        assert ready, "Xvfb did not start"
        yield ":" + os.read(read_end, 32).decode().strip()  # the pipe stays open: Xvfb dies of SIGPIPE otherwise
    finally:
        xvfb.terminate()
        xvfb.wait(10)
        os.close(read_end)


@contextlib.contextmanager
def system_tray(display: str) -> Iterator[None]:
    """trayer as the display's system tray, once it owns the tray selection (its panel shows a moment earlier)."""
    trayer = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "request", "--height", "32",
                               "--SetDockType", "true", "--transparent", "false", "--tint", "0xdddddd"],
                              env={**os.environ, "DISPLAY": display}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: panel(display) is not None and tray_owner(display), 30,
                 f"trayer to own the system tray on {display} (trayer exit {trayer.poll()})")
        yield
    finally:
        trayer.terminate()
        trayer.wait(10)


@pytest.fixture
def display(bare_display: str) -> Iterator[str]:
    """A fresh X display with trayer as its system tray."""
    with system_tray(bare_display):
        yield bare_display


def tray_owner(display: str) -> bool:
    """Whether a client owns the system tray selection of `display`'s screen 0."""
    from Xlib import X
    from Xlib import display as xdisplay

    connection = xdisplay.Display(display)
    try:
        return connection.get_selection_owner(connection.intern_atom("_NET_SYSTEM_TRAY_S0")) != X.NONE
    finally:
        connection.close()


def wait_for(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def panel(display: str) -> tuple[int, int, int, int] | None:
    """trayer's panel as (x, y, width, height)."""
    ids = x("xdotool", "search", "--name", "^panel$", display=display).split()
    if not ids:
        return None
    info = x("xwininfo", "-id", ids[0], display=display)
    value = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in info.splitlines()) if v}
    return (int(value["Absolute upper-left X"]), int(value["Absolute upper-left Y"]), int(value["Width"]), int(value["Height"]))


def visible_windows(display: str) -> dict[str, tuple[int, int, int, int]]:
    found = {}
    for wid in x("xdotool", "search", "--onlyvisible", "--name", "", display=display).split():
        geometry = x("xdotool", "getwindowgeometry", "--shell", wid, display=display)
        value = dict(line.split("=", 1) for line in geometry.split() if "=" in line)
        found[wid] = (int(value["X"]), int(value["Y"]), int(value["WIDTH"]), int(value["HEIGHT"]))
    return found


def screenshot(display: str, path: Path, box: tuple[int, int, int, int], scale: int = 1) -> object:
    from PIL import Image

    full = path.with_suffix(".full.png")
    subprocess.run(["import", "-window", "root", str(full)], env={**os.environ, "DISPLAY": display}, check=True, timeout=30)
    with Image.open(full) as image:
        left, top, width, height = box
        crop = image.convert("RGB").crop((max(0, left), max(0, top), left + width, top + height))
    full.unlink()
    if scale > 1:
        crop = crop.resize((crop.width * scale, crop.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    crop.save(path, optimize=True)
    return crop


def gtk_pythonpath(tmp_path: Path) -> str | None:
    """A PYTHONPATH under which this Python imports GTK: "" if it can already, Debian's python3-gi if ABI-compatible."""
    probe = "import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk"
    for path in ("", str(tmp_path / "gi-only")):
        if path and DEBIAN_GI.is_dir():
            (tmp_path / "gi-only").mkdir(exist_ok=True)
            (tmp_path / "gi-only" / "gi").symlink_to(DEBIAN_GI)  # only gi, not the rest of Debian's packages
        if subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": path}, capture_output=True).returncode == 0:
            return path
    return None


class TrayApp:
    """`aistack` (no arguments) as a user starts it, on the given display."""

    def __init__(self, data_dir: Path, display: str, backend: str, tmp_path: Path, pythonpath: str = ""):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.opened = tmp_path / "opened.txt"
        browser = tmp_path / "browser"
        browser.write_text(f'#!/bin/sh\necho "$1" >> "{self.opened}"\n')
        browser.chmod(0o755)
        self.env = {**os.environ, "DISPLAY": display, "AISTACK_DATA_DIR": str(data_dir), "AISTACK_PORT": str(self.port),
                    "PYSTRAY_BACKEND": backend, "BROWSER": str(browser), "HOME": str(tmp_path / "home"),
                    "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
        self.env.pop("WAYLAND_DISPLAY", None)
        self.env.pop("AISTACK_HOST", None)
        self.argv = [sys.executable, "-m", "app"]
        if backend == "gtk":  # GTK's tray talks to a session bus for notifications
            self.argv = ["dbus-run-session", "--", *self.argv]
        self.log = tmp_path / "aistack.out"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for(self.healthy, 60, f"the server to answer\n{self.output()}")
        self.pid = int(wait_for(lambda: _lock_pid(data_dir), 20, "the lock file"))

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"aistack exited with {self.proc.returncode}:\n{self.output()}")
        try:
            return httpx.get(self.url + "/health", timeout=1).json().get("app") == "aistack"
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def second_launch(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)

    def our_processes(self) -> list[psutil.Process]:
        """Every process started for this data dir (the app and its runners share the environment)."""
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("AISTACK_DATA_DIR") == str(self.data_dir) and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _lock_pid(data_dir: Path) -> int | None:
    from app.single_instance import running_instance

    return running_instance(data_dir).get("pid")


@pytest.fixture
def data_dir(starter_data_dir: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    for model in (starter_data_dir / "models").iterdir():
        if (model / "manifest.json").is_file():
            (data / "models" / model.name).symlink_to(model, target_is_directory=True)
    return data


def shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("AISTACK_TRAY_SCREENSHOTS")
    return (ROOT / chosen if chosen and not Path(chosen).is_absolute() else Path(chosen)) if chosen else tmp_path


def assert_icon_docked(display: str, app: TrayApp, picture: Path) -> None:
    """The panel grows by one icon, and the pixels there soon are the icon's colours."""
    wait_for(lambda: (panel(display) or (0, 0, 0, 0))[2] >= 20, 30, f"the icon to dock\n{app.output()}")

    def icon_drawn() -> bool:  # the icon paints after it docks, and the first status poll sets its state's picture
        left, top, width, height = panel(display)  # type: ignore[misc]
        image = screenshot(display, picture, (left + width - 150, top, 150, height + 4), scale=2)
        colours = {colour for _count, colour in image.getcolors(1 << 20)}  # type: ignore[attr-defined]
        return any(all(abs(a - b) <= 12 for a, b in zip(pixel, rgb, strict=True)) for pixel in colours for rgb in COLOURS.values())

    time.sleep(1.0)  # a state's colours, not only the first picture's
    wait_for(icon_drawn, 15, f"the icon's colours in the panel\n{app.output()}")


def load_a_model(app: TrayApp) -> psutil.Process:
    token = (app.data_dir / "admin-token").read_text().strip()
    row = httpx.post(f"{app.url}/admin/api/models/smollm2-135m-instruct/load", headers={"X-Aistack-Admin-Token": token},
                     timeout=120).json()
    return psutil.Process(row["runner_pid"])


def assert_second_launch_hands_over(app: TrayApp) -> None:
    second = app.second_launch()
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    assert _lock_pid(app.data_dir) == app.pid and psutil.pid_exists(app.pid) and app.proc.poll() is None
    # The first instance opened its dashboard (through the stand-in browser).
    opened = wait_for(lambda: app.opened.exists() and app.opened.read_text(), 10, "the dashboard to open")
    assert opened.strip().startswith(f"{app.url}/dashboard/login?token=")


def assert_everything_stopped(app: TrayApp, runner: psutil.Process) -> None:
    assert app.proc.wait(30) == 0, app.output()
    runner.wait(5)
    assert not psutil.pid_exists(app.pid)
    # multiprocessing's resource tracker leaves when it sees its parent gone; give it a moment.
    deadline = time.monotonic() + 5
    while app.our_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = app.our_processes()
    assert left == [], [(p.pid, p.ppid(), p.cmdline()) for p in left]
    assert "aistack stopped" in (app.data_dir / "logs" / "aistack.log").read_text()


def test_gtk_tray_docks_shows_its_menu_and_quits_from_it(display: str, data_dir: Path, tmp_path: Path) -> None:
    pythonpath = gtk_pythonpath(tmp_path)
    assert pythonpath is not None, f"GTK for Python is missing: install {GTK_PACKAGES}"
    app = TrayApp(data_dir, display, "gtk", tmp_path, pythonpath)
    try:
        assert_icon_docked(display, app, shots(tmp_path) / "tray-icon.png")
        runner = load_a_model(app)
        assert_second_launch_hands_over(app)
        left, top, width, height = panel(display)  # type: ignore[misc]
        before = visible_windows(display)
        x("xdotool", "mousemove", str(left + width - 16), str(top + height // 2), "click", "3", display=display)
        menu = wait_for(lambda: [g for w, g in visible_windows(display).items() if w not in before and g[3] > 150], 10,
                        "the menu to open")[0]
        time.sleep(1.0)  # the menu draws after it maps
        mleft, mtop, mwidth, mheight = menu
        # Open the Chat submenu (the sixth row: title, GPU, separator, three capabilities): the loaded model is checked.
        shown = visible_windows(display)
        x("xdotool", "mousemove", str(mleft + 60), str(mtop + 117), display=display)
        submenu = wait_for(lambda: [g for w, g in visible_windows(display).items() if w not in shown and g[3] > 20], 10,
                           "the Chat submenu to open")[0]
        time.sleep(1.0)
        left_edge = min(mleft, submenu[0]) - 10
        screenshot(display, shots(tmp_path) / "tray-menu.png", (left_edge, 0, 800 - left_edge, mtop + mheight + 10))
        x("xdotool", "mousemove", str(mleft + 40), str(mtop + mheight - 14), "click", "1", display=display)  # Quit
        assert_everything_stopped(app, runner)
        assert "quitting" in (data_dir / "logs" / "aistack.log").read_text()
    finally:
        app.kill()


def test_plain_x_tray_docks_hands_over_and_stops_on_sigterm(display: str, data_dir: Path, tmp_path: Path) -> None:
    app = TrayApp(data_dir, display, "xorg", tmp_path)
    try:
        assert_icon_docked(display, app, tmp_path / "xorg-icon.png")
        runner = load_a_model(app)
        # The runner's own output goes to logs/runners.log (a windowed build has no stdout to give it).
        assert f"runner[{runner.pid}]" in (data_dir / "logs" / "runners.log").read_text()
        assert_second_launch_hands_over(app)
        os.kill(app.pid, signal.SIGTERM)
        assert_everything_stopped(app, runner)
    finally:
        app.kill()


def test_the_icon_docks_in_a_tray_that_appears_after_it(bare_display: str, data_dir: Path, tmp_path: Path) -> None:
    """aistack started at login before the panel, then the panel restarting: pystray docks only when shown."""
    app = TrayApp(data_dir, bare_display, "xorg", tmp_path)
    log = data_dir / "logs" / "aistack.log"
    try:
        time.sleep(1.0)  # the icon is shown, with no tray to dock in
        assert "Failed to dock icon" in app.output()  # pystray's own word that the first try found no tray
        with system_tray(bare_display):
            assert_icon_docked(bare_display, app, tmp_path / "late-tray-icon.png")
        assert log.read_text().count("the icon is in no system tray") == 1
        with system_tray(bare_display):  # the panel restarts
            assert_icon_docked(bare_display, app, tmp_path / "restarted-tray-icon.png")
        assert log.read_text().count("the icon is in no system tray") == 2
        assert app.proc.poll() is None and app.healthy()
    finally:
        app.kill()


def test_a_foreign_program_on_the_port_is_said_plainly(display: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        env = {**os.environ, "DISPLAY": display, "AISTACK_DATA_DIR": str(tmp_path / "data"), "AISTACK_PORT": str(port),
               "PYSTRAY_BACKEND": "xorg", "HOME": str(tmp_path)}
        app = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        try:
            log = tmp_path / "data" / "logs" / "aistack.log"
            wait_for(lambda: log.exists() and "is taken" in log.read_text(), 30, "the taken port to be logged")
            wait_for(lambda: (panel(display) or (0, 0, 0, 0))[2] >= 20, 30, "the error icon to dock")
            app.send_signal(signal.SIGTERM)  # it would stay up PROBLEM_SHOWN_SEC (10 s); a signal ends that at once
            _out, stderr = app.communicate(timeout=6)
        finally:
            app.kill()
    assert app.returncode == 3
    for text in (stderr, log.read_text()):
        assert f"Port {port} on 127.0.0.1 is taken: another program is using it" in text
        assert "--port or AISTACK_PORT" in text
