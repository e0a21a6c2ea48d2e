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
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("aistack.tray")
NUDGE_SEC = 0.25


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
            from Xlib import X, display
            from Xlib.protocol import event

            connection = display.Display()
            try:
                atom = connection.intern_atom("_PYSTRAY__STOP")  # pystray names it after the method it runs
                message = event.ClientMessage(window=window.id, client_type=atom, data=(32, [0, 0, 0, 0, 0]))
                connection.send_event(window.id, message, event_mask=X.NoEventMask)
                connection.flush()
            finally:
                connection.close()
        except Exception:  # the caller falls back to pystray's stop
            log.debug("could not ask the X loop to stop", exc_info=True)
            return False
        return True

    def _run(self) -> None:
        try:
            from Xlib import X, display
            from Xlib.protocol import event
        except ImportError:
            return
        try:
            connection = display.Display()
            atom = connection.intern_atom("_AISTACK_NUDGE")
        except Exception:
            log.debug("no second X connection for the tray nudge", exc_info=True)
            return
        try:
            while not self._stop.wait(NUDGE_SEC):
                window = getattr(self.icon, "_window", None)
                if window is None:
                    continue
                # event_mask 0: delivered to the client that created the window, i.e. pystray's connection.
                message = event.ClientMessage(window=window.id, client_type=atom, data=(32, [0, 0, 0, 0, 0]))
                try:
                    connection.send_event(window.id, message, event_mask=X.NoEventMask)
                    connection.flush()
                except Exception:  # noqa: BLE001 - the window is gone: the icon stopped
                    return
        finally:
            connection.close()
