"""Logs on Windows, where a file another process has open cannot be renamed: rotation must not break logging.

The tray app's runner writes `logs/runners.log` and the app writes `logs/aistack.log`;
a second launch of the app on the same data dir (it hands over to the first and exits)
finds both over their size limit and open in the first app and its runner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.logs import MAX_BYTES
from tests.windows.support import ROOT, App, data_dir_with_starter, tray_windows, wait_until


def test_rotation_while_another_process_writes_loses_nothing_and_prints_no_traceback(tmp_path: Path) -> None:
    data = data_dir_with_starter(tmp_path / "Logs dir ß")
    app = App(data)  # the tray app: runners write logs/runners.log
    try:
        wait_until(lambda: tray_windows(app.proc.pid), 60, "the tray icon")
        httpx.post(f"{app.url}/admin/api/models/smollm2-135m-instruct/load", headers=app.admin_headers,
                   timeout=120).raise_for_status()
        logs = data / "logs"
        for name in ("aistack.log", "runners.log"):  # both over the limit, both open in the app or its runner
            with (logs / name).open("ab") as log:
                log.write(b"x" * 80 + b"\n" * 1 + b"y" * (MAX_BYTES + 1024))
        second = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, capture_output=True, text=True,
                                encoding="utf-8", errors="replace", timeout=120,
                                env={**os.environ, "AISTACK_DATA_DIR": str(data), "AISTACK_PORT": str(app.port)})
        assert second.returncode == 0, second.stdout + second.stderr
        assert "Traceback" not in second.stderr and "Logging error" not in second.stderr, second.stderr[-3000:]
        written = "".join(p.read_text(encoding="utf-8", errors="replace")[-20000:] for p in logs.glob("aistack.log*"))
        assert "aistack is already running" in written  # the second launch's line reached the log
        # The app still logs (its own rotation, when due, meets the same open files).
        httpx.post(f"{app.url}/admin/api/models/smollm2-135m-instruct/unload", headers=app.admin_headers,
                   timeout=60).raise_for_status()
        wait_until(lambda: "unload" in "".join(p.read_text(encoding="utf-8", errors="replace")[-20000:]
                                               for p in logs.glob("aistack.log*")), 20, "the unload in the log")
        assert "Traceback" not in app.output()
    finally:
        app.stop()
