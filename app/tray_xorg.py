"""A nudge for pystray's plain-X backend, whose main loop can miss a message from another thread.

pystray runs icon changes (`icon`, `title`, `stop`) on its X loop by sending a
message to its own window and waiting for the answer. python-xlib shares one
connection between the threads, and the sending thread sometimes reads that
message off the socket itself: it then sits in python-xlib's queue while the
loop waits in `select` for more data, and the sender waits for ever (we saw
`stop` hang about half the time). A harmless message from a second connection,
every quarter second, wakes the loop so it finds what is queued.

Stopping has the same race and nothing left to nudge once the window is gone,
so `stop_icon` asks the loop to stop itself: it sends the very message pystray
sends for `stop`, from the second connection, and the loop then destroys its
window and reads the end of it on its own thread.

pystray also docks only when the icon is shown or changed: an icon shown before
the panel's tray exists (aistack started at login before the panel, or a
panel that restarted) would never appear. The freedesktop tray spec asks a
client to dock when a tray manager appears; so while the icon is shown but not
docked, each nudge looks for the tray's owner and, once there is one, has the
loop run pystray's own `_show` again (the message pystray itself sends for it).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("aistack.tray")
NUDGE_SEC = 0.25
DOCK_ANSWER_SEC = 5.0


class XorgNudger:
    def __init__(self, icon: Any):
        self.icon = icon
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aistack-tray-nudge", daemon=True)

    @staticmethod
    def needed(icon: Any) -> bool:
        return type(icon).__module__.endswith("_xorg")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def stop_icon(self) -> bool:
        """Make the icon's loop run pystray's own `_stop`; False if that could not be sent."""
        window = getattr(self.icon, "_window", None)
        if window is None:
            return False
        try:
            from Xlib import display

            connection = display.Display()
            try:
                self._send(connection, window, connection.intern_atom("_PYSTRAY__STOP"))
            finally:
                connection.close()
        except Exception:  # the caller falls back to pystray's stop
            log.debug("could not ask the X loop to stop", exc_info=True)
            return False
        return True

    def _run(self) -> None:
        try:
            from Xlib import X, display
        except ImportError:
            return
        try:
            connection = display.Display()
            nudge = connection.intern_atom("_AISTACK_NUDGE")
            show = connection.intern_atom("_PYSTRAY__SHOW")
            tray = connection.intern_atom(f"_NET_SYSTEM_TRAY_S{connection.get_default_screen()}")
        except Exception:
            log.debug("no second X connection for the tray nudge", exc_info=True)
            return
        try:
            while not self._stop.wait(NUDGE_SEC):
                window = getattr(self.icon, "_window", None)
                if window is None:
                    continue
                try:
                    if self._undocked() and connection.get_selection_owner(tray) != X.NONE:
                        log.info("a system tray appeared: docking the icon")
                        self._send(connection, window, show)
                        self._take_answer()
                    self._send(connection, window, nudge)
                except Exception:  # noqa: BLE001 - the window is gone: the icon stopped
                    return
        finally:
            connection.close()

    def _undocked(self) -> bool:
        """Shown, but in no tray (pystray keeps the tray it docked in as `_systray_manager`)."""
        return bool(self.icon.visible) and getattr(self.icon, "_systray_manager", True) is None

    @staticmethod
    def _send(connection: Any, window: Any, atom: int) -> None:
        """Send `atom` to the icon's window; pystray runs its method `_X` for an atom named `_PYSTRAY__X`."""
        from Xlib import X
        from Xlib.protocol import event

        # event_mask 0: delivered to the client that created the window, i.e. pystray's connection.
        message = event.ClientMessage(window=window.id, client_type=atom, data=(32, [0, 0, 0, 0, 0]))
        connection.send_event(window.id, message, event_mask=X.NoEventMask)
        connection.flush()

    def _take_answer(self) -> None:
        """pystray's loop answers each such message on the icon's queue; a caller that sent none must not get it."""
        import queue

        answers = getattr(self.icon, "_queue", None)
        if answers is not None:
            try:
                answers.get(timeout=DOCK_ANSWER_SEC)
            except queue.Empty:
                log.debug("the tray loop did not answer the dock request")
