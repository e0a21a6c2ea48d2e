"""Fetching one file into a part file: HTTPS only, redirects only to trusted hosts, resumable.

Hugging Face answers a download with a redirect to its CDN; PyPI serves wheels
from files.pythonhosted.org. Those hosts, and the one a download started at
(a mirror set in HF_ENDPOINT), are the only places a redirect may lead:
`TRUSTED_HOSTS` is the one allowlist. Plain HTTP is refused, except between
loopback addresses (a stand-in server on this PC, as the tests use).

A full disk stops the download with `DiskFull` and keeps the part, so it
continues once there is room.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx

from models.core.errors import Conflict, EngineUnavailable

CHUNK = 1 << 20
MAX_REDIRECTS = 5
# Hosts (and their subdomains) a download may be redirected to: the hub, its LFS/CDN/Xet hosts, PyPI.
TRUSTED_HOSTS = ("huggingface.co", "hf.co", "pypi.org", "files.pythonhosted.org", "pythonhosted.org")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DiskFull(Conflict):
    """The disk filled up mid-download; the part is kept and the download can continue later."""


class Refused(EngineUnavailable):
    """An address aistack will not download from (plain HTTP, or a host outside the allowlist)."""


def check_address(url: str, origin: str, *, provider: str) -> None:
    """Raise `Refused` unless `url` may be fetched on the way from `origin`."""
    target, start = urlsplit(url), urlsplit(origin)
    host, start_host = (target.hostname or "").lower(), (start.hostname or "").lower()
    if host in _LOOPBACK and start_host in _LOOPBACK and target.scheme in ("http", "https"):
        return  # a stand-in on this PC
    if target.scheme != "https":
        raise Refused(f"Refused to download from {url[:120]}: aistack downloads over HTTPS only.", provider=provider)
    if host == start_host or any(host == h or host.endswith("." + h) for h in TRUSTED_HOSTS):
        return
    raise Refused(
        f"Refused a redirect to {host}: aistack downloads only from Hugging Face and PyPI hosts "
        f"(and the address it started at, {start_host}).",
        provider=provider,
    )


def open_stream(client: httpx.Client, method: str, url: str, headers: dict[str, str], *, provider: str) -> httpx.Response:
    """Send a request and follow redirects by hand, each one checked. The caller closes the response.

    The login token (`Authorization`) goes only to the host the request started at, never to a CDN.
    """
    origin = url
    check_address(url, origin, provider=provider)
    for _ in range(MAX_REDIRECTS + 1):
        request = client.build_request(method, url, headers=headers)
        if urlsplit(url).netloc != urlsplit(origin).netloc:
            request.headers.pop("Authorization", None)
        response = client.send(request, stream=True, follow_redirects=False)
        if not response.has_redirect_location:
            return response
        response.close()
        url = urljoin(url, response.headers["Location"])
        check_address(url, origin, provider=provider)
    raise EngineUnavailable(f"{urlsplit(origin).hostname} redirected too many times. Try again later.", provider=provider)


def download(
    client: httpx.Client,
    url: str,
    part: Path,
    size: int,
    *,
    label: str,
    provider: str,
    on_size: Callable[[int], None],
    check: Callable[[], None],
    on_error: Callable[[httpx.Response], None],
) -> None:
    """Append the rest of the file at `url` to `part`, asking only for the missing bytes.

    A server that ignores the Range header answers 200 with the whole file; then
    the part is rewritten from the start. Transport errors (a dropped
    connection) propagate as httpx errors so the caller can resume; `check`
    raises to stop; `on_error` turns an error status into a message.
    """
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    response = open_stream(client, "GET", url, headers, provider=provider)
    try:
        if response.status_code == 416:  # nothing left past `have`: the file is not what the source said
            part.unlink(missing_ok=True)
            raise EngineUnavailable(f"{label} changed while downloading. Run the install again.", provider=provider)
        on_error(response)
        resumed = have > 0 and response.status_code == 206 and _range_start(response) == have
        done = have if resumed else 0
        with part.open("ab" if resumed else "wb", buffering=0) as out:
            on_size(done)
            for chunk in response.iter_raw():  # as it arrives: a dropped connection loses nothing received
                check()
                done += len(chunk)
                if done > size:
                    break
                write(out, chunk, label)
                on_size(done)
    finally:
        response.close()
    if done > size:
        part.unlink(missing_ok=True)
        raise EngineUnavailable(f"{label} is larger than its source said. Run the install again.", provider=provider)


def write(out: BinaryIO, chunk: bytes, label: str) -> None:
    """Write a block; a full disk becomes `DiskFull` (the part stays for later)."""
    try:
        out.write(chunk)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise DiskFull(
                f"The disk is full: {label} stopped part-way. What was downloaded is kept; free some space "
                "and install again (or restart aistack) to continue where it stopped."
            ) from None
        raise


def _range_start(response: httpx.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None
