"""`aistack` with no arguments: the server plus the tray icon, one instance per data dir.

The icon runs on the main thread (pystray: win32 on Windows, AppIndicator,
GTK or plain X on Linux); the server runs in `ServerThread`. Every second the
tray reads `GET /admin/api/status` and, when something changed, redraws the
icon, tooltip and menu and notifies about finished downloads and failed loads.
With no display or no usable tray backend it says why in the log and runs
headless.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

from app import autostart, desktop, icons, single_instance
from app.admin_client import AdminClient, AdminError
from app.server_thread import ServerThread
from app.serving import EXIT_PORT_IN_USE, PortInUse, bind_socket
from app.tray_actions import Actions, dashboard_url, local_url, read_admin_token
from app.tray_menu import TOOLTIP_MAX, Entry, TrayView, build_menu, clip_utf16, icon_state, tooltip
from app.tray_notices import notices
from app.tray_xorg import XorgNudger
from models.core.settings import Settings

log = logging.getLogger("aistack.tray")
EXIT_NOT_ANSWERING = 1
POLL_SEC = 1.0
LOOP_END_WAIT_SEC = 5  # after Quit, how long the icon's loop may take to end once everything else has stopped
PROBLEM_SHOWN_SEC = 10  # how long the icon stays up to tell about a taken port before the app exits
_BACKENDS = ("appindicator", "gtk", "xorg")
_quit_early = threading.Event()  # a signal that came before the tray or headless loop was ready for it


def run_tray_or_headless(settings: Settings) -> int:
    lock = single_instance.InstanceLock(settings.data_dir)
    if not lock.acquire():
        return _hand_over_to_running(settings)
    try:
        return _run_first_instance(settings, lock)
    finally:
        lock.release()


def _hand_over_to_running(settings: Settings) -> int:
    """Another tray app holds the data dir: ask it to open its dashboard, then leave."""
    url = single_instance.wait_for_running(settings.data_dir)
    if url is None:
        pid = single_instance.running_instance(settings.data_dir).get("pid", "?")
        log.error("Another aistack (pid %s) holds %s but does not answer. Wait for it to start, or end it.",
                  pid, settings.data_dir / single_instance.LOCK_FILE)
        return EXIT_NOT_ANSWERING
    if single_instance.ask_to_show(settings.data_dir):
        log.info("aistack is already running at %s; it opens its dashboard", url)
    else:
        log.info("aistack is already running at %s (without a tray); opening its dashboard", url)
        _open_quietly(dashboard_url(settings, url))
    return 0


def _run_first_instance(settings: Settings, lock: single_instance.InstanceLock) -> int:
    _on_signals(_quit_early.set)
    pystray, problem = load_pystray()
    try:
        sock = bind_socket(settings)
    except PortInUse as exc:
        if exc.by_aistack:
            log.info("%s Opening its dashboard.", exc)
            _open_quietly(dashboard_url(settings))
            return 0
        log.error("%s", exc)
        if pystray is not None:
            show_problem(pystray, str(exc), EXIT_PORT_IN_USE)
        return EXIT_PORT_IN_USE
    server = ServerThread(settings, sock)
    server.start()
    lock.publish(local_url(settings))
    log.info("aistack serving on %s (data in %s)", local_url(settings), settings.data_dir)
    if pystray is None:
        log.warning("No tray icon: %s. Running headless; `aistack serve` does the same on purpose.", problem)
        return _run_headless(server)
    return Tray(pystray, settings, server).run()


def load_pystray() -> tuple[ModuleType | None, str | None]:
    """pystray with a backend that can work here, or None and the reason."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return None, "there is no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    chosen = os.environ.get("PYSTRAY_BACKEND")
    problems = []
    for backend in [chosen] if chosen else [None, *_BACKENDS]:
        if backend:
            os.environ["PYSTRAY_BACKEND"] = backend
        try:
            import pystray

            return pystray, None
        except Exception as exc:  # noqa: BLE001 - pystray raises ImportError, ValueError (gi) or X errors
            problems.append(f"{backend or 'default'}: {exc}")
            for name in [m for m in sys.modules if m.startswith("pystray")]:
                del sys.modules[name]
    return None, "no tray backend works (" + "; ".join(problems) + ")"


def _open_quietly(url: str) -> None:
    try:
        desktop.open_url(url)
    except (OSError, desktop.DesktopError) as exc:
        log.warning("%s", exc)


def _run_headless(server: ServerThread) -> int:
    stop = _quit_early
    _on_signals(stop.set)
    while server.running and not stop.wait(0.5):
        pass
    server.stop()
    _end_leftover_children()
    return 0


