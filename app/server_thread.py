"""The HTTP server on a thread beside the tray (the tray needs the main thread).

uvicorn installs signal handlers only on the main thread, so here it installs
none and the tray decides when to stop. Stopping closes the listening socket
first (no new requests), gives open requests a few seconds, cancels the rest,
then runs the app's shutdown, which ends every runner process.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from models.core.settings import Settings

log = logging.getLogger("aistack.app")


class ServerThread:
    def __init__(self, settings: Settings, sock: socket.socket):
        from app.serving import make_server

        self.settings = settings
        self.server: Any = make_server(settings)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="aistack-server", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:
            self.error = exc
            log.exception("the server stopped with an error")

    def start(self) -> None:
        self._thread.start()

    def wait_started(self, timeout: float = 60) -> bool:
        """True once the server accepts requests; False if it died or did not start in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if self.server.started:
                return True
            time.sleep(0.05)
        return bool(self.server.started) and self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 30) -> bool:
        """Stop serving and unload every model; True when it finished within `timeout`."""
        if not self._thread.is_alive():
            return True
        self.server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the server did not stop within %.0f s; forcing it", timeout)
            self.server.force_exit = True
            self._thread.join(5)
        return not self._thread.is_alive()
