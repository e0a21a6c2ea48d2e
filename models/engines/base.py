"""What an engine is, as seen from inside its runner process.

An engine loads one model and runs jobs on it, one at a time. Jobs, partial and
final results are the plain data `models.runtime.protocol` types per
capability, because they cross a process boundary. An engine never knows
about HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from models.core.errors import Cancelled
from models.runtime.protocol import JobSpec

Event = dict[str, Any]


class JobContext:
    """Handed to `Engine.run`: say the input is accepted, send partial results, and ask whether to stop."""

    def __init__(
        self, emit: Callable[[Event], None], is_cancelled: Callable[[], bool], accept: Callable[[Event], None]
    ):
        self._emit = emit
        self._is_cancelled = is_cancelled
        self._accept = accept
        self._accepted = False

    def accept(self, **info: Any) -> None:
        """The input is read and checked: from here on a failure can no longer be the request's own fault.

        A streamed answer starts only now, so bad input still gets its error
        envelope. Later calls do nothing. `info` reaches the route (e.g. the sample rate).
        """
        if not self._accepted:
            self._accepted = True
            self._accept(info)

    def emit(self, data: Event) -> None:
        """Send one partial result (a segment, a sentence of audio, a token) to the server now."""
        self.accept()
        self._emit(data)

    @property
    def cancelled(self) -> bool:
        return self._is_cancelled()

    def check(self) -> None:
        """Raise `Cancelled` if the client went away. Call between segments, sentences, tokens."""
        if self._is_cancelled():
            raise Cancelled("The client closed the connection.")


class Engine(Protocol):
    """An engine class is built as `Engine(spec)` inside the runner; building it loads the model.

    `spec` is `InstalledModel.to_spec()` plus `"settings"` (a dict of the app settings
    an engine may need) and `"device"` (`"auto"`, `"cpu"` or `"cuda"`).
    """

    def __init__(self, spec: dict[str, Any]) -> None: ...

    def info(self) -> dict[str, Any]:
        """Where and how the model runs, e.g. `{"device": "cpu", "compute_type": "int8"}`."""
        ...

    def run(self, job: JobSpec, ctx: JobContext) -> Any:
        """Run one job (its capability's job type); `ctx.emit` partial results; return the final result.

        Call `ctx.accept()` once the input is checked. Raise `models.core.errors`
        classes for failures the user can act on (with `provider` set to the
        engine's name); anything else becomes a 500 `unknown`.
        """
        ...

    def close(self) -> None:
        """Free what `__init__` took. The process exits right after, so this may do nothing."""
        ...
