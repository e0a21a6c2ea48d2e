"""Models the user adds: any GGUF on Hugging Face picked by quant, or a model from their own disk.

`add-hf owner/repo[:QUANT]` lists the repo's GGUF files and picks the one whose
name carries the quant (Q4_K_M unless asked, as llama.cpp does). `import` takes
a GGUF file, a CTranslate2 Whisper folder or a piper `.onnx` + `.onnx.json`
pair, checks it is what it claims to be, refuses symlinks that lead outside
what was given, and copies it into the store (or, with `link`, leaves the big
files where they are and links to them).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.core.errors import Conflict, Malformed
from models.store import fetch as transfer
from models.store import hub
from models.store.download import gguf_facts
from models.store.entries import Capability, CatalogEntry, HubSource, LocalSource, ModelFile
from models.store.model_store import InstalledModel, ModelStore, validate_file_name, validate_model_id

DEFAULT_QUANT = "Q4_K_M"
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_QUANT_RE = re.compile(r"(?i)(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|F32)(?=\.gguf$|[-_.])")
_SPLIT_RE = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
_CT2_NEEDS = ("model.bin", "config.json", "tokenizer.json")


def new_model_id(store: ModelStore, wanted: str | None, fallback: str) -> str:
    """The id for an added model: the one asked for, else derived from the file name; never a taken one."""
    model_id = wanted if wanted else re.sub(r"[^a-z0-9._-]+", "-", fallback.lower()).strip("-._")[:128]
    validate_model_id(model_id)
    if store.get(model_id) is not None:
        raise Conflict(f"A model with id '{model_id}' is already installed. Remove it first, or choose another id with --id.")
    if store.catalog.get(model_id) is not None:
        raise Conflict(f"'{model_id}' is the name of a catalog model. Choose another id with --id.")
    return model_id


def gguf_entry(model_id: str, name: str, path: str, source: HubSource | LocalSource, owned_by: str,
               quant: str | None = None) -> CatalogEntry:
    """A chat model made of one GGUF file, described like a catalog entry so the store can commit it."""
    where = f"Hugging Face {source.repo}" if isinstance(source, HubSource) else "a local file"
    return CatalogEntry(
        id=model_id, capability="llm", engine="llama.cpp", owned_by=owned_by, licence="see the model card",
        files=(ModelFile(validate_file_name(name), path),), source=source, description=f"{name} from {where}", quant=quant,
    )


# Hugging Face --------------------------------------------------------------------------------
def parse_repo(spec: str) -> tuple[str, str | None]:
    """`owner/repo[:QUANT]` -> (repo, quant or None)."""
    repo, _, quant = spec.partition(":")
    if not _REPO_RE.match(repo) or ".." in repo:
        raise Malformed(f"'{repo[:100]}' is not a Hugging Face repo name: use owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF.")
    return repo, quant.strip() or None


def quant_of(path: str) -> str | None:
    match = _QUANT_RE.search(path.rsplit("/", 1)[-1])
    return match.group(1).upper() if match else None


def gguf_quants(repo: str, revision: str = "main") -> dict[str, tuple[str, int]]:
    """The repo's single-file GGUFs by quant: {"Q4_K_M": (path, size), ...}."""
    with hub.open_client() as client:
        files = hub.list_files(client, repo, revision)
    quants: dict[str, tuple[str, int]] = {}
    for path, size in sorted(files.items()):
        quant = quant_of(path)
        if path.lower().endswith(".gguf") and quant and not _SPLIT_RE.search(path) and "mmproj" not in path.lower():
            quants.setdefault(quant, (path, size))
    return quants


def hub_gguf_entry(store: ModelStore, repo: str, path: str | None = None, *, quant: str | None = None,
                   model_id: str | None = None, revision: str = "main") -> tuple[CatalogEntry, dict[str, Any]]:
    """`aistack models add-hf`: a GGUF of a Hugging Face repo, by file path or by quant; and how to resume it."""
    if path is None:
        quants = gguf_quants(repo, revision)
        want = (quant or DEFAULT_QUANT).upper()
        if want not in quants:
            have = ", ".join(quants) or "none"
            raise Malformed(f"'{repo}' has no single-file {want} GGUF. Quants there: {have}.", provider=hub.PROVIDER)
        path = quants[want][0]
    parts = path.split("/")
    if not path.lower().endswith(".gguf") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise Malformed(f"'{path[:100]}' is not a GGUF file path inside the repo (it must end in .gguf).")
    name = parts[-1]
    new_id = new_model_id(store, model_id, name[: -len(".gguf")])
    entry = gguf_entry(new_id, name, path, HubSource(repo, revision), repo.split("/")[0].lower(), quant_of(path))
    return entry, {"id": new_id, "repo": repo, "path": path, "revision": revision}


def entry_from_intent(store: ModelStore, intent: dict[str, Any]) -> CatalogEntry | None:
    """The entry an unfinished download was for (a catalog model, or one added from the hub)."""
    if intent.get("catalog"):
        return store.catalog.get(str(intent.get("id", "")))
    try:
        repo, path, model_id = str(intent["repo"]), str(intent["path"]), validate_model_id(str(intent["id"]))
        return gguf_entry(model_id, path.rsplit("/", 1)[-1], path, HubSource(repo, str(intent.get("revision") or "main")),
                          repo.split("/")[0].lower(), quant_of(path))
    except (KeyError, Malformed):
        return None


