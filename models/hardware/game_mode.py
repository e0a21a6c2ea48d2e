"""Game mode: while a game uses the GPU, aistack steps aside; when it exits, aistack comes back.

Every few seconds it reads the GPU (models.hardware.gpu). Another program holding more
than `game_mode_vram_share` of the GPU's memory, or the GPU being busier than
`game_mode_gpu_busy_percent` while none of our runners works, means a game
(or any heavy GPU program) is running. Then aistack
- unloads its idle models that sit on the GPU (a job in flight finishes first:
  it is unloaded at the next check),
- holds new GPU loads: they load on the CPU (`game_mode_hold=cpu`) or get a
  503 with Retry-After (`wait`),
- says so in GET /admin/api/status (`game_mode.active` and `reason`).
It lifts after two checks in a row without the game.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from models.core.errors import Busy
from models.hardware.gpu import GpuProbe, GpuReading

log = logging.getLogger("aistack.game_mode")
CLEAR_CHECKS = 2  # checks in a row without the game before game mode lifts (a loading screen is not an exit)


class GameMode:
    """Owned by the app: `start()` in the server's lifespan, `close()` at shutdown."""

    def __init__(self, probe: GpuProbe, manager: Any, *, enabled: bool, vram_share: float, busy_percent: int,
                 interval: float, hold: str, retry_after: int = 30):
        self.probe = probe
        self.manager = manager
        self.enabled = enabled
        self.vram_share = vram_share
        self.busy_percent = busy_percent
        self.interval = interval
        self.hold = hold
        self.retry_after = retry_after
        self.active = False
        self.reason: str | None = None
        self._clear = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, probe: GpuProbe, manager: Any, settings: Any) -> GameMode:
        return cls(probe, manager, enabled=settings.game_mode, vram_share=settings.game_mode_vram_share,
                   busy_percent=settings.game_mode_gpu_busy_percent, interval=settings.game_mode_interval_sec,
                   hold=settings.game_mode_hold, retry_after=max(5, int(settings.game_mode_interval_sec * 3)))

    # What others read ----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "active": self.active, "reason": self.reason, "hold": self.hold}

    def device_policy(self, engine: str) -> dict[str, Any]:
        """Spec keys for a model about to load: the CPU (or a 503) while a game holds the GPU."""
        if not self.active or engine == "piper":
            return {"device": "auto"}
        if self.hold == "wait":
            raise Busy(f"Game mode: {self.reason} GPU models wait until it exits; retry later, or set "
                       "AISTACK_GAME_MODE_HOLD=cpu to run them on the CPU meanwhile.", retry_after=self.retry_after)
        return {"device": "cpu", "device_reason": f"Game mode: {self.reason} Running on the CPU until it exits."}

    # Switching -----------------------------------------------------------------------
    async def set_enabled(self, enabled: bool) -> dict[str, Any]:
        """The tray's check item and the admin toggle. Turning it off lifts a hold at once."""
        self.enabled = enabled
        if not enabled:
            self._lift()
        else:
            await self.check()
        return self.status()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch_forever(), name="aistack-game-mode")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch_forever(self) -> None:
        while True:
            if self.enabled:
                try:
                    await self.check()
                except Exception:  # a failed check must not stop the watcher
                    log.exception("game mode check failed")
            await asyncio.sleep(self.interval)

    async def check(self) -> None:
        """One look at the GPU: start, keep or lift game mode, and unload what sits on the GPU while it holds."""
        if not self.enabled:
            return
        reading = await asyncio.to_thread(self.probe.read)
        reason = self.game_reason(reading, set(self._own_pids()), self._gpu_busy_by_us())
        if reason is not None:
            self._clear = 0
            if not self.active:
                log.info("game mode on: %s", reason)
            self.active, self.reason = True, reason
            await self._unload_idle_gpu_models()
        elif self.active:
            self._clear += 1
            if self._clear >= CLEAR_CHECKS:
                self._lift()

    def _lift(self) -> None:
        if self.active:
            log.info("game mode off: the GPU is free again")
        self.active, self.reason, self._clear = False, None, 0

    # Deciding ------------------------------------------------------------------------
    def game_reason(self, reading: GpuReading, own_pids: set[int], busy_by_us: bool) -> str | None:
        """Why a game holds the GPU, in words; None when it does not."""
        if not reading.available or not reading.memory_total_bytes:
            return None
        others = [p for p in reading.processes if p.pid not in own_pids]
        other_bytes = sum(p.used_bytes or 0 for p in others)
        if others and any(p.used_bytes is None for p in others):  # Windows does not say per process
            ours = sum(p.used_bytes or 0 for p in reading.processes if p.pid in own_pids)
            other_bytes = max(other_bytes, (reading.memory_used_bytes or 0) - ours)
        share = other_bytes / reading.memory_total_bytes
        names = ", ".join(sorted({p.name for p in others})[:3]) or "another program"
        if share > self.vram_share:
            return f"{names} uses {other_bytes >> 20} MB ({share:.0%}) of the GPU's memory."
        busy = reading.utilization_percent
        if busy is not None and busy >= self.busy_percent and not busy_by_us:
            return f"{names} keeps the GPU {busy}% busy."
        return None

    def _own_pids(self) -> list[int]:
        return [os.getpid(), *self.manager.runner_pids()]

    def _gpu_busy_by_us(self) -> bool:
        for model in self.manager.store.installed():
            status = self.manager.status(model.id)
            if status.get("device") == "cuda" and status.get("busy"):
                return True
        return False

    async def _unload_idle_gpu_models(self) -> None:
        for model in self.manager.store.installed():
            status = self.manager.status(model.id)
            if status.get("loaded") and status.get("device") == "cuda" and not status.get("busy"):
                log.info("game mode: unloading %s from the GPU", model.id)
                await self.manager.unload(model.id)


def attach(manager: Any, game_mode: GameMode) -> Callable[[str], dict[str, Any]]:
    """Give the manager game mode's device policy for every load from now on."""
    manager.device_policy = game_mode.device_policy
    return game_mode.device_policy
