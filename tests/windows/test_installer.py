"""The Windows installer (installer/aistack.nsi) around the frozen app that tests/windows/test_frozen.py builds.

Debian's makensis compiles it: a Linux program, started from this Windows Python through Wine, which
runs a Unix binary named to CreateProcess but hands back no process handle, so `run_on_linux` has a
shell record the exit status in a file and waits for that. The payload is stored uncompressed (the
release build compresses it) into dist/windows/aistack-<version>-setup.exe.

Then, in this order, on the lane's fresh Wine prefix: a silent install is per user (program files,
Start-menu shortcut and uninstall entry under HKCU) and starts the installed tray app, which serves
the models already in the default data folder; a second install over the running app closes it and
starts the new one; the silent uninstaller stops the app and removes the program, shortcut, uninstall
entry and start-at-login value but keeps the models; /NOSTART installs without starting, and
/REMOVEMODELS uninstalls with the data folder. Under Wine only: elsewhere these tests would install
for the real user and delete their %LOCALAPPDATA%\\aistack.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from ctypes import wintypes
from importlib import metadata
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.frozen_build import installer_build
from tests.windows.support import BUILD, ROOT, STARTER_MODELS, free_port, kill_tree, wait_until
from tests.windows.test_frozen import DIST, RUN_KEY, frozen_app, pe_facts

pytestmark = [pytest.mark.frozen, pytest.mark.timeout(900)]

LOCAL = Path(os.environ.get("LOCALAPPDATA", ""))
INSTDIR = LOCAL / "Programs" / "aistack"
DATA = LOCAL / "aistack"  # platformdirs.user_data_dir("aistack", appauthor=False): models/core/settings.py
SHORTCUT = Path(os.environ.get("APPDATA", "")) / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "aistack.lnk"
UNINSTALL_KEY = r"Software\Microsoft\Windows\CurrentVersion\Uninstall\aistack"
KEPT_MODEL = "piper-en_US-joe-medium"
PORT = free_port()


# --- Linux programs from the Windows side -------------------------------------------------------------
class _StartupInfo(ctypes.Structure):
    _fields_ = [("cb", wintypes.DWORD), ("lpReserved", wintypes.LPWSTR), ("lpDesktop", wintypes.LPWSTR),
                ("lpTitle", wintypes.LPWSTR), *((name, wintypes.DWORD) for name in (
                    "dwX", "dwY", "dwXSize", "dwYSize", "dwXCountChars", "dwYCountChars", "dwFillAttribute", "dwFlags")),
                ("wShowWindow", wintypes.WORD), ("cbReserved2", wintypes.WORD), ("lpReserved2", ctypes.c_void_p),
                ("hStdInput", wintypes.HANDLE), ("hStdOutput", wintypes.HANDLE), ("hStdError", wintypes.HANDLE)]


class _ProcessInformation(ctypes.Structure):
    _fields_ = [("hProcess", wintypes.HANDLE), ("hThread", wintypes.HANDLE), ("dwProcessId", wintypes.DWORD),
                ("dwThreadId", wintypes.DWORD)]


def unix_path(path: Path) -> str:
    """The Unix name Wine gives a Windows path (kernel32's wine_get_unix_file_name; the file need not exist)."""
    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.wine_get_unix_file_name.argtypes, kernel32.wine_get_unix_file_name.restype = [wintypes.LPCWSTR], ctypes.c_void_p
    kernel32.GetProcessHeap.restype = wintypes.HANDLE
    kernel32.HeapFree.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.c_void_p]
    name = kernel32.wine_get_unix_file_name(str(path))
    assert name, f"Wine has no Unix name for {path}"
    try:
        return ctypes.string_at(name).decode()
    finally:
        kernel32.HeapFree(kernel32.GetProcessHeap(), 0, name)


def run_on_linux(argv: list[str], cwd: Path, timeout: float) -> str:
    """Run a Linux program to its end; returns its output, fails on a non-zero exit status."""
    work = Path(tempfile.mkdtemp(prefix="linux-", dir=BUILD))
    output, status = work / "output", work / "status"
    q = shlex.quote
    script = work / "run.sh"
    script.write_text(f"PATH=/usr/local/bin:/usr/bin:/bin\ncd {q(unix_path(cwd))}\n{shlex.join(argv)} > {q(unix_path(output))} 2>&1\n"
                      f"echo $? > {q(unix_path(work / 'status.tmp'))}\nmv {q(unix_path(work / 'status.tmp'))} {q(unix_path(status))}\n",
                      newline="\n")
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    startup, info = _StartupInfo(cb=ctypes.sizeof(_StartupInfo)), _ProcessInformation()
    command = ctypes.create_unicode_buffer(subprocess.list2cmdline(["/bin/sh", unix_path(script)]))
    if not kernel32.CreateProcessW(None, command, None, None, False, 0x08000000, None, None,  # CREATE_NO_WINDOW
                                   ctypes.byref(startup), ctypes.byref(info)):
        raise OSError(ctypes.get_last_error(), "Wine did not start /bin/sh")
    # The handles in `info` are not real ones for a Unix program (CloseHandle fails on them): left alone.
    wait_until(status.is_file, timeout, f"{argv[0]} to finish")
    text = output.read_text(encoding="utf-8", errors="replace")
    code = int(status.read_text().strip())
    shutil.rmtree(work, ignore_errors=True)
    assert code == 0, f"{shlex.join(argv)[:400]} exited with {code}:\n{text[-4000:]}"
    return text


