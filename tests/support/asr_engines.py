"""Extra ASR engines for the tests, registered through AISTACK_ENGINES, and a way to install them.

Both are the real faster-whisper engine on the real starter model, changed in
one declared way each:
- `WholeFileWhisper` says it cannot stream, which is how an engine without
  incremental output looks to the server: it drives the `streaming_unsupported` path.
- `PretendGpuWhisper` is told a GPU is there (none is, on the test machines), so
  loading on CUDA really fails and the CPU fallback really runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.engines.whisper.engine import WhisperEngine

STARTER_WHISPER = "whisper-tiny.en"
FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")
ENGINES = {
    "whisper-whole": "tests.support.asr_engines:WholeFileWhisper",
    "whisper-pretend-gpu": "tests.support.asr_engines:PretendGpuWhisper",
}


class WholeFileWhisper(WhisperEngine):
    def info(self) -> dict[str, Any]:
        return {**super().info(), "supports_streaming": False}


class PretendGpuWhisper(WhisperEngine):
    @staticmethod
    def _pick_device(requested: str) -> tuple[str, str]:
        return "cuda", "float16"


def install_starter_whisper_as(data_dir: Path, starter_data_dir: Path, model_id: str, engine: str) -> None:
    """A model folder (links to the starter Whisper files) whose manifest names `engine`."""
    folder = data_dir / "models" / model_id
    folder.mkdir(parents=True)
    source = starter_data_dir / "models" / STARTER_WHISPER
    for name in FILES:
        (folder / name).symlink_to(source / name)
    manifest = {"id": model_id, "capability": "asr", "engine": engine, "owned_by": "tests", "languages": ["en"],
                "files": [{"name": n, "size": (source / n).stat().st_size} for n in FILES]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
