"""The frozen app's PyInstaller build, started in the background as soon as pytest knows a frozen test will run.

The build takes about 70 s on two cores. The suite leaves a core idle most of the
time (its tests wait on runners, sockets and clients), so conftest starts the build
right after collection at the lowest CPU and I/O priority, where it runs on that
idle time without slowing the timing tests; `tests/packaging/test_frozen.py` waits for it.
A run without frozen tests (`-m "not frozen"`, AISTACK_SKIP_FROZEN,
AISTACK_FROZEN_APP) never starts it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from bench.harness import ROOT

CACHE = ROOT / ".cache" / "frozen"  # PyInstaller's work folder stays here, so a re-run only redoes what changed
LOG = CACHE / "build.log"
BUILD_TIMEOUT_SEC = 780

_build: subprocess.Popen[bytes] | None = None


def installer_build() -> ModuleType:
    """installer/build.py as a module (its name would clash with PyPA's `build` package)."""
    spec = importlib.util.spec_from_file_location("aistack_installer_build", ROOT / "installer" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wanted() -> bool:
    return not os.environ.get("AISTACK_SKIP_FROZEN") and not os.environ.get("AISTACK_FROZEN_APP")


def _low_priority(cmd: list[str]) -> tuple[list[str], dict[str, int]]:
    if sys.platform == "win32":
        return cmd, {"creationflags": subprocess.IDLE_PRIORITY_CLASS}  # type: ignore[attr-defined,unused-ignore]
    prefix = ["nice", "-n", "19"] + (["ionice", "-c", "3"] if shutil.which("ionice") else [])
    return prefix + cmd, {}


def start() -> None:
    """Start the build once (a no-op when it runs already or is not wanted)."""
    global _build
    if _build is not None or not wanted():
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd, extra = _low_priority(installer_build().build_command(CACHE / "dist", CACHE / "work"))
    with LOG.open("wb") as log:
        _build = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **extra)


def app_dir() -> Path:
    """Wait for the build (starting it if no hook did) and return the onedir; an error names PyInstaller's output."""
    start()
    assert _build is not None
    try:
        code = _build.wait(BUILD_TIMEOUT_SEC)
    except subprocess.TimeoutExpired:
        stop()
        raise AssertionError(f"the frozen build took over {BUILD_TIMEOUT_SEC} s; its log:\n{_log_tail()}") from None
    if code != 0:
        raise AssertionError(f"PyInstaller exited with {code}:\n{_log_tail()}")
    return CACHE / "dist" / "aistack"


def _log_tail() -> str:
    return LOG.read_text(errors="replace")[-6000:]


def stop() -> None:
    """End a build still running (the session ended early)."""
    if _build is None or _build.poll() is not None:
        return
    if sys.platform == "win32":
        _build.kill()
    else:
        os.killpg(_build.pid, signal.SIGKILL)
    _build.wait(10)
