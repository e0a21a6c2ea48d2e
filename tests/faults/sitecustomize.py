"""Seeded faults, and a machine of a given RAM size, for server processes the tests start.

Faults break one README promise on purpose, without editing product code.

Python imports `sitecustomize` at start-up from the first folder on its path
that has one. `tests/faults/run.py` (or a person) puts this folder on
`PYTHONPATH` and names the faults in `AISTACK_FAULT` (comma-separated); the
server, its runner processes (spawned children inherit the environment) and
the pytest process then all start with the fault in place. With no
`AISTACK_FAULT` this module does nothing.

Each fault patches its target module right after that module is first
imported (an import hook), so processes that never import the target pay
nothing. The list of faults and the tests that catch them is `tests/faults.md`.

`AISTACK_TEST_RAM_MB` is not a fault: it gives the server a machine with that
much RAM, where each loaded model uses exactly the memory the manager estimates
for it (through the manager's own `MemoryProbe` interface). Eviction tests on
the real starter models then get the same decisions on any machine, instead of
depending on how much RAM the shared test machine has free at that moment.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

FAULTS = tuple(name.strip() for name in os.environ.get("AISTACK_FAULT", "").split(",") if name.strip())


# The faults ----------------------------------------------------------------------------
def held_stream(module: ModuleType) -> bool:
    """Every StreamingResponse sends its status and headers at once but holds its body until the end."""
    cls = getattr(module, "StreamingResponse", None)
    if cls is None:
        return False

    async def stream_response(self: Any, send: Callable[..., Any]) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        held = [chunk if isinstance(chunk, bytes | memoryview) else chunk.encode(self.charset)
                async for chunk in self.body_iterator]
        for chunk in held:
            await send({"type": "http.response.body", "body": bytes(chunk), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    cls.stream_response = stream_response
    return True


def ignore_cancel(module: ModuleType) -> bool:
    """Engines never see a cancel: `ctx.check()` never raises and `ctx.cancelled` stays False."""
    cls = getattr(module, "JobContext", None)
    if cls is None:
        return False
    cls.check = lambda self: None
    cls.cancelled = property(lambda self: False)
    return True


def no_keep_alive_expiry(module: ModuleType) -> bool:
    """Models loaded by a request stay loaded: no keep-alive (server default, the request's, or 0) ends them."""
    cls = getattr(module, "Manager", None)
    if cls is None:
        return False

    async def never(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    patched = False
    for name in ("_expiry", "expiry_for"):
        if hasattr(cls, name):
            setattr(cls, name, lambda self, *args, **kwargs: None)
            patched = True
    for name in ("_unload_if_idle", "_expire"):
        if hasattr(cls, name):
            setattr(cls, name, never)
            patched = True
    return patched


def voice_row_dropped(module: ModuleType) -> bool:
    """One row of the OpenAI voice table is lost (`AISTACK_FAULT_VOICE`, default nova): it speaks the default."""
    table = getattr(module, "OPENAI_VOICE_TABLE", None)
    if table is None:
        return False
    table.pop(os.environ.get("AISTACK_FAULT_VOICE", "nova"), None)
    return True


def machine_ram(module: ModuleType) -> bool:
    """The manager reads free RAM from a machine of AISTACK_TEST_RAM_MB where only its loaded models use memory."""
    cls = getattr(module, "Manager", None)
    if cls is None:
        return False
    from models.runtime import placement

    total = int(float(os.environ["AISTACK_TEST_RAM_MB"]) * 2**20)

    class Machine:
        def __init__(self, manager: Any):
            self.manager = manager

        def ram_available(self) -> int:
            loaded = [m for m in self.manager.store.installed() if self.manager.status(m.id).get("loaded")]
            return total - sum(placement.memory_need(m, self.manager.settings.llm_context) for m in loaded)

    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.memory = Machine(self)

    cls.__init__ = __init__
    return True


# fault id -> (modules that may hold the target, the patch)
SEEDS: dict[str, tuple[Sequence[str], Callable[[ModuleType], bool]]] = {
    "held-stream": (("starlette.responses",), held_stream),
    "ignore-cancel": (("models.engines.base", "models.engines.protocol"), ignore_cancel),
    "no-keep-alive-expiry": (("models.runtime.manager", "models.runtime.manager"), no_keep_alive_expiry),
    "voice-row-dropped": (("models.naming.voices", "models.engines.piper.voices"), voice_row_dropped),
}


# The import hook -----------------------------------------------------------------------
class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds target modules through the other finders and runs their patch once they are executed."""

    def __init__(self, patches: dict[str, list[Callable[[ModuleType], bool]]]):
        self.patches = patches

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.patches:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, self.patches[fullname])
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, patches: list[Callable[[ModuleType], bool]]):
        self.loader = loader
        self.patches = patches

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create else None

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        for patch in self.patches:
            if patch(module):
                print(f"aistack fault: {patch.__name__} seeded in {module.__name__} (pid {os.getpid()})",
                      file=sys.stderr)


def install(faults: Sequence[str]) -> None:
    patches: dict[str, list[Callable[[ModuleType], bool]]] = {}
    if os.environ.get("AISTACK_TEST_RAM_MB"):
        patches["models.runtime.manager"] = [machine_ram]
    for fault in faults:
        if fault not in SEEDS:
            raise SystemExit(f"AISTACK_FAULT: unknown fault '{fault}'; known: {', '.join(SEEDS)}")
        modules, patch = SEEDS[fault]
        for name in modules:
            patches.setdefault(name, []).append(patch)
    sys.meta_path.insert(0, _PatchAfterImport(patches))


if FAULTS or os.environ.get("AISTACK_TEST_RAM_MB"):
    install(FAULTS)
