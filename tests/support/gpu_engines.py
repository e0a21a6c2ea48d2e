"""A scripted engine that says it runs on the GPU (none is here), for the VRAM placement tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.engines.base import JobContext
from tests.support.engines import ScriptedEngine

ENGINES = {"scripted-gpu": "tests.support.gpu_engines:GpuScriptedEngine"}
EXIT_AFTER_GPU_LOSS_SEC = 1.0


class GpuScriptedEngine(ScriptedEngine):
    """`{"cuda_error": true}` fails the job the way a driver reset does, classified as the real engines do."""

    gpu_lost = False

    def info(self) -> dict[str, Any]:
        return {**super().info(), "device": "cuda"}

    def run(self, job: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        if not job.get("cuda_error"):
            return super().run(job, ctx)
        from models.hardware.device_choice import gpu_lost_error, is_cuda_failure

        exc = RuntimeError("CUDA error: an illegal memory access was encountered")
        assert is_cuda_failure(exc)
        self.gpu_lost = True
        raise gpu_lost_error("scripted-gpu", exc) from exc

    def close(self) -> None:
        """A runner whose GPU failed takes a while to exit (a real one tears down its CUDA context): a request
        right after the failure must start a fresh runner, not reach this one while it is going."""
        if self.gpu_lost:
            import time

            time.sleep(EXIT_AFTER_GPU_LOSS_SEC)
        super().close()


def install_gpu_model(data_dir: Path, model_id: str, vram_bytes: int) -> None:
    """A model on the scripted GPU engine whose manifest states its GPU memory need."""
    folder = data_dir / "models" / model_id
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"id": model_id, "capability": "llm", "engine": "scripted-gpu", "owned_by": "tests",
                "files": [{"name": "weights.bin", "size": 1000, "sha256": "0" * 64}], "options": {"vram_bytes": vram_bytes}}
    (folder / "weights.bin").write_bytes(b"\0" * 16)
    (folder / "manifest.json").write_text(json.dumps(manifest))
