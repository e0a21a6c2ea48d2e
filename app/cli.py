"""The `aistack` command.

    aistack                       tray icon and server (headless when there is no display)
    aistack serve [--host H] [--port P]
    aistack models list | install-starter | install ID... | remove ID... | add-hf REPO FILE | import FILE
    aistack autostart on | off | status
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from models.core.settings import SettingsError, load_settings

EXIT_SETTINGS = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aistack", description="Local speech, voice and chat models over an OpenAI-style HTTP API.")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the HTTP server without the tray")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, or AISTACK_HOST)")
    serve.add_argument("--port", type=int, help="port (default 11500, or AISTACK_PORT)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    models = sub.add_parser("models", help="list, install, add and remove models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    from app.model_commands import add_model_commands

    add_model_commands(models_sub)
    login = sub.add_parser("autostart", help="start aistack (with the tray) when you log in: on, off or status")
    login.add_argument("action", choices=["on", "off", "status"])
    return parser


def open_standard_fds() -> None:
    """Point any closed stdin, stdout or stderr (fds 0-2) at the null device.

    A process started with them closed (a windowed launch, `<&- >&- 2>&-`) would
    otherwise hand those numbers to the next file or socket it opens, and the
    runner processes it spawns inherit that mix-up and die before they can log.
    """
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, mode)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)  # os.open's fds are close-on-exec; runners must inherit these


def printable_streams() -> None:
    """Non-ASCII paths and model names in our output never crash it.

    A Windows console or pipe writes in the ANSI code page (cp1252), which has no letter for 模型:
    `print` would raise UnicodeEncodeError. Such letters come out escaped instead.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    open_standard_fds()
    printable_streams()
    args = _parser().parse_args(argv)
    overrides = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"aistack: {exc}", file=sys.stderr)
        return EXIT_SETTINGS

    if args.command == "models":
        from app.model_commands import run_models_command

        return run_models_command(args, settings)

    if args.command == "autostart":
        from app.autostart import run_autostart_command

        return run_autostart_command(args.action)

    from app.logs import setup_logging

    setup_logging(settings, getattr(args, "log_level", "info"), runners_to_file=args.command is None)
    from app.serving import serve_forever

    if args.command == "serve":
        return serve_forever(settings)
    from app.tray import run_tray_or_headless

    return run_tray_or_headless(settings)


if __name__ == "__main__":
    raise SystemExit(main())
