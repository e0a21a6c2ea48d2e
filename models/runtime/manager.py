"""The manager: the one owner of model lifecycle.

It loads a model into its runner on first use (or when the user asks), keeps
it while it is used, unloads it when its keep-alive runs out, evicts idle
models when memory is short (`models.runtime.placement` decides which), and
hands out the model's job slots, in turn (`models.runtime.queue`): one for
most engines, one per parallel sequence for a chat model.
Every other part of the app asks the manager; nobody else starts or stops runners.

States are explicit: installed -> loading -> loaded -> unloading -> installed,
and failed when the last load did not work (the next request tries again).
Each model has one asyncio lock that serialises its loads and unloads, so
concurrent load, unload and job calls cannot double-load or leak a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib.util
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from models.core.errors import AistackError, EngineUnavailable, Malformed
from models.core.settings import Settings
from models.hardware.gpu import GpuProbe, wait_released
from models.runtime import placement, registry
from models.runtime.protocol import Accepted, JobEvent, JobSpec
from models.runtime.queue import ModelSlots
from models.runtime.runner import UNLOADED, Runner
from models.store.model_store import InstalledModel, ModelStore

log = logging.getLogger("aistack.manager")
T = TypeVar("T")


class ModelState(enum.StrEnum):
    INSTALLED = "installed"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"
    FAILED = "failed"


@dataclass
class _Record:
    id: str
    state: ModelState = ModelState.INSTALLED
    runner: Runner | None = None
    pinned: bool = False  # loaded by the user: stays until the user unloads it
    slot: ModelSlots = field(init=False)  # the job slots and the requests waiting for them
    last_used: float = 0.0
    job_secs: deque[float] = field(default_factory=lambda: deque(maxlen=8))  # the last jobs' times (Retry-After)
    expires_at: float | None = None
    error: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.slot = ModelSlots(self.id)

    @property
    def leased(self) -> bool:
        """A request holds a job slot."""
        return self.slot.taken


def parse_keep_alive(value: Any) -> float | None:
    """Seconds from `300`, `"30s"`, `"5m"`, `"1h"`, `-1` (for ever) or `0` (unload now); None if missing."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Malformed("keep_alive must be seconds or a duration like '30s', '5m' or '1h'.")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        unit = next((u for u in ("ms", "s", "m", "h") if text.endswith(u)), "")
        try:
            seconds = float(text[: len(text) - len(unit)] if unit else text) * units.get(unit, 1)
        except ValueError:
            raise Malformed(f"keep_alive '{value}' is not a duration: use seconds or e.g. '30s', '5m', '1h'.") from None
    return -1.0 if seconds < 0 else seconds


