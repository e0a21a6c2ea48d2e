"""Placement policy: how much memory a model needs, whether it fits, and which model makes room.

Policy only: the manager does the unloading. Free memory comes from an
injected `MemoryProbe`, so tests drive these decisions with a fake machine and
the GPU probe can add free VRAM beside free RAM without touching the policy.

The rules (ARCHITECTURE.md, "Memory, keep-alive and the busy slot"):
- A model needs its weights plus working buffers; a chat model also needs its
  context cache (keys and values for every layer and every token of context).
- Only idle models loaded by a request are evicted, least recently used first.
  Models the user loaded are never evicted; when only they (or busy models)
  stand in the way, the answer is a 503 that names them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from models.core.errors import EngineUnavailable
from models.store.model_store import InstalledModel

log = logging.getLogger("aistack.placement")

WORKING_FACTOR = 1.3  # weights mapped plus the engine's own buffers, measured on the starter models
RUNTIME_BYTES = 256 << 20  # a runner process with its Python and native libraries loaded
KV_BYTES_PER_VALUE = 2  # llama.cpp keeps the context cache in f16


class MemoryProbe(Protocol):
    """Where free memory is read. The GPU helper's probe adds `vram_available`."""

    def ram_available(self) -> int:
        """Bytes of RAM a new process could use now."""
        ...


class SystemMemory:
    """The real machine's free RAM (psutil)."""

    def ram_available(self) -> int:
        import psutil

        return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class Resident:
    """A loaded model, as eviction sees it."""

    model_id: str
    pinned: bool  # the user loaded it: never evicted
    idle: bool  # no job, nobody waiting for it, nobody loading or unloading it
    last_used: float  # monotonic seconds


def memory_need(model: InstalledModel, llm_context: int, slots: int = 1) -> int:
    """Bytes `model` needs once loaded: weights and buffers, plus a chat model's context cache for `slots` sequences."""
    need = int(model.size_bytes * WORKING_FACTOR) + RUNTIME_BYTES
    if model.capability == "llm":
        need += slots * context_cache_bytes(model, llm_context)
    return need


def context_cache_bytes(model: InstalledModel, llm_context: int) -> int:
    """Keys and values for every layer and token: 2 x layers x context x (width x kv heads / heads) x 2 bytes."""
    from models.store.gguf import GgufError, read_gguf

    gguf = next((f["name"] for f in model.manifest.get("files", []) if str(f["name"]).endswith(".gguf")), None)
    if gguf is None:
        return 0
    try:
        header = read_gguf(model.path / gguf, keep_array_items=0)
    except (GgufError, OSError):
        return 0  # the load itself says what is wrong with the file
    layers, width, heads = header.layer_count, header.embedding_length, header.head_count
    if not (layers and width and heads):
        return 0
    kv_heads = header.head_count_kv or heads
    context = min(int(model.options.get("context") or llm_context), header.context_length or llm_context, llm_context)
    return 2 * layers * context * (width * kv_heads // heads) * KV_BYTES_PER_VALUE


def pick_victim(residents: list[Resident]) -> Resident | None:
    """The model to unload next: idle, not loaded by the user, least recently used. None when there is none."""
    candidates = [r for r in residents if r.idle and not r.pinned]
    return min(candidates, key=lambda r: r.last_used, default=None)


def refusal(model_id: str, need: int, free: int, residents: list[Resident]) -> EngineUnavailable:
    """The 503 when nothing more can be evicted, naming what stands in the way."""
    message = (
        f"Not enough memory to load {model_id}: it needs about {need >> 20} MB and {max(free, 0) >> 20} MB are free "
        "after keeping a reserve (AISTACK_MEMORY_RESERVE_MB)."
    )
    pinned = sorted(r.model_id for r in residents if r.pinned)
    busy = sorted(r.model_id for r in residents if not r.pinned and not r.idle)
    if pinned:
        message += (
            f" Models you loaded stay until you unload them: {', '.join(pinned)}. Unload one (tray, dashboard, or "
            "POST /admin/api/models/<id>/unload) to make room."
        )
    if busy:
        message += f" Busy with requests now: {', '.join(busy)}; retry when they finish."
    if not pinned and not busy:
        message += " Close other programs or use a smaller model."
    return EngineUnavailable(message)


# GPU memory (the GPU helper's side) ---------------------------------------------------------
def vram_need(model: InstalledModel, llm_context: int, slots: int = 1) -> int | None:
    """GPU memory `model` needs with all of it on the GPU; None for an engine that never uses the GPU.

    A manifest may state it (`options.vram_bytes`); else llama.cpp's comes from the GGUF
    header (layers, context cache, compute buffer) and Whisper's from its file size.
    A chat model that still does not fit after eviction loads with fewer layers on the GPU.
    """
    from models.hardware import vram

    declared = model.options.get("vram_bytes")
    if declared:
        return int(declared)
    if model.engine == "faster-whisper":
        return vram.whisper_need(model.size_bytes, "float16")
    if model.engine != "llama.cpp":
        return None
    from models.store.gguf import GgufError, read_gguf

    gguf = next((f["name"] for f in model.manifest.get("files", []) if str(f["name"]).endswith(".gguf")), None)
    if gguf is None:
        return None
    try:
        header = read_gguf(model.path / gguf, keep_array_items=0)
    except (GgufError, OSError):
        return None
    context = min(int(model.options.get("context") or llm_context), header.context_length or llm_context, llm_context)
    return vram.llama_need(header, context, slots).full_bytes
