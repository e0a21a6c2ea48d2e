"""Errors that carry the contract's error kind from where they are raised.

Every layer raises these; the server's one handler turns them into the
`{"error": {"kind", "provider", "message"}}` envelope. Errors cross the runner
process boundary as plain dicts (`to_dict` / `from_dict`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class AistackError(Exception):
    """Base class: an error with a contract kind, an HTTP status and a user-safe message."""

    kind: ClassVar[str] = "unknown"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, provider: str = "aistack", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "provider": self.provider, "message": self.message}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> AistackError:
        cls = ERROR_KINDS.get(str(data.get("kind")), Unknown)
        return cls(str(data.get("message", "")), provider=str(data.get("provider", "aistack")))


class Malformed(AistackError):
    """Bad input: the client should fix the request."""

    kind = "malformed"
    status = 400


class Overflow(AistackError):
    """Input too large for the model or the configured limits."""

    kind = "overflow"
    status = 413


class Cancelled(AistackError):
    """The client went away; nobody reads this answer, it is only logged."""

    kind = "cancelled"
    status = 499


class EngineUnavailable(AistackError):
    """Engine crashed, model failed to load, download failed: retry later."""

    kind = "network"
    status = 503


class Busy(EngineUnavailable):
    """The engine slot is taken. Clients recognise it by `Retry-After`."""

    def __init__(self, message: str, *, retry_after: int = 5, provider: str = "aistack"):
        super().__init__(message, provider=provider, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class Unknown(AistackError):
    """Anything unclassified: a bug."""

    kind = "unknown"
    status = 500


class Forbidden(AistackError):
    """Host or Origin not allowed, or an admin action without the admin token."""

    kind = "forbidden"
    status = 403


class Conflict(AistackError):
    """The action clashes with the model's state."""

    kind = "conflict"
    status = 409


class NotFound(Malformed):
    """An unknown route. The envelope still says `malformed`, with a 404 status."""

    status = 404


class MethodNotAllowed(Malformed):
    status = 405


ERROR_KINDS: dict[str, type[AistackError]] = {
    cls.kind: cls for cls in (Malformed, Overflow, Cancelled, EngineUnavailable, Unknown, Forbidden, Conflict)
}
