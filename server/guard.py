"""Who may call aistack: Host, Origin and fetch metadata, the optional API key, CORS for trusted origins.

The server listens on the loopback by default, where the attackers are web
pages in the user's browser (DNS rebinding, cross-site requests) and other
local programs. Bound to the network on purpose (`AISTACK_HOST`), LAN peers
join them: the Host must then be one of this machine's names or addresses or
`AISTACK_ALLOWED_HOSTS`, and `AISTACK_API_KEY`, when set, is required as
`Authorization: Bearer <key>` on every /v1, admin and metrics route. A valid
admin token (header `X-Aistack-Admin-Token`, or the dashboard's login cookie)
also passes, so the tray and the dashboard keep working with a key set.

Origins in `AISTACK_ALLOWED_ORIGINS` get CORS headers and preflight answers,
exactly those origins (loopback pages pass the guard but get no CORS headers).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
from urllib.parse import urlsplit

from starlette.types import Scope

from models.core.errors import Busy, Forbidden, Malformed, Overflow
from models.core.settings import Settings
from server.admin_token import COOKIE_NAME

log = logging.getLogger("aistack.server")
OVERLOADED = "aistack.overloaded"  # scope key set by server.http_protocol on connections over the limit
MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}
_KEYED_PREFIXES = ("/v1/", "/admin/", "/metrics")
_PREFLIGHT_HEADERS = "authorization, content-type, x-request-id, x-aistack-admin-token"
_EXPOSED_HEADERS = b"x-request-id, retry-after, x-aistack-model, x-aistack-warning, x-audio-duration, x-sample-rate, x-voice"


def host_name(host: str) -> str:
    """The name or address in a Host header, without port or brackets, lower case."""
    name = host.strip().lower()
    if name.startswith("["):
        return name[1 : name.find("]")] if "]" in name else name[1:]
    return name.split(":", 1)[0] if name.count(":") == 1 else name


def is_loopback_host(host: str) -> bool:
    name = host_name(host)
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def lan_mode(settings: Settings) -> bool:
    """Bound to something other than the loopback: other machines can connect."""
    return not is_loopback_host(settings.host)


def security_warnings(settings: Settings) -> list[str]:
    """Plain sentences for /admin/api/status, the tray and the log."""
    if lan_mode(settings) and not settings.api_key:
        return [
            f"aistack is listening on {settings.host}, reachable from other machines, and no API key is set: "
            "anyone on the network can use it. Set AISTACK_API_KEY, or bind to 127.0.0.1."
        ]
    return []


class HeadTooLarge(Overflow):
    status = 431


class Guard:
    """The checks every request passes before any route sees it."""

    def __init__(self, settings: Settings, admin_token: str):
        self.settings = settings
        self.admin_token = admin_token
        self.lan = lan_mode(settings)
        self.api_key = settings.api_key or ""
        self.allowed_origins = {o.strip().rstrip("/").lower() for o in settings.allowed_origins}
        self.allowed_hosts = _own_names(settings) if self.lan else set()

    # Requests ------------------------------------------------------------------------------
    def check(self, scope: Scope, headers: dict[str, str]) -> None:
        if scope.get(OVERLOADED):
            raise Busy(
                f"aistack has {scope[OVERLOADED]} connections open, its limit (AISTACK_HTTP_MAX_CONNECTIONS). "
                "Retry shortly, or reuse connections.",
                retry_after=1,
            )
        if sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ())) > MAX_HEAD_BYTES:
            raise HeadTooLarge(f"The request headers are larger than {MAX_HEAD_BYTES // 1024} KB. Send fewer or shorter headers.")
        self._check_host(headers.get("host", ""))
        origin = headers.get("origin")
        if origin is not None and not self.origin_allowed(origin):
            raise Forbidden(
                f"Origin '{origin[:100]}' may not call aistack from a browser. "
                "Add it to AISTACK_ALLOWED_ORIGINS if you trust it."
            )
        if origin is None and headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
            raise Forbidden(
                "A page on another site may not call aistack (Sec-Fetch-Site: cross-site). "
                "Serve the page from an origin in AISTACK_ALLOWED_ORIGINS."
            )
        if self.api_key and scope.get("method") != "OPTIONS" and str(scope.get("path", "")).startswith(_KEYED_PREFIXES):
            self._check_key(headers)

    def _check_host(self, host: str) -> None:
        if not host or is_loopback_host(host):
            return
        if not self.lan:
            raise Forbidden(
                f"Host '{host[:100]}' is not allowed: aistack answers only to localhost. "
                "Use http://127.0.0.1 or set AISTACK_HOST to serve the network."
            )
        if host_name(host) not in self.allowed_hosts:
            raise Forbidden(
                f"Host '{host[:100]}' is not a name of this server. "
                "Add the name clients use to AISTACK_ALLOWED_HOSTS."
            )

    def _check_key(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if _same(bearer, self.api_key) or any(_same(given, self.admin_token) for given in _admin_credentials(headers, bearer)):
            return
        raise Forbidden(
            "This aistack needs an API key: send Authorization: Bearer <key> (the AISTACK_API_KEY of the server)."
            if not bearer else "The API key is wrong: send Authorization: Bearer <key> with the server's AISTACK_API_KEY."
        )

    def origin_allowed(self, origin: str) -> bool:
        value = origin.strip().rstrip("/").lower()
        if value in self.allowed_origins or "*" in self.allowed_origins:
            return True
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and is_loopback_host(parts.netloc)

    # CORS ------------------------------------------------------------------------------------
    def _cors_origin(self, headers: dict[str, str]) -> str | None:
        origin = headers.get("origin", "").strip()
        value = origin.rstrip("/").lower()
        if origin and (value in self.allowed_origins or "*" in self.allowed_origins):
            return origin
        return None

    def cors_headers(self, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
        """Headers that let a trusted origin's page read the answer (none for anyone else)."""
        origin = self._cors_origin(headers)
        if origin is None:
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1", "replace")),
            (b"access-control-expose-headers", _EXPOSED_HEADERS),
            (b"vary", b"Origin"),
        ]

    def preflight(self, scope: Scope, headers: dict[str, str]) -> list[tuple[bytes, bytes]] | None:
        """The 204 answer's headers if this is a CORS preflight from a trusted origin, else None."""
        if scope.get("method") != "OPTIONS" or "access-control-request-method" not in headers:
            return None
        if self._cors_origin(headers) is None:
            raise Forbidden(
                f"Origin '{headers.get('origin', '')[:100]}' may not call aistack from a browser. "
                "Add it to AISTACK_ALLOWED_ORIGINS if you trust it."
            )
        method = headers["access-control-request-method"].strip().upper()
        if method not in ("GET", "POST", "DELETE", "HEAD"):
            raise Malformed(f"Preflight asks for method '{method[:20]}', which aistack does not serve.")
        return [  # the edge adds the CORS headers themselves to every answer
            (b"access-control-allow-methods", b"GET, POST, DELETE, HEAD"),
            (b"access-control-allow-headers", _PREFLIGHT_HEADERS.encode()),
            (b"access-control-max-age", b"600"),
        ]