def show_problem(pystray: ModuleType, message: str, exit_code: int) -> None:
    """Show the error icon with `message` and a notification for a while (the app is about to exit)."""
    dismissed, loop_ended = threading.Event(), threading.Event()
    menu = pystray.Menu(pystray.MenuItem(message, None, enabled=False), pystray.MenuItem("Quit", lambda: dismissed.set()))
    icon = pystray.Icon("aistack", icons.load(icons.IconState.ERROR), clip_utf16(f"aistack: {message}", TOOLTIP_MAX), menu=menu)
    nudger = XorgNudger(icon)
    _on_signals(dismissed.set)  # a signal ends the wait early, with the same exit code

    def setup(icon: Any) -> None:
        icon.visible = True
        if icon.HAS_NOTIFICATION:
            icon.notify(message, "aistack cannot start")
        dismissed.wait(PROBLEM_SHOWN_SEC)
        # The same plain-X stop race as Tray.quit (icon.stop itself may hang): the problem is said and
        # logged already, so a loop that does not end in time must not keep the process.
        threading.Thread(target=_exit_unless, args=(loop_ended, exit_code), name="aistack-exit-guard", daemon=True).start()
        _stop_icon(icon, nudger)

    if XorgNudger.needed(icon):
        nudger.start()
    try:
        icon.run(setup)
    except Exception:
        log.warning("could not show the tray icon for this problem", exc_info=True)
    finally:
        loop_ended.set()
        nudger.stop()


def _exit_unless(loop_ended: threading.Event, exit_code: int) -> None:
    if not loop_ended.wait(LOOP_END_WAIT_SEC):
        log.warning("the tray icon's loop did not end; exiting anyway")
        logging.shutdown()
        os._exit(exit_code)


def _stop_icon(icon: Any, nudger: XorgNudger) -> None:
    """End the icon's loop from any thread (the plain-X backend needs its loop to do it itself)."""
    if not (XorgNudger.needed(icon) and nudger.stop_icon()):
        icon.stop()


def _on_signals(handler: Callable[[], None]) -> None:
    """SIGTERM, SIGINT (and SIGBREAK on Windows) call `handler` on the main thread."""
    for name in ("SIGTERM", "SIGINT", "SIGBREAK", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda _signum, _frame: handler())


def _end_leftover_children() -> None:
    """The server ends its runners; this is the net under it, so no process outlives the app."""
    for child in multiprocessing.active_children():
        log.warning("ending leftover process %s (pid %s)", child.name, child.pid)
        child.terminate()
        child.join(5)
        if child.is_alive():
            child.kill()