# --- the installed app ----------------------------------------------------------------------------------
def installer_env() -> dict[str, str]:
    """The user's environment: the default data folder; the test's port."""
    return {**{k: v for k, v in os.environ.items() if k != "AISTACK_DATA_DIR"}, "AISTACK_PORT": str(PORT)}


def no_linux_menu_entries() -> None:
    """Wine turns Start-menu shortcuts into the Linux user's menu entries (winemenubuilder): not from a test."""
    import winreg

    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, r"Software\Wine\DllOverrides") as key:
        winreg.SetValueEx(key, "winemenubuilder.exe", 0, winreg.REG_SZ, "")  # "": disabled


def run_setup(setup: Path, *switches: str) -> None:
    started = time.monotonic()
    result = subprocess.run([str(setup), "/S", *switches], env=installer_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=180)  # no pipes: the app it starts would inherit them
    assert result.returncode == 0, f"{setup.name} /S {' '.join(switches)} exited with {result.returncode}"
    print(f"{setup.name} /S {' '.join(switches)}: {time.monotonic() - started:.1f} s")


def image_path(pid: int) -> str:
    """A process's executable (psutil's exe() asks Wine for a system information class it lacks)."""
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.QueryFullProcessImageNameW.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.LPWSTR, ctypes.POINTER(wintypes.DWORD)]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ""
    try:
        buffer, size = ctypes.create_unicode_buffer(32768), wintypes.DWORD(32768)
        return buffer.value if kernel32.QueryFullProcessImageNameW(handle, 0, buffer, ctypes.byref(size)) else ""
    finally:
        kernel32.CloseHandle(handle)


def is_installed_program(path: str) -> bool:
    return os.path.normcase(path).startswith(os.path.normcase(str(INSTDIR) + os.sep))


def installed_processes() -> list[int]:
    return [pid for pid in psutil.pids() if is_installed_program(image_path(pid))]


def running_app(not_pid: int | None = None) -> tuple[int, str]:
    """(pid, url) of the installed tray app once it answers, from the lock file it writes in the data folder."""
    def answered() -> tuple[int, str] | None:
        try:
            lock = json.loads((DATA / "aistack.lock").read_text(encoding="utf-8"))
            if lock["pid"] == not_pid or not psutil.pid_exists(lock["pid"]):
                return None
            return (lock["pid"], lock["url"]) if httpx.get(lock["url"] + "/health", timeout=2).status_code == 200 else None
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            return None

    return wait_until(answered, 90, "the installed app to answer /health")  # type: ignore[no-any-return]


def uninstall_entry() -> dict[str, str] | None:
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, UNINSTALL_KEY) as key:
            return {winreg.EnumValue(key, i)[0]: str(winreg.EnumValue(key, i)[1]) for i in range(winreg.QueryInfoKey(key)[1])}
    except FileNotFoundError:
        return None


