"""Running the HTTP server on a socket the app binds itself."""

from __future__ import annotations

import errno
import json
import logging
import socket
import sys
import urllib.request
from typing import Any

from models.core.settings import Settings

log = logging.getLogger("aistack.app")
EXIT_PORT_IN_USE = 3


class PortInUse(Exception):
    """The port is taken; `by_aistack` says whether an aistack answers there."""

    def __init__(self, message: str, by_aistack: bool):
        super().__init__(message)
        self.by_aistack = by_aistack


def bind_socket(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if sys.platform != "win32":  # on Windows SO_REUSEADDR would let two servers share the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1), errno.EACCES):
            running = aistack_running_at(settings)
            what = "another aistack is already running there" if running else "another program is using it"
            raise PortInUse(
                f"Port {settings.port} on {settings.host} is taken: {what}. "
                f"Stop it or choose another port with --port or AISTACK_PORT.",
                by_aistack=running,
            ) from None
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def aistack_running_at(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(f"{settings.base_url}/health", timeout=1.5) as response:
            return json.loads(response.read()).get("app") == "aistack"
    except (OSError, ValueError):
        return False


def make_server(settings: Settings) -> Any:
    import uvicorn

    from server.app import create_app
    from server.guard import security_warnings
    from server.http_protocol import protocol_for

    app = create_app(settings)
    warnings = security_warnings(settings)
    for warning in warnings:
        log.warning("SECURITY WARNING: %s", warning)
    app.state.warnings = [*getattr(app.state, "warnings", []), *warnings]
    config = uvicorn.Config(
        app,
        log_config=None,  # a windowed frozen build has no stdout; our logging setup decides
        access_log=False,  # the app writes its own JSON access log
        timeout_graceful_shutdown=5,
        ws="none",
        http=protocol_for(settings),  # h11 with header/idle timeouts, a connection bound and enveloped protocol errors
        timeout_keep_alive=settings.http_idle_timeout_sec,  # type: ignore[arg-type]  # uvicorn takes a float too
    )
    return uvicorn.Server(config)


def serve_forever(settings: Settings) -> int:
    try:
        sock = bind_socket(settings)
    except PortInUse as exc:
        print(f"aistack: {exc}", file=sys.stderr)
        return EXIT_PORT_IN_USE
    server = make_server(settings)
    log.info("aistack serving on %s (data in %s)", settings.base_url, settings.data_dir)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl+C, then raises the signal again for the caller: exit quietly.
        pass
    return 0
