"""Turning the `model` a client sent into an installed model, with errors a user can act on.

Capabilities add their own routing aliases (`auto`, `whisper-1`, `tts-1`, ...) on
top of `resolve`; the messages for unknown and not-installed models live here.
"""

from __future__ import annotations

from models.core.errors import Malformed
from models.store.entries import Capability
from models.store.model_store import InstalledModel, ModelStore

CAPABILITY_WORDS = {"asr": "speech-to-text", "tts": "text-to-speech", "llm": "chat"}


def resolve(store: ModelStore, capability: Capability, name: str, *, installed: list[InstalledModel] | None = None) -> InstalledModel:
    """An installed model of `capability` by id or catalog alias, or `Malformed` saying what to do."""
    name = (name or "").strip()
    model = store.find(name, capability)
    if installed is not None and model is not None and model not in installed:
        model = None
    if model is not None:
        return model
    raise not_available(store, capability, name)


def not_available(store: ModelStore, capability: Capability, name: str) -> Malformed:
    word = CAPABILITY_WORDS[capability]
    entry = store.catalog.get(name)
    if entry is not None and entry.capability == capability:
        return Malformed(
            f"Model '{entry.id}' is known but not installed. Install it with "
            f"`aistack models install {entry.id}` or from the dashboard, then try again."
        )
    if entry is not None:
        return Malformed(f"Model '{entry.id}' is a {CAPABILITY_WORDS[entry.capability]} model, not a {word} model.")
    ids = sorted(store.ids(capability))
    listing = ", ".join(ids) if ids else "none (install one with `aistack models install-starter`)"
    return Malformed(f"Unknown model '{name[:100]}'. Installed {word} models: {listing}.")
