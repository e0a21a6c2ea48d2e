"""`aistack models ...`: list the catalog and install the starter pack."""

from __future__ import annotations

import sys

from models.errors import AistackError
from models.settings import Settings
from models.starter import install_starter
from models.store import ModelStore


def run_models_command(command: str, settings: Settings) -> int:
    store = ModelStore(settings.models_dir)
    if command == "list":
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
    if command == "install-starter":
        try:
            done = install_starter(store)
        except AistackError as exc:
            print(f"aistack: {exc.message}", file=sys.stderr)
            return 1
        print(f"Starter pack ready in {store.root} ({len(done)} installed now).")
        return 0
    raise AssertionError(command)