class Tray:
    def __init__(self, pystray: ModuleType, settings: Settings, server: ServerThread):
        self.pystray = pystray
        self.settings = settings
        self.server = server
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._work = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aistack-tray")
        self._shown: tuple[Any, ...] = ()
        self._loop_ended = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._stopped: bool | None = None
        self.view = TrayView(address=local_url(settings), starting=True, autostart=_autostart_state(),
                             clipboard=desktop.clipboard_command() is not None)
        self.client: AdminClient | None = None
        self.actions: Actions | None = None
        self.icon = pystray.Icon("aistack", icons.load(icon_state(self.view)), tooltip(self.view))
        self._nudger = XorgNudger(self.icon)
        _hook_session_end(self.icon, self._end_session)

    # Running -------------------------------------------------------------------------
    def run(self) -> int:
        _on_signals(self.quit)
        if _quit_early.is_set():
            self.quit()
        log.info("tray icon starting (pystray backend %s)", type(self.icon).__module__.rsplit(".", 1)[-1].lstrip("_"))
        if XorgNudger.needed(self.icon):
            self._nudger.start()
        try:
            self.icon.run(setup=self._setup)
        except Exception:
            if self._stopping.is_set():  # e.g. GTK's notification service missing at the loop's end
                log.debug("the tray icon's loop ended with an error while stopping", exc_info=True)
            else:
                log.exception("the tray icon failed; running headless")
                return _run_headless(self.server)
        finally:
            self._loop_ended.set()
            self._nudger.stop()
        return self._shut_down()

    def _setup(self, icon: Any) -> None:
        if type(icon).__module__.endswith("_gtk") or type(icon).__module__.endswith("_appindicator"):
            from gi.repository import GLib

            GLib.idle_add(lambda: _on_signals(self.quit))  # pystray's GTK start resets SIGINT; set ours again
        icon.visible = True
        if not self.server.wait_started():
            self.view.problem = f"the server did not start ({self.server.error or 'see the log'})"
            self.notify(f"aistack could not start its server: {self.server.error or 'see the log'}")
        token = read_admin_token(self.settings)
        self.client = AdminClient(local_url(self.settings), token)
        self.actions = Actions(self.settings, self.client, self.notify, self.quit)
        self._poll_forever()

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self.refresh()
            except Exception:
                log.exception("the tray could not show the latest status")
            if single_instance.take_show_request(self.settings.data_dir):
                log.info("another launch asked to show aistack: opening the dashboard")
                self._run(self.actions.open_dashboard if self.actions else lambda: None)
            self._wake.wait(POLL_SEC)
            self._wake.clear()

    def refresh(self) -> None:
        """Read the status and redraw what changed."""
        assert self.client is not None and self.actions is not None
        try:
            status, problem = self.client.status(), None
        except AdminError as exc:
            status, problem = None, str(exc)
        old_rows = self.view.rows
        self.view = TrayView(address=self.view.address, status=status, problem=problem or self.view.problem,
                             starting=False, autostart=_autostart_state(), clipboard=self.view.clipboard)
        for message in notices(old_rows, self.view.rows) if status is not None else []:
            self.notify(message)
        entries = build_menu(self.view, self.actions)
        shown = (icon_state(self.view), tooltip(self.view), _signature(entries))
        if shown != self._shown:
            self._shown = shown
            self.icon.icon = icons.load(shown[0])
            self.icon.title = _displayable(shown[1], self.icon)
            self.icon.menu = self.pystray.Menu(*[self._item(entry) for entry in entries])

    def _item(self, entry: Entry) -> Any:
        pystray = self.pystray
        if entry.is_separator:
            return pystray.Menu.SEPARATOR
        if entry.submenu:
            return pystray.MenuItem(entry.label, pystray.Menu(*[self._item(e) for e in entry.submenu]))
        action = entry.action
        return pystray.MenuItem(
            entry.label,
            (lambda: self._run(action)) if action is not None else None,
            checked=(lambda _item: bool(entry.checked)) if entry.checked is not None else None,
            enabled=entry.enabled,
            default=entry.default,
        )

    def _run(self, action: Callable[[], None]) -> None:
        """Menu clicks arrive on the icon's thread: do the work elsewhere, then redraw at once."""
        def work() -> None:
            try:
                action()
            finally:
                self._wake.set()

        if not self._stopping.is_set():
            self._work.submit(work)
            self._wake.set()

    def notify(self, message: str) -> None:
        log.info("notification: %s", message)
        if self.icon.HAS_NOTIFICATION:
            try:
                self.icon.notify(message, "aistack")
            except Exception:
                log.debug("notification not shown", exc_info=True)

    # Stopping ------------------------------------------------------------------------
    def quit(self) -> None:
        """Quit from the menu or a signal: stop the server and every runner, then remove the icon."""
        if not self._stopping.is_set():
            log.info("quitting")
            self._stopping.set()
            self._wake.set()
            threading.Thread(target=self._quit_now, name="aistack-quit", daemon=True).start()

    def _quit_now(self) -> None:
        self.icon.title = "aistack: stopping"
        self._shut_down()
        # Everything is stopped already; a tray loop that does not end (icon.stop may hang) must not keep the process.
        threading.Thread(target=_exit_unless, args=(self._loop_ended, 0), name="aistack-exit-guard", daemon=True).start()
        _stop_icon(self.icon, self._nudger)

    def _shut_down(self) -> int:
        """Stop accepting requests, cancel jobs, end every runner, stop the server (once; later calls wait)."""
        with self._shutdown_lock:
            if self._stopped is None:
                self._stopping.set()
                self._work.shutdown(wait=False, cancel_futures=True)
                self._stopped = self.server.stop()
                _end_leftover_children()
                log.info("aistack stopped%s", "" if self._stopped else " (the server had to be forced)")
        return 0

    def _end_session(self) -> None:
        """Windows is logging off or shutting down: stop now, before Windows ends the process."""
        log.info("the Windows session is ending")
        self._stopping.set()
        self._shut_down()


def _autostart_state() -> bool | None:
    if not (sys.platform == "win32" or sys.platform.startswith("linux")):
        return None
    try:
        return autostart.is_enabled()
    except OSError:
        return None


def _displayable(text: str, icon: Any) -> str:
    """Plain X window titles are Latin-1; other backends take any text."""
    if type(icon).__module__.endswith("_xorg"):
        return text.encode("latin-1", "replace").decode("latin-1")
    return text


def _signature(entries: list[Entry]) -> tuple[Any, ...]:
    return tuple((e.label, e.checked, e.enabled, _signature(list(e.submenu))) for e in entries)


def _hook_session_end(icon: Any, on_end: Callable[[], None]) -> None:
    """Windows sends WM_ENDSESSION to the icon's window at log-off and shutdown (pystray's win32 backend)."""
    handlers = getattr(icon, "_message_handlers", None)
    if sys.platform != "win32" or not isinstance(handlers, dict):
        return
    wm_queryendsession, wm_endsession = 0x0011, 0x0016
    handlers[wm_queryendsession] = lambda _w, _l: 1

    def on_endsession(ending: int, _l: int) -> int:
        if ending:
            on_end()
        return 0

    handlers[wm_endsession] = on_endsession
