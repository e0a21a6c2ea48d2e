"""pystray's plain-X backend, kept to one thread per X connection, and docked when a tray appears late.

pystray runs icon changes (`icon`, `title`, `visible`, `stop`) on its X loop: the
calling thread sends a message to the icon's own window, flushes, and waits for
the loop's answer. Both threads then use one python-xlib connection, which is
not safe across threads:

- the calling thread's flush sometimes reads the message off the socket itself:
  it then sits in python-xlib's queue while the loop waits in `select`, and the
  caller waits for ever (we saw `stop` hang about half the time);
- about one start in ten here, the loop, docking the icon at the caller's request,
  waited for ever on python-xlib's internal reply lock (the caller's flush had
  left it held), so the icon stayed an empty black square and the tray froze.

So `isolate` reroutes those calls: from any thread but the loop's, pystray's
message goes out on a second connection of our own (one lock, one thread at a
time on it), and its flush of the shared connection is skipped. Only the loop
thread ever touches pystray's connection. The loop still gets a harmless message
every quarter second, which wakes it should anything sit queued.

Stopping needs the same: `stop_icon` sends the very message pystray sends for
`stop` from our connection, and the loop destroys its window itself.

pystray also docks only when the icon is shown or changed, and takes a dock
request as done once sent: an icon shown before the panel's tray exists (aistack
started at login ahead of the panel), left behind by a panel that restarted, or
whose request the tray dropped (one start in 20 to 30 here) would never appear.
The freedesktop tray spec asks a client to dock whenever a tray manager appears;
so each nudge also looks: a shown icon whose window is not embedded (its parent
is still the root window) while a tray owns the selection gets, after a grace
of DOCK_GRACE_SEC, pystray's own `_show` run again on its loop.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

log = logging.getLogger("aistack.tray")
NUDGE_SEC = 0.25
DOCK_ANSWER_SEC = 5.0
DOCK_GRACE_SEC = 2.0  # a shown icon outside a running tray this long is docked again


class XorgNudger:
    def __init__(self, icon: Any):
        self.icon = icon
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aistack-tray-nudge", daemon=True)
        self._lock = threading.Lock()  # one thread at a time on our connection
        self._connection: Any = None

    @staticmethod
    def needed(icon: Any) -> bool:
        return type(icon).__module__.endswith("_xorg")

    def start(self) -> None:
        self.isolate()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def isolate(self) -> None:
        """Route pystray's cross-thread messages through our connection; its own stays with the loop thread."""
        icon = self.icon
        shared_send, shared_flush = icon._send_message, icon._display.flush

        def on_loop() -> bool:
            return getattr(icon, "_thread", None) is threading.current_thread()

        def send_message(window: Any, client_type: int, l0: int = 0, l1: int = 0, l2: int = 0, l3: int = 0) -> None:
            if on_loop() or not self.send(window, client_type, (l0, l1, l2, l3)):
                shared_send(window, client_type, l0, l1, l2, l3)
                shared_flush()

        def flush() -> None:
            if on_loop():
                shared_flush()

        icon._send_message = send_message
        icon._display.flush = flush

    def send(self, window: Any, atom: int | str, data: tuple[int, int, int, int] = (0, 0, 0, 0)) -> bool:
        """Send a client message to `window`'s creator (pystray's loop); False if our connection cannot."""
        try:
            from Xlib import X, display
            from Xlib.protocol import event
        except ImportError:
            return False
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = display.Display()
                connection = self._connection
                if isinstance(atom, str):
                    atom = connection.intern_atom(atom)
                # pystray's own message layout: (time, l0, l1, l2, l3). An empty event mask delivers it to the
                # client that created the window, i.e. pystray's connection.
                message = event.ClientMessage(window=window.id, client_type=atom, data=(32, [X.CurrentTime, *data]))
                connection.send_event(window.id, message, event_mask=X.NoEventMask)
                connection.flush()
            except Exception:  # no display, or the window is gone: callers fall back or stop
                log.debug("could not send to the tray icon's window", exc_info=True)
                return False
        return True

    def in_a_tray(self, window: Any) -> bool:
        """Whether a system tray has the icon's window embedded (its parent is no longer the root window)."""
        with self._lock:
            if self._connection is None:
                return True  # nothing to look with: take pystray's word
            connection = self._connection
            ours = connection.create_resource_object("window", window.id)
            return bool(ours.query_tree().parent.id != connection.screen().root.id)

    def tray_owned(self) -> bool:
        """Whether a system tray (the freedesktop selection `_NET_SYSTEM_TRAY_S<screen>`) has an owner now."""
        from Xlib import X

        with self._lock:
            if self._connection is None:
                return False
            connection = self._connection
            tray = connection.intern_atom(f"_NET_SYSTEM_TRAY_S{connection.get_default_screen()}")
            return bool(connection.get_selection_owner(tray) != X.NONE)

    def stop_icon(self) -> bool:
        """Make the icon's loop run pystray's own `_stop`; False if that could not be sent."""
        window = getattr(self.icon, "_window", None)
        return window is not None and self.send(window, "_PYSTRAY__STOP")  # pystray names it after the method

    def _run(self) -> None:
        outside_since: float | None = None  # when the shown icon was first seen outside a running tray
        while not self._stop.wait(NUDGE_SEC):
            window = getattr(self.icon, "_window", None)
            if window is None:
                continue
            if not self.send(window, "_AISTACK_NUDGE"):
                return  # the window is gone: the icon stopped
            try:
                if not self.icon.visible or self.in_a_tray(window) or not self.tray_owned():
                    outside_since = None  # docked, hidden, or no tray to dock in yet
                    continue
            except Exception:  # the display went away
                log.debug("could not look for a system tray", exc_info=True)
                return
            now = time.monotonic()
            if outside_since is None:
                outside_since = now  # a tray takes a moment to embed a window it was asked to: wait DOCK_GRACE_SEC
            elif now - outside_since >= DOCK_GRACE_SEC:
                log.info("the icon is in no system tray, though one is running: docking it")
                self.icon._systray_manager = None  # pystray's "not docked"
                if self.send(window, "_PYSTRAY__SHOW"):
                    self._take_answer()
                outside_since = time.monotonic()

    def _take_answer(self) -> None:
        """pystray's loop answers each such message on the icon's queue; a caller that sent none must not get it."""
        answers = getattr(self.icon, "_queue", None)
        if answers is not None:
            try:
                answers.get(timeout=DOCK_ANSWER_SEC)
            except queue.Empty:
                log.debug("the tray loop did not answer the dock request")
