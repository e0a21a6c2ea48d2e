"""A piper voice's files, as the server reads them without loading piper.

A piper voice is an `.onnx` model and its `.onnx.json` description (sample
rate, language, speakers). The server reads only the small JSON file; the
engine (`models.engines.piper.engine`) finds both files the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.core.errors import Malformed
from models.engines.voice import VoiceInfo
from models.store.model_store import InstalledModel

_QUALITIES = ("x_low", "low", "medium", "high")


def voice_files(model: InstalledModel) -> tuple[Path, Path]:
    """The `.onnx` and `.onnx.json` of an installed voice."""
    names = [f["name"] for f in model.manifest.get("files", [])]
    return piper_files(model.path, names)


def piper_files(folder: Path, names: list[str]) -> tuple[Path, Path]:
    onnx = next((n for n in names if n.endswith(".onnx")), None)
    config = next((n for n in names if n.endswith(".onnx.json")), None)
    if onnx is None or config is None:
        raise Malformed("This piper voice is incomplete: it needs an .onnx file and its .onnx.json. Reinstall it.")
    return folder / onnx, folder / config


_INFO_CACHE: dict[tuple[str, float], VoiceInfo] = {}


def voice_info(model: InstalledModel) -> VoiceInfo:
    """Read (and cache by file time) the voice's description from its `.onnx.json`."""
    _, config_path = voice_files(model)
    try:
        key = (str(config_path), config_path.stat().st_mtime)
    except OSError:
        raise Malformed(f"Voice '{model.id}' is missing its .onnx.json file. Reinstall it.") from None
    if key not in _INFO_CACHE:
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise Malformed(f"Voice '{model.id}' has an unreadable .onnx.json file. Reinstall it.") from None
        _INFO_CACHE[key] = info_from_config(model, config_path, config)
    return _INFO_CACHE[key]


def info_from_config(model: InstalledModel, config_path: Path, config: dict[str, Any]) -> VoiceInfo:
    stem = config_path.name.removesuffix(".onnx.json")
    parts = stem.split("-")
    audio = config.get("audio") or {}
    quality = str(audio.get("quality") or (parts[-1] if parts[-1] in _QUALITIES else "unknown"))
    language = config.get("language") or {}
    code = str(language.get("code") or (config.get("espeak") or {}).get("voice") or parts[0])
    id_map: Mapping[str, int] = config.get("speaker_id_map") or {}
    num = int(config.get("num_speakers") or 1)
    speakers: tuple[str, ...] = ()
    if num > 1:
        by_index = {int(i): str(name) for name, i in id_map.items()}
        speakers = tuple(by_index.get(i, str(i)) for i in range(num))
    family = code.replace("-", "_").split("_")[0].lower()
    return VoiceInfo(
        id=model.id,
        name=str(config.get("dataset") or (parts[1] if len(parts) > 2 else stem)),
        stem=stem,
        language=code,
        languages=tuple(model.languages) or (family,),
        sample_rate=int(audio.get("sample_rate") or 22050),
        quality=quality,
        speakers=speakers,
    )


class PiperVoices:
    """The `VoiceReader` of piper voices (named in the engine registry)."""

    def read(self, model: InstalledModel) -> VoiceInfo:
        return voice_info(model)


READER = PiperVoices()