def _same(given: str, expected: str) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _admin_credentials(headers: dict[str, str], bearer: str) -> list[str]:
    from http.cookies import CookieError, SimpleCookie

    found = [bearer, headers.get("x-aistack-admin-token", "").strip()]
    if "cookie" in headers:
        try:
            jar = SimpleCookie(headers["cookie"])
        except CookieError:
            return found
        if COOKIE_NAME in jar:
            found.append(jar[COOKIE_NAME].value)
    return found


def _own_names(settings: Settings) -> set[str]:
    """The names a LAN client may put in Host: the bound address, this machine's names and addresses, the setting."""
    names = {host_name(h) for h in settings.allowed_hosts}
    bound = host_name(settings.host)
    if bound not in ("0.0.0.0", "::", ""):
        names.add(bound)
        return names
    hostname = socket.gethostname().lower()
    names |= {hostname, hostname.split(".")[0], socket.getfqdn().lower()}
    try:
        import psutil

        for addresses in psutil.net_if_addrs().values():
            names |= {a.address.split("%")[0].lower() for a in addresses if a.family in (socket.AF_INET, socket.AF_INET6)}
    except Exception as exc:  # noqa: BLE001 - a machine whose interfaces cannot be listed still serves its names
        log.warning("could not list network addresses for the Host check: %s", exc)
    return names
