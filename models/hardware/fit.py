"""Does a model fit this PC? `fits`, `tight` or `too big`, and the recommended set.

Read from the machine: total RAM, free disk in the models folder and, when an
NVIDIA GPU is there, its free VRAM (through models.hardware.gpu's probe; CPU only
without one). A model that would run on the GPU is judged by VRAM, else by
RAM, and always by disk (its download plus 10%). Half the RAM is the comfort
line: the user's game needs the rest. The recommended set takes, per
capability, the best-ranked model that fits with room for the other two.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from models.store.catalog import Catalog
from models.store.entries import CAPABILITIES, Capability, CatalogEntry

Fit = Literal["fits", "tight", "too big"]
DISK_MARGIN = 1.10  # a download needs its size plus 10%
_COMFORT = 0.5  # share of RAM (or free VRAM) a model may take and still "fit"
_LIMIT = 0.8  # beyond this share it is "too big"


@dataclass(frozen=True)
class Hardware:
    ram_total: int
    disk_free: int
    gpu_name: str | None = None
    vram_free: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ram_total_bytes": self.ram_total, "disk_free_bytes": self.disk_free,
                "gpu": self.gpu_name, "vram_free_bytes": self.vram_free}


def read_hardware(models_dir: Path, gpu_probe: Any = None) -> Hardware:
    """RAM, free disk where models go, and the GPU when the probe sees one."""
    import psutil

    folder = models_dir
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    gpu_name, vram_free = None, None
    if gpu_probe is not None:
        reading = gpu_probe.read()
        if reading.available and reading.memory_free_bytes:
            gpu_name, vram_free = reading.name, int(reading.memory_free_bytes)
    return Hardware(psutil.virtual_memory().total, shutil.disk_usage(folder).free, gpu_name, vram_free)


def on_gpu(entry: CatalogEntry, hw: Hardware) -> bool:
    """Would this model run on the GPU here? Only where it uses one and its VRAM need is within the limit."""
    return bool(entry.vram_bytes and hw.vram_free and entry.vram_bytes <= hw.vram_free * _LIMIT)


def fit(entry: CatalogEntry, hw: Hardware, *, installed: bool = False) -> tuple[Fit, str]:
    """The verdict and one sentence saying why."""
    size = entry.size_bytes or 0
    if not installed and size * DISK_MARGIN > hw.disk_free:
        return "too big", f"needs {gb(size * DISK_MARGIN)} of disk, {gb(hw.disk_free)} free"
    if on_gpu(entry, hw):
        need, have, where = entry.vram_bytes or 0, hw.vram_free or 0, "free VRAM"
    else:
        need, have, where = entry.ram_bytes or size, hw.ram_total, "RAM"
    if need > have * _LIMIT:
        return "too big", f"needs {gb(need)} of {where}, {gb(have)} here"
    if need > have * _COMFORT or (not installed and size * DISK_MARGIN * 2 > hw.disk_free):
        return "tight", f"needs {gb(need)} of {where} ({gb(have)} here); little room left beside a game"
    return "fits", f"needs {gb(need)} of {where} ({gb(have)} here)"


def recommended(catalog: Catalog, hw: Hardware) -> dict[Capability, str | None]:
    """Per capability the best-ranked model that fits, chat first (it is the largest), within half the RAM together."""
    chosen: dict[Capability, str | None] = {}
    budget = hw.ram_total * _COMFORT
    for capability in ("llm", "asr", "tts"):
        best: CatalogEntry | None = None
        for entry in catalog.for_capability(capability):
            gpu = on_gpu(entry, hw)
            if fit(entry, hw)[0] != "fits" or not (gpu or entry.cpu_friendly):
                continue
            need = 0 if gpu else entry.ram_bytes or 0
            if need > budget or not _prefer(entry, best):
                continue
            best = entry
        chosen[capability] = best.id if best else None
        if best is not None and not on_gpu(best, hw):
            budget -= best.ram_bytes or 0
    return {c: chosen.get(c) for c in CAPABILITIES}


def _prefer(entry: CatalogEntry, best: CatalogEntry | None) -> bool:
    """Higher rank wins; among equals the English-speaking one, then the smaller download."""
    if best is None:
        return True
    key = (entry.rank, "en" in entry.languages, -(entry.size_bytes or 0))
    return key > (best.rank, "en" in best.languages, -(best.size_bytes or 0))


def gb(n: float) -> str:
    """Bytes as a person reads them: 1.6 GB, 480 MB."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"