def uninstall(command: str) -> None:
    """Run an uninstall command line; NSIS's uninstaller copies itself to %TEMP% and returns at once, and
    removes the uninstall entry last, so that entry's end is the uninstall's."""
    started = time.monotonic()
    subprocess.run(command, env=installer_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    wait_until(lambda: uninstall_entry() is None, 90, "the uninstaller to remove its entry")
    print(f"{command}: {time.monotonic() - started:.1f} s")


def under_wine() -> bool:
    return hasattr(ctypes.WinDLL("kernel32"), "wine_get_unix_file_name")


@pytest.fixture(scope="module")
def setup_exe() -> Iterator[Path]:
    if not under_wine():  # on a real PC these tests would install for, and delete the models of, its user
        pytest.skip("the installer tests run in the Windows lane's fresh Wine prefix only")
    assert not DATA.exists(), f"{DATA} exists: the tests need a fresh Wine prefix (they delete that folder)"
    build = installer_build()
    app_dir = frozen_app()
    DIST.mkdir(parents=True, exist_ok=True)
    out_file = DIST / build.installer_name()
    out_file.unlink(missing_ok=True)
    started = time.monotonic()
    run_on_linux(build.installer_command(app_dir, out_file, compress=False, path=unix_path), ROOT / "installer", timeout=300)
    print(f"makensis: {time.monotonic() - started:.0f} s, {out_file.stat().st_size >> 20} MiB")
    assert not INSTDIR.exists() and uninstall_entry() is None, "the lane's Wine prefix should be fresh"
    no_linux_menu_entries()
    shutil.copytree(STARTER_MODELS / KEPT_MODEL, DATA / "models" / KEPT_MODEL)  # the user's models, from before
    yield out_file
    for pid in installed_processes():
        kill_tree(pid)
    for image in ("aistack.exe", "aistack-cli.exe"):  # a Wine process left behind would hold the lane's output open
        subprocess.run(["taskkill", "/F", "/IM", image], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_the_installer_is_a_64_bit_program_with_its_version(setup_exe: Path) -> None:
    facts = pe_facts(setup_exe)
    assert facts["machine"] == 0x8664, "makensis built a 32-bit installer (the .nsi needs `Target amd64-unicode`)"
    assert facts["strings"]["ProductVersion"] == metadata.version("aistack"), facts["strings"]  # type: ignore[index]


def test_a_silent_install_is_per_user_and_starts_the_app(setup_exe: Path) -> None:
    run_setup(setup_exe)
    for name in ("aistack.exe", "aistack-cli.exe", "uninstall.exe", "_internal/llama-cpu/lib/libllama.dll"):
        assert (INSTDIR / name).is_file(), name
    assert SHORTCUT.is_file(), f"no Start-menu shortcut at {SHORTCUT}"
    entry = uninstall_entry()
    assert entry is not None, f"no uninstall entry under HKCU\\{UNINSTALL_KEY}"
    assert entry["DisplayVersion"] == metadata.version("aistack") and entry["DisplayName"] == "aistack", entry
    assert os.path.normcase(entry["InstallLocation"]) == os.path.normcase(str(INSTDIR)), entry
    assert os.path.normcase(str(INSTDIR / "uninstall.exe")) in os.path.normcase(entry["QuietUninstallString"]), entry

    pid, url = running_app()
    assert os.path.normcase(image_path(pid)) == os.path.normcase(str(INSTDIR / "aistack.exe"))
    assert url.endswith(f":{PORT}")
    assert httpx.get(url + "/health", timeout=10).json()["version"] == metadata.version("aistack")
    listed = {m["id"] for m in httpx.get(url + "/v1/models", timeout=30).json()["data"]}
    assert KEPT_MODEL in listed, f"the installed app does not use the default data folder {DATA}: {listed}"


def test_an_install_over_the_running_app_closes_it_and_starts_the_new_one(setup_exe: Path) -> None:
    old_pid, _url = running_app()
    run_setup(setup_exe)
    assert not psutil.pid_exists(old_pid), "the installer left the old app running"
    new_pid, _url = running_app(not_pid=old_pid)
    assert os.path.normcase(image_path(new_pid)) == os.path.normcase(str(INSTDIR / "aistack.exe"))


def test_a_silent_uninstall_stops_the_app_removes_the_program_and_keeps_the_models(setup_exe: Path) -> None:
    import winreg

    pid, _url = running_app()
    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:  # start at login, as the tray's toggle sets it
        winreg.SetValueEx(key, "aistack", 0, winreg.REG_SZ, f'"{INSTDIR / "aistack.exe"}"')
    entry = uninstall_entry()
    assert entry is not None
    uninstall(entry["QuietUninstallString"])
    assert not psutil.pid_exists(pid), "the uninstaller left the app running"
    assert not INSTDIR.exists(), f"left behind: {sorted(p.name for p in INSTDIR.iterdir())}"
    assert not SHORTCUT.exists(), "the Start-menu shortcut is still there"
    with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
        with pytest.raises(FileNotFoundError):
            winreg.QueryValueEx(key, "aistack")
    kept = DATA / "models" / KEPT_MODEL
    assert kept.is_dir() and any(kept.iterdir()), "a silent uninstall deleted the user's models"


def test_nostart_and_removemodels(setup_exe: Path) -> None:
    run_setup(setup_exe, "/NOSTART")
    assert (INSTDIR / "aistack.exe").is_file()
    time.sleep(2)
    assert not installed_processes(), "/NOSTART started the app"
    uninstall(subprocess.list2cmdline([str(INSTDIR / "uninstall.exe"), "/S", "/REMOVEMODELS"]))
    assert not INSTDIR.exists()
    assert not DATA.exists(), "/REMOVEMODELS kept the data folder"
