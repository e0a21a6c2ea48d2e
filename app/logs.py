"""Where the app's log lines go: a rotating file in the data dir, and stderr when there is one.

A windowed build (the Windows installer's) has `sys.stdout` and `sys.stderr`
set to None, and libraries that print (tqdm, llama.cpp) crash on that. So
missing streams are replaced before anything else runs, uncaught exceptions
are logged to the file, and runner processes are told (AISTACK_RUNNER_LOG) to
send their own stdout and stderr to `logs/runners.log`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from models.core.settings import Settings

LOG_FILE = "aistack.log"
RUNNER_LOG_FILE = "runners.log"
RUNNER_LOG_ENV = "AISTACK_RUNNER_LOG"
MAX_BYTES = 5 << 20
BACKUPS = 3
FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

log = logging.getLogger("aistack.app")


def log_path(settings: Settings) -> Path:
    return settings.log_dir / LOG_FILE


def runner_log_path(settings: Settings) -> Path:
    return settings.log_dir / RUNNER_LOG_FILE


def setup_logging(settings: Settings, level: str = "info", *, runners_to_file: bool = False) -> Path | None:
    """Log to `logs/aistack.log` (rotated) and to stderr when there is one; returns the file, None if unwritable.

    `runners_to_file` sends runner processes' output to `logs/runners.log` (the tray has no terminal).
    """
    had_stderr = _usable(sys.stderr)
    _replace_missing_streams()
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper()))
    formatter = logging.Formatter(FORMAT)
    if had_stderr:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(formatter)
        root.addHandler(console)
    path: Path | None = log_path(settings)
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        handler = SharedRotatingFileHandler(log_path(settings), maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
        handler.setFormatter(formatter)
        root.addHandler(handler)
    except OSError as exc:
        path = None
        log.warning("cannot write the log file in %s (%s); logging to stderr only", settings.log_dir, exc)
    if runners_to_file or not had_stderr:
        _send_runner_output_to_file(settings)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    return path


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that another aistack process may hold open.

    Windows cannot rename a file another process has open: a second launch (which hands over
    and exits) or the tray app beside it would fail its rotation, and the standard handler then
    drops the line and prints "--- Logging error ---" with a traceback. Here the line is
    appended to the current file instead, and the rotation is tried again a minute later.
    """

    RETRY_SEC = 60.0
    _next_try = 0.0

    def shouldRollover(self, record: logging.LogRecord) -> int:
        if time.monotonic() < self._next_try:
            return False
        return super().shouldRollover(record)

    def doRollover(self) -> None:
        try:
            super().doRollover()
        except PermissionError:
            self._next_try = time.monotonic() + self.RETRY_SEC
            if self.stream is None:
                self.stream = self._open()


def _usable(stream: object) -> bool:
    return stream is not None and getattr(stream, "write", None) is not None


def _replace_missing_streams() -> None:
    # print() to None is silently skipped, but tqdm and C libraries are not that kind.
    if not _usable(sys.stdout):
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # lives as long as the process
    if not _usable(sys.stderr):
        sys.stderr = open(os.devnull, "w", encoding="utf-8")


def _send_runner_output_to_file(settings: Settings) -> None:
    path = runner_log_path(settings)
    try:
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            path.replace(path.with_name(RUNNER_LOG_FILE + ".1"))
    except OSError:
        pass  # another process has it open (Windows): keep appending
    os.environ[RUNNER_LOG_ENV] = str(path)  # runner processes are spawned with this environment


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    log.critical("uncaught error", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
        log.critical("uncaught error in thread %s", args.thread.name if args.thread else "?",
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
