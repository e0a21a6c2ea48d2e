"""A scripted engine that says it runs on the GPU (none is here), for the VRAM placement tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.engines import ScriptedEngine

ENGINES = {"scripted-gpu": "tests.gpu_engines:GpuScriptedEngine"}


class GpuScriptedEngine(ScriptedEngine):
    def info(self) -> dict[str, Any]:
        return {**super().info(), "device": "cuda"}


def install_gpu_model(data_dir: Path, model_id: str, vram_bytes: int) -> None:
    """A model on the scripted GPU engine whose manifest states its GPU memory need."""
    folder = data_dir / "models" / model_id
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"id": model_id, "capability": "llm", "engine": "scripted-gpu", "owned_by": "tests",
                "files": [{"name": "weights.bin", "size": 1000, "sha256": "0" * 64}], "options": {"vram_bytes": vram_bytes}}
    (folder / "weights.bin").write_bytes(b"\0" * 16)
    (folder / "manifest.json").write_text(json.dumps(manifest))