# Import ----------------------------------------------------------------------------------------
def import_model(store: ModelStore, source: Path, *, model_id: str | None = None, link: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> InstalledModel:
    """`aistack models import`: a GGUF file, a CTranslate2 Whisper folder, or a piper voice (.onnx + .onnx.json)."""
    path = source.expanduser().absolute()
    capability: Capability
    if path.is_dir():
        capability, engine, files = "asr", "faster-whisper", _whisper_folder(path)
    elif path.is_file() and path.name.lower().endswith((".onnx", ".onnx.json")):
        capability, engine, files = "tts", "piper", _piper_pair(path)
    elif path.is_file():
        capability, engine, files = "llm", "llama.cpp", _gguf_file(path)
    else:
        raise Malformed(f"{source} is not a file or folder.")
    stem = files[0].name.split(".")[0] if capability != "llm" else files[0].stem
    entry = CatalogEntry(
        id=new_model_id(store, model_id, path.name if capability == "asr" else stem), capability=capability,
        engine=engine, owned_by="local", licence="see the model's own terms",
        files=tuple(ModelFile(f.name, str(f)) for f in files), source=LocalSource(str(path)),
        description=f"imported from {path}",
    )
    return _stage_and_commit(store, entry, files, link=link, progress=progress)


def _gguf_file(path: Path) -> list[Path]:
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise Malformed(f"{path.name} is not a GGUF model file (it lacks the GGUF signature).")
    return [path]


def _whisper_folder(folder: Path) -> list[Path]:
    """A CTranslate2 Whisper model: model.bin, config.json, tokenizer.json and a vocabulary; no escaping links."""
    missing = [n for n in _CT2_NEEDS if not (folder / n).is_file()]
    vocab = [p for p in (folder / "vocabulary.json", folder / "vocabulary.txt") if p.is_file()]
    if missing or not vocab:
        need = ", ".join(missing + ([] if vocab else ["vocabulary.json or vocabulary.txt"]))
        raise Malformed(f"{folder.name} is not a CTranslate2 Whisper folder: it lacks {need}.")
    files = [p for p in sorted(folder.iterdir()) if p.is_file() or p.is_symlink()]
    for p in files:
        if p.is_symlink() and folder.resolve() not in p.resolve().parents:
            raise Malformed(f"{p.name} in {folder.name} is a link to a file outside the folder; aistack refuses it.")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Malformed(f"{folder.name}/config.json is not valid JSON ({type(exc).__name__}).") from None
    if not isinstance(config, dict) or "suppress_ids" not in config and "alignment_heads" not in config:
        raise Malformed(f"{folder.name}/config.json does not describe a Whisper model.")
    if (folder / "model.bin").stat().st_size < 1024:
        raise Malformed(f"{folder.name}/model.bin is too small to be a model.")
    return [p for p in files if not p.name.startswith(".") and p.name != "manifest.json"]


def _piper_pair(path: Path) -> list[Path]:
    """A piper voice: the .onnx model and its .onnx.json config side by side."""
    onnx = path if path.name.lower().endswith(".onnx") else path.with_name(path.name[: -len(".json")])
    config = onnx.with_name(onnx.name + ".json")
    for p in (onnx, config):
        if not p.is_file():
            raise Malformed(f"A piper voice needs both {onnx.name} and {config.name}; {p.name} is missing.")
        if p.is_symlink() and p.resolve().parent != onnx.parent.resolve():
            raise Malformed(f"{p.name} is a link to a file in another folder; aistack refuses it.")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        rate = int(data["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError):
        raise Malformed(f"{config.name} is not a piper voice config (it needs audio.sample_rate).") from None
    if rate <= 0 or onnx.stat().st_size < 1024:
        raise Malformed(f"{onnx.name} is not a usable piper voice.")
    return [onnx, config]


def _stage_and_commit(store: ModelStore, entry: CatalogEntry, files: list[Path], *, link: bool,
                      progress: Callable[[int, int], None] | None) -> InstalledModel:
    staged = store.partial_dir(entry.id)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    total, done = sum(f.stat().st_size for f in files), 0
    try:
        for f in files:
            target = staged / validate_file_name(f.name)
            if link:
                try:
                    target.symlink_to(f.resolve())
                except OSError as exc:  # Windows without the right to make links
                    raise Malformed(f"Could not link to {f.name} ({exc.strerror}). Import it without --link to copy it.") from None
                done += f.stat().st_size
                continue
            with f.open("rb") as src, target.open("wb") as dst:
                while block := src.read(hub.CHUNK * 4):
                    transfer.write(dst, block, f.name)
                    done += len(block)
                    if progress:
                        progress(done, total)
        extra = gguf_facts(entry, staged)
        source = {"type": "import", "path": str(files[0].resolve().parent if entry.capability == "asr" else files[0].resolve()),
                  "linked": link}
        return store.commit(entry, staged, source=source, extra=extra)
    finally:
        shutil.rmtree(staged, ignore_errors=True)

