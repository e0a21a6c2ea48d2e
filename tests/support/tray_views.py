"""Tray views at the edges of what the tray can show: the tooltip must fit Windows' limit for each.

Shared by tests/desktop/test_tray.py (the clip, on Linux) and tests/windows/ (pystray's win32
backend taking every one of them as its title).
"""

from __future__ import annotations

from typing import Any

from app.tray_menu import TrayView

ADDRESS = "http://127.0.0.1:11500"
LONG_REASON = ("NVML could not be initialised: the NVIDIA driver is not loaded, or this user may not open "
               "/dev/nvidiactl; install the driver from nvidia.com and restart the PC. " * 3)


def _row(model_id: str, capability: str = "llm", **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "capability": capability, "state": "installed", "loaded": False, **extra}


def edge_views() -> dict[str, TrayView]:
    loaded = [_row(f"qwen2.5-coder-32b-instruct-q4_k_m-{n}", loaded=True, state="loaded") for n in range(8)]
    return {
        "starting": TrayView(ADDRESS, starting=True),
        "not answering, long problem": TrayView(ADDRESS, problem="the server stopped answering: " + LONG_REASON),
        "cpu only, long reason": TrayView(ADDRESS, status={"models": [], "gpu": {"available": False, "reason": LONG_REASON}}),
        "many loaded": TrayView(ADDRESS, status={"models": loaded, "gpu": {"available": False, "reason": LONG_REASON}}),
        "many in progress": TrayView(ADDRESS, status={"gpu": {}, "models": [
            _row(f"whisper-large-v3-turbo-{n}", "asr", state="downloading", progress=0.5) for n in range(6)]}),
        "failed": TrayView(ADDRESS, status={"gpu": {}, "models": [
            _row("broken-chat", state="failed", error="llama.cpp could not load the file: " + LONG_REASON)]}),
        "non-ascii names": TrayView(ADDRESS, status={"gpu": {"available": True, "name": "NVIDIA GeForce RTX 4090 ✓",
                                                             "memory_used_bytes": 3e9, "memory_total_bytes": 24e9},
                                                     "models": [_row(f"Größe-模型-🎙️-{n}", "asr", loaded=True, state="loaded")
                                                                for n in range(12)]}),
        "emoji at the cut": TrayView(ADDRESS, status={"gpu": {"available": False, "reason": "🎮" * 200}, "models": []}),
    }


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2
