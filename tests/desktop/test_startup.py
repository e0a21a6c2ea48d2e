"""Start-up stays light: no engine or numeric library is imported by the server or the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

HEAVY = ("numpy", "av", "ctranslate2", "faster_whisper", "llama_cpp", "onnxruntime", "piper", "torch", "pystray")

PROBE = """
import json, sys
from models.core.settings import load_settings
from server.app import create_app
from fastapi.testclient import TestClient
with TestClient(create_app(load_settings())) as client:
    client.get("/v1/models"); client.get("/health"); client.get("/admin/api/models")
heavy = set(sys.argv[1].split(","))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_server_start_imports_no_engine(tmp_path: Path, starter_data_dir: Path) -> None:
    env = {**os.environ, "AISTACK_DATA_DIR": str(starter_data_dir)}
    out = subprocess.run([sys.executable, "-c", PROBE, ",".join(HEAVY)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