class Lease:
    """The right to run jobs on one loaded model. Release it exactly once (`release` is idempotent)."""

    def __init__(self, manager: Manager, record: _Record, runner: Runner, model: InstalledModel, keep_alive: float | None):
        self.manager = manager
        self.model = model
        self._record = record
        self._keep_alive = keep_alive
        self._released = False
        self.runner = runner  # an unload may stop it while leased: the job then says so
        self.acquired_at = time.monotonic()

    @property
    def info(self) -> dict[str, Any]:
        """What the engine said about itself when it loaded: device, sample rate, embedding size..."""
        return dict(self.runner.info)

    @property
    def device(self) -> str:
        return str(self.runner.info.get("device", "cpu"))

    async def stream(self, job: JobSpec) -> AsyncIterator[JobEvent]:
        """`Accepted`, partial results as they come, then the final one."""
        events = self.runner.run(job)
        try:
            async for event in events:
                yield event
        finally:
            # Close the runner's generator now (not at garbage collection), so a consumer that
            # stops early cancels the job before the slot is handed to the next request.
            await events.aclose()

    async def run(self, job: JobSpec) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Run to the end: (partial results, final result)."""
        partials: list[dict[str, Any]] = []
        stream = self.runner.run(job)  # an async generator: closed below even on cancel
        try:
            async for event in stream:
                if event.final:
                    return partials, event.data
                if not isinstance(event, Accepted):
                    partials.append(event.data)
        finally:
            await stream.aclose()
        raise EngineUnavailable(f"Model {self.model.id} ended the job without a result.", provider=self.model.engine)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.manager._release(self._record, self._keep_alive, time.monotonic() - self.acquired_at)


class Manager:
    """Loads, unloads and schedules models. Create inside the running event loop."""

    def __init__(
        self,
        store: ModelStore,
        settings: Settings,
        *,
        engines: dict[str, str] | None = None,
        memory: placement.MemoryProbe | None = None,
    ):
        self.store = store
        self.settings = settings
        self.memory: placement.MemoryProbe = memory or placement.SystemMemory()
        self.engines = {**registry.engine_classes(), **settings.engines, **(engines or {})}
        self._records: dict[str, _Record] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        self._engine_ok: dict[str, bool] = {}
        # Engine name -> spec keys ("device", "device_reason") for the next load; game mode sets it (models.hardware.game_mode).
        self.device_policy: Callable[[str], dict[str, Any]] | None = None
        self.gpu: GpuProbe | None = None  # set by the app; with it, loads make room in GPU memory too

    # Start and stop ------------------------------------------------------------------
    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="aistack-keep-alive")

    async def close(self) -> None:
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.unload_all()

    # Queries -------------------------------------------------------------------------
    def engine_available(self, engine: str) -> bool:
        """True when the engine's Python modules can be imported (checked without importing them)."""
        if engine not in self._engine_ok:
            path = self.engines.get(engine)
            modules = registry.needed_modules(engine, path)
            self._engine_ok[engine] = bool(path) and all(_module_exists(m) for m in modules)
        return self._engine_ok[engine]

    def servable(self) -> list[InstalledModel]:
        """Installed models whose engine can run here: what /v1/models lists."""
        return [m for m in self.store.installed() if self.engine_available(m.engine)]

    def status(self, model_id: str) -> dict[str, Any]:
        """The model's runtime state: the manager's part of its status row (`models.runtime.status`)."""
        record = self._records.get(model_id)
        runner = record.runner if record is not None else None
        loaded = record is not None and record.state == ModelState.LOADED and runner is not None
        info = dict(runner.info) if runner is not None else {}
        return {
            "state": record.state.value if record is not None else ModelState.INSTALLED.value,
            "loaded": loaded,
            "pinned": record is not None and record.pinned,
            "busy": record is not None and (record.leased or (runner is not None and not runner.idle)),
            "queued": record.slot.queued if record is not None else 0,
            "slots": _slots(runner) if loaded and runner is not None else None,
            "device": info.get("device") if loaded else None,
            "device_detail": info.get("device_detail") if loaded else None,
            "runner_pid": runner.pid if runner is not None else None,
            "memory_bytes": _resident_bytes(runner.pid) if loaded and runner is not None else None,
            "expires_in_sec": None if record is None or record.expires_at is None
            else round(max(0.0, record.expires_at - time.monotonic()), 1),
            "error": record.error if record is not None else None,
            "info": info,
        }

    def runner_pids(self) -> list[int]:
        return [r.runner.pid for r in self._records.values() if r.runner is not None and r.runner.pid is not None]

    # Loading -------------------------------------------------------------------------
    def _record(self, model_id: str) -> _Record:
        record = self._records.get(model_id)
        if record is None:
            record = self._records[model_id] = _Record(model_id)
        return record

    def _installed(self, model_id: str) -> InstalledModel:
        model = self.store.get(model_id)
        if model is None:
            raise Malformed(f"Model '{model_id}' is not installed.")
        if not self.engine_available(model.engine):
            raise EngineUnavailable(
                f"The {model.engine} engine is not available in this installation, so {model_id} cannot run.",
            )
        return model

    async def load(self, model_id: str, *, pinned: bool = True) -> dict[str, Any]:
        """Load a model (the user asked: it stays until unloaded)."""
        model = self._installed(model_id)
        record = self._record(model_id)
        async with record.lock:
            await self._ensure_loaded(record, model)
            if pinned:
                record.pinned = True
                record.expires_at = None
        return self.status(model_id)

    async def _ensure_loaded(self, record: _Record, model: InstalledModel) -> Runner:
        """With `record.lock` held: return a live runner, starting one if needed."""
        if record.runner is not None and record.runner.alive:
            return record.runner
        if record.runner is not None:  # it died; clean up what is left of it
            await asyncio.to_thread(record.runner.kill)
            record.runner = None
        if self._closing:
            raise EngineUnavailable("aistack is shutting down.")
        device = self.device_policy(model.engine) if self.device_policy else {"device": "auto"}  # game mode may hold
        slots = await self._make_room(model)
        record.state, record.error = ModelState.LOADING, None
        spec = {**model.to_spec(), "settings": self.settings.model_dump(mode="json"), **device}
        if model.engine == "llama.cpp":
            spec["slots"] = slots  # at most this many: the runner may take fewer for the GPU's memory
        runner = Runner(
            self.engines[model.engine],
            spec,
            load_timeout=self.settings.model_load_timeout_sec,
            cancel_grace=self.settings.cancel_grace_sec,
        )
        started = time.monotonic()
        try:
            await runner.start()
        except AistackError as exc:
            record.state, record.error = ModelState.FAILED, exc.message
            raise
        except BaseException as exc:
            await asyncio.to_thread(runner.kill)
            record.state, record.error = ModelState.FAILED, str(exc)
            raise
        log.info("loaded %s in %.2f s on %s (pid %s)", model.id, time.monotonic() - started,
                 runner.info.get("device", "cpu"), runner.pid)
        record.runner, record.state = runner, ModelState.LOADED
        record.slot.resize(runner.capacity)  # requests waiting behind the load take the other slots now
        record.last_used = time.monotonic()
        record.expires_at = None if record.pinned else self._expiry(None)
        return runner

    async def _make_room(self, model: InstalledModel) -> int:
        """Unload idle models the user did not load, least recently used first, until the new one fits.

        A chat model that still does not fit gets fewer parallel sequences; returns how many fit.
        """
        slots = self._wanted_slots(model)
        need = placement.memory_need(model, self.settings.llm_context, slots)
        reserve = self.settings.memory_reserve_mb << 20
        while (free := self.memory.ram_available() - reserve) < need:
            residents = [self._resident(r) for r in self._records.values() if r is not self._records.get(model.id)
                         and r.state == ModelState.LOADED and r.runner is not None]
            victim = placement.pick_victim(residents)
            if victim is not None:
                log.info("evicting %s to make room for %s", victim.model_id, model.id)
                await self._unload_locked_free(self._records[victim.model_id])
            elif slots > 1:  # a chat model: fewer parallel sequences need a smaller context cache
                slots //= 2
                need = placement.memory_need(model, self.settings.llm_context, slots)
                log.warning("%s: only %d parallel sequences fit in free memory", model.id, slots)
            else:
                raise placement.refusal(model.id, need, free, residents)
        await self._make_vram_room(model)
        return slots

    def _wanted_slots(self, model: InstalledModel) -> int:
        """Parallel sequences a chat model asks for (1 for other engines); the engine may take fewer."""
        if model.engine != "llama.cpp":
            return 1
        from models.hardware.device_choice import chat_slots

        return chat_slots(self.settings.llm_parallel, "cpu" if self.gpu is None else "cuda")

    async def _make_vram_room(self, model: InstalledModel) -> None:
        """The same for GPU memory, among models on the GPU. What still does not fit loads with fewer
        llama.cpp layers on the GPU, or on the CPU, and says so (models.hardware.device_choice)."""
        need = placement.vram_need(model, self.settings.llm_context) if self.gpu is not None else None
        if self.gpu is None or need is None:
            return
        reserve = self.settings.vram_reserve_mb << 20
        while True:
            reading = await asyncio.to_thread(self.gpu.read)
            if not reading.available or (reading.memory_free_bytes or 0) - reserve >= need:
                return
            residents = [self._resident(r) for r in self._records.values() if r is not self._records.get(model.id)
                         and r.state == ModelState.LOADED and r.runner is not None and r.runner.info.get("device") == "cuda"]
            victim = placement.pick_victim(residents)
            if victim is None:
                return
            log.info("evicting %s from the GPU to make room for %s", victim.model_id, model.id)
            await self._unload_locked_free(self._records[victim.model_id])

    @staticmethod
    def _resident(record: _Record) -> placement.Resident:
        idle = (not record.leased and not record.slot.queued and record.runner is not None and record.runner.idle
                and not record.lock.locked())  # a lock held means someone loads, leases or unloads it right now
        return placement.Resident(record.id, record.pinned, idle, record.last_used)

    # Jobs ----------------------------------------------------------------------------
    async def acquire(self, model_id: str, *, keep_alive: float | None = None) -> Lease:
        """Wait for one of the model's slots (in turn), load the model if needed, and lease it.

        Waits as long as the caller does; raises `Busy` when the queue is full or
        past the wait limit the user set. Cancelling the call (the client left)
        leaves the queue at once; a load already under way finishes, so the next
        request finds the model ready.
        """
        model = self._installed(model_id)
        record = self._record(model_id)
        settings = self.settings
        await record.slot.take(
            max_wait=settings.queue_wait_sec or None, max_queued=settings.queue_max, retry_after=self._retry_after(record)
        )
        try:
            runner = await _uncancelled(self._ready_runner(record, model))
        except BaseException:
            record.slot.release()
            raise
        record.expires_at = None
        return Lease(self, record, runner, model, keep_alive)

    async def _ready_runner(self, record: _Record, model: InstalledModel) -> Runner:
        """With a slot held: a loaded runner with room for one more job."""
        async with record.lock:
            runner = await self._ensure_loaded(record, model)
            if runner.jobs >= runner.capacity:
                # A client left mid-job; its job stops within the cancel grace (or the runner is killed).
                await runner.wait_room(self.settings.cancel_grace_sec + 1)
                if not runner.alive:
                    runner = await self._ensure_loaded(record, model)
            return runner

    def _retry_after(self, record: _Record) -> int:
        """Seconds until a request joining the queue now would run: the jobs ahead over the slots, at the
        model's measured time per job (the configured Retry-After until a job has been timed)."""
        if not record.job_secs:
            return self.settings.busy_retry_after_sec
        per_job = sum(record.job_secs) / len(record.job_secs)
        ahead = record.slot.queued + 1
        return max(1, min(3600, math.ceil(per_job * ahead / record.slot.capacity)))

    def _release(self, record: _Record, keep_alive: float | None, held_sec: float = 0.0) -> None:
        record.last_used = time.monotonic()
        if held_sec > 0:
            record.job_secs.append(held_sec)
        if record.slot.queued:
            record.slot.release()  # straight to the next request; a dead runner is restarted by it
            return
        record.slot.release()
        if record.runner is None or not record.runner.alive:
            # The engine died during the job; reap it now so state and processes stay true.
            asyncio.get_running_loop().create_task(self._reap(record.id))
            return
        if record.pinned:
            record.expires_at = None
        elif keep_alive == 0:
            asyncio.get_running_loop().create_task(self._unload_if_idle(record.id))
        else:
            record.expires_at = self._expiry(keep_alive)

    def _expiry(self, keep_alive: float | None) -> float | None:
        seconds = self.settings.model_keep_alive_sec if keep_alive is None else keep_alive
        return None if seconds < 0 else time.monotonic() + seconds

    # Unloading -----------------------------------------------------------------------
    async def unload(self, model_id: str) -> dict[str, Any]:
        """Stop the model's runner (a job in flight ends with an error). No-op if not loaded."""
        record = self._records.get(model_id)
        if record is not None:
            async with record.lock:
                await self._unload_locked_free(record)
        return self.status(model_id)

    async def unload_all(self) -> None:
        """Free all memory at once (the tray's "Free GPU memory")."""
        await asyncio.gather(*(self.unload(model_id) for model_id in list(self._records)), return_exceptions=True)

    async def _unload_locked_free(self, record: _Record) -> None:
        runner, record.runner = record.runner, None
        record.pinned, record.expires_at = False, None
        if runner is not None:
            record.state = ModelState.UNLOADING
            runner.crash_reason = runner.crash_reason or UNLOADED
            # A job in flight is not waited for: unloading means the memory comes back now.
            pid, on_gpu = runner.pid, runner.info.get("device") == "cuda"
            await asyncio.to_thread(runner.stop if runner.idle else runner.kill)
            log.info("unloaded %s", record.id)
            if on_gpu and pid is not None and self.gpu is not None:  # the next placement must see the VRAM back
                await asyncio.to_thread(wait_released, self.gpu, pid)
        record.state = ModelState.INSTALLED

    async def _unload_if_idle(self, model_id: str) -> None:
        record = self._records.get(model_id)
        if record is None:
            return
        async with record.lock:
            if not record.leased and not record.pinned and record.runner is not None and record.runner.idle:
                await self._unload_locked_free(record)

    async def _reap(self, model_id: str) -> None:
        record = self._records.get(model_id)
        if record is None:
            return
        async with record.lock:
            if record.runner is not None and not record.runner.alive and not record.leased:
                await self._unload_locked_free(record)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for record in list(self._records.values()):
                if record.runner is not None and not record.runner.alive and not record.leased:
                    await self._reap(record.id)
                elif record.expires_at is not None and record.expires_at <= now and not record.leased:
                    await self._unload_if_idle(record.id)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


async def _uncancelled(work: Awaitable[T]) -> T:
    """Await `work` to the end even if the caller is cancelled meanwhile (a load is not abandoned half-way)."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a caller that left never reads it
    return await asyncio.shield(task)


def _slots(runner: Runner) -> dict[str, int]:
    """A loaded model's slots: how many jobs it runs at once, and how many run now."""
    busy = min(runner.jobs, runner.capacity)
    return {"total": runner.capacity, "busy": busy, "free": runner.capacity - busy}


def _resident_bytes(pid: int | None) -> int | None:
    """A runner's resident memory (RAM; a GPU's memory is in the GPU's own process list)."""
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss) if pid else None
    except (psutil.Error, OSError):
        return None
