"""The store: models installed under `<data dir>/models/`, one folder and manifest each.

An install is assembled in `models/.partial/<id>/` and renamed into place only
after every file checks out, so a half-written model is never listed or loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.core.errors import Conflict, Malformed
from models.store.catalog import Catalog
from models.store.entries import Capability, CatalogEntry

MANIFEST = "manifest.json"
PARTIAL_DIR = ".partial"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
IN_USE_WAIT_SEC = 3.0  # how long a removal waits for files another process is letting go of (Windows)


def validate_model_id(model_id: str) -> str:
    """Refuse ids that could escape the models folder or are not printable names."""
    if not isinstance(model_id, str) or not _ID_RE.match(model_id) or ".." in model_id:
        raise Malformed(
            f"'{str(model_id)[:80]}' is not a valid model id: use letters, digits, '.', '_' and '-' (at most 128)."
        )
    return model_id


def validate_file_name(name: str) -> str:
    if not name or name != Path(name).name or name in (".", "..") or name.startswith(".") or "\\" in name:
        raise Malformed(f"'{name[:80]}' is not a valid model file name.")
    return name


def sha256_of(path: Path, chunk: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class InstalledModel:
    """A model on disk, as its manifest describes it."""

    id: str
    capability: Capability
    engine: str
    path: Path
    manifest: dict[str, Any]

    @property
    def owned_by(self) -> str:
        return str(self.manifest.get("owned_by", "unknown"))

    @property
    def languages(self) -> list[str]:
        return list(self.manifest.get("languages") or [])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.manifest.get("options") or {})

    @property
    def size_bytes(self) -> int:
        return sum(int(f.get("size") or 0) for f in self.manifest.get("files", []))

    def file(self, name: str) -> Path:
        return self.path / validate_file_name(name)

    def to_spec(self) -> dict[str, Any]:
        """Plain data a runner process needs to load the model."""
        return {
            "id": self.id,
            "capability": self.capability,
            "engine": self.engine,
            "path": str(self.path),
            "files": [f["name"] for f in self.manifest.get("files", [])],
            "options": self.options,
            "languages": self.languages,
        }


class ModelStore:
    """Knows what is installed. Cheap to query: manifests are re-read when the folder changes."""

    def __init__(self, models_dir: Path, catalog: Catalog | None = None):
        self.root = models_dir
        self.catalog = catalog or Catalog()
        self._cache: tuple[float, dict[str, InstalledModel]] | None = None

    # Reading -----------------------------------------------------------------------
    def installed(self) -> list[InstalledModel]:
        return list(self._scan().values())

    def get(self, model_id: str) -> InstalledModel | None:
        try:
            validate_model_id(model_id)
        except Malformed:
            return None
        return self._scan().get(model_id)

    def by_capability(self, capability: Capability) -> list[InstalledModel]:
        return [m for m in self._scan().values() if m.capability == capability]

    def find(self, name: str, capability: Capability | None = None) -> InstalledModel | None:
        """An installed model by id or catalog alias (case-insensitive)."""
        name = name.strip()
        installed = self._scan()
        model = installed.get(name) or next((m for m in installed.values() if m.id.lower() == name.lower()), None)
        if model is None:
            entry = self.catalog.get(name)
            model = installed.get(entry.id) if entry else None
        if model is not None and capability is not None and model.capability != capability:
            return None
        return model

    def _scan(self) -> dict[str, InstalledModel]:
        try:
            stamp = self.root.stat().st_mtime
        except FileNotFoundError:
            return {}
        if self._cache and self._cache[0] == stamp:
            return self._cache[1]
        found: dict[str, InstalledModel] = {}
        for child in sorted(self.root.iterdir()):
            if child.name.startswith(".") or not child.is_dir():
                continue
            model = self._read(child)
            if model is not None:
                found[model.id] = model
        self._cache = (stamp, found)
        return found

    @staticmethod
    def _read(folder: Path) -> InstalledModel | None:
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            if manifest.get("id") != folder.name:
                return None
            return InstalledModel(
                id=manifest["id"],
                capability=manifest["capability"],
                engine=manifest["engine"],
                path=folder,
                manifest=manifest,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # Writing -----------------------------------------------------------------------
    def partial_dir(self, model_id: str) -> Path:
        return self.root / PARTIAL_DIR / validate_model_id(model_id)

    def commit(
        self,
        entry: CatalogEntry,
        staged: Path,
        *,
        source: dict[str, Any],
        expected: Mapping[str, tuple[int | None, str | None]] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> InstalledModel:
        """Check every staged file against the entry, write the manifest, rename into place.

        `expected` maps file name -> (size, sha256) as the source published them (the
        hub's LFS hash); they are checked where the catalog pins nothing. A file that
        fails its check is deleted: it is worthless, and a retry fetches it afresh.
        `extra` adds facts to the manifest (a GGUF's architecture and context).
        """
        files = []
        for f in entry.files:
            path = staged / validate_file_name(f.name)
            if not path.is_file():
                raise Malformed(f"Model {entry.id}: file {f.name} is missing.")
            want_size, want_sha = (expected or {}).get(f.name, (None, None))
            want_size = f.size if f.size is not None else want_size
            want_sha = f.sha256 if f.sha256 is not None else want_sha
            size = path.stat().st_size
            if want_size is not None and size != want_size:
                path.unlink()
                raise Malformed(f"Model {entry.id}: {f.name} is {size} bytes, expected {want_size}. The download is damaged.")
            digest = sha256_of(path)
            if want_sha is not None and digest != want_sha:
                path.unlink()
                raise Malformed(f"Model {entry.id}: {f.name} failed its sha256 check. The download is damaged or tampered.")
            files.append({"name": f.name, "size": size, "sha256": digest})
        manifest = {
            "id": entry.id,
            "capability": entry.capability,
            "engine": entry.engine,
            "owned_by": entry.owned_by,
            "licence": entry.licence,
            "languages": list(entry.languages),
            "aliases": list(entry.aliases),
            "description": entry.description,
            "options": dict(entry.options),
            "files": files,
            "source": source,
            "installed_at": time.time(),
            **(extra or {}),
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        final = self.root / validate_model_id(entry.id)
        if final.exists():
            raise Conflict(f"Model {entry.id} is already installed. Delete it first to reinstall.")
        os.replace(staged, final)
        self._cache = None
        model = self._read(final)
        assert model is not None
        return model

    def remove(self, model_id: str) -> None:
        folder = self.root / validate_model_id(model_id)
        if not (folder / MANIFEST).is_file():
            raise Malformed(f"Model {model_id} is not installed.")
        # Rename first so a crash mid-delete never leaves a half model that still lists.
        trash = self.root / PARTIAL_DIR / f"{model_id}.deleting-{os.getpid()}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + IN_USE_WAIT_SEC
        while True:
            try:
                os.replace(folder, trash)
                break
            except PermissionError:
                # Windows: a process still has a file open (a runner that is just exiting after an unload
                # lets go within moments; another program, or a loaded model, does not).
                if time.monotonic() >= deadline:
                    raise Conflict(f"Model {model_id} is in use by another program or a running model. "
                                   "Unload it and close programs that have its files open, then remove it.") from None
                time.sleep(0.2)
        shutil.rmtree(trash, ignore_errors=True)
        self._cache = None

    def ids(self, capability: Capability | None = None) -> Iterable[str]:
        return [m.id for m in self._scan().values() if capability is None or m.capability == capability]
