"""The engine registry: which engine serves which capability, and where its code lives.

The catalog's `engine` field names an entry here. The entry says what the
engine serves, which class the runner builds (imported only inside the runner),
which Python modules it needs (checked without importing them, so the server
starts fast), and, for text to speech, how the server reads a voice's
description without loading the engine. A second TTS engine is one new
package under `models/engines/` and one entry here, nothing in the routes.

The engine name is also the `provider` of the engine's errors.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.store.entries import Capability

if TYPE_CHECKING:
    from models.engines.voice import VoiceReader


@dataclass(frozen=True)
class EngineEntry:
    name: str
    capability: Capability
    engine_class: str  # "module:Class", built inside the runner process
    needs: tuple[str, ...]  # Python modules the engine imports
    voices: str | None = None  # TTS only: "module:attr", a `VoiceReader` (light: no engine import)


WHISPER = EngineEntry(
    "faster-whisper", "asr", "models.engines.whisper.engine:WhisperEngine", ("faster_whisper", "ctranslate2", "av")
)
PIPER = EngineEntry(
    "piper", "tts", "models.engines.piper.engine:PiperEngine", ("piper", "onnxruntime", "av"),
    voices="models.engines.piper.voice_files:READER",
)
LLAMA = EngineEntry("llama.cpp", "llm", "models.engines.llama.engine:LlamaEngine", ("llama_cpp",))

ENGINES: dict[str, EngineEntry] = {entry.name: entry for entry in (WHISPER, PIPER, LLAMA)}


def engine_classes() -> dict[str, str]:
    """Engine name -> "module:Class", the form `AISTACK_ENGINES` extends."""
    return {name: entry.engine_class for name, entry in ENGINES.items()}


def needed_modules(name: str, engine_class: str | None) -> tuple[str, ...]:
    """The modules an engine needs; for an engine added by settings, its own module."""
    entry = ENGINES.get(name)
    if entry is not None and (engine_class is None or engine_class == entry.engine_class):
        return entry.needs
    return (engine_class.partition(":")[0],) if engine_class else ()


def voice_reader(name: str) -> VoiceReader | None:
    """How the server reads the voices of a TTS engine's models; None for engines that do not speak."""
    entry = ENGINES.get(name)
    if entry is None or entry.voices is None:
        return None
    module_name, _, attr = entry.voices.partition(":")
    reader: VoiceReader = getattr(importlib.import_module(module_name), attr)
    return reader


def speaking_engines() -> tuple[str, ...]:
    return tuple(name for name, entry in ENGINES.items() if entry.capability == "tts")
