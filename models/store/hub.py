"""Talking to Hugging Face: what a file should be, and fetching it in resumable pieces.

`HEAD {endpoint}/{repo}/resolve/{revision}/{path}` says what a file should be.
For an LFS file the hub answers with a redirect to its CDN that carries the
size and sha256 in `X-Linked-Size` and `X-Linked-Etag`; we stop there rather
than follow it (the CDN's own ETag is not the content hash). A small git file
answers, sometimes after a relative redirect, with `Content-Length` and an
`ETag` that is its git blob sha1. `X-Repo-Commit` names the commit, and every
later request asks for that commit, so all files of a model come from one
snapshot even if the branch moves meanwhile.

`HF_ENDPOINT` (read by huggingface_hub) points all of this at a mirror, and
huggingface_hub supplies the login token (`HF_TOKEN` or a saved login) for
gated repos. httpx drops the token on the redirect to the CDN. Every address is
checked by models.store.fetch: HTTPS only, redirects only to the hub's own hosts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from models.core.errors import EngineUnavailable, Malformed
from models.store import fetch as transfer

PROVIDER = "huggingface"
CHUNK = transfer.CHUNK
_MAX_REDIRECTS = 5
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubFile:
    """One file of a repo as the hub describes it, with a download address pinned to a commit."""

    repo: str
    path: str
    url: str
    size: int
    sha256: str | None  # LFS files
    git_sha1: str | None  # small files kept in git
    commit: str | None


def endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT).rstrip("/")


def open_client() -> httpx.Client:
    """An HTTP client with the hub's headers. `identity` so sizes and Range offsets are raw bytes."""
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(library_name="aistack")
    headers["Accept-Encoding"] = "identity"
    return httpx.Client(headers=headers, timeout=httpx.Timeout(30, connect=10))


def resolve_url(repo: str, path: str, revision: str) -> str:
    from huggingface_hub import hf_hub_url

    return str(hf_hub_url(repo, path, revision=revision, endpoint=endpoint()))


def file_info(client: httpx.Client, repo: str, path: str, revision: str) -> HubFile:
    """Size, hash and commit of one file, from a HEAD request on its resolve address."""
    url = resolve_url(repo, path, revision)
    response = _head(client, url, repo)
    raise_for_status(response, repo, path, revision)
    linked_size = response.headers.get("X-Linked-Size")
    size_text = linked_size or (None if response.is_redirect else response.headers.get("Content-Length"))
    etag = _normalize_etag(response.headers.get("X-Linked-Etag") or response.headers.get("ETag"))
    if size_text is None or not size_text.isdigit():
        raise EngineUnavailable(f"Hugging Face did not say how large {path} in {repo} is. Try again later.", provider=PROVIDER)
    commit = response.headers.get("X-Repo-Commit") or None
    return HubFile(
        repo=repo,
        path=path,
        url=resolve_url(repo, path, commit or revision),
        size=int(size_text),
        sha256=etag if etag and _SHA256.match(etag) else None,
        git_sha1=etag if etag and not linked_size and _SHA1.match(etag) else None,
        commit=commit,
    )


def _head(client: httpx.Client, url: str, repo: str) -> httpx.Response:
    """HEAD that follows redirects within the hub (renamed repos, cached small files), not to the CDN."""
    origin = url
    for _ in range(_MAX_REDIRECTS):
        transfer.check_address(url, origin, provider=PROVIDER)
        try:
            response = client.head(url, follow_redirects=False)
        except httpx.TransportError as exc:
            raise unreachable(exc) from None
        if not response.has_redirect_location or "X-Linked-Size" in response.headers:
            return response
        target = urljoin(url, response.headers["Location"])
        if urlsplit(target).netloc != urlsplit(url).netloc:
            return response
        url = target
    raise EngineUnavailable(f"Hugging Face redirected {repo} too many times. Try again later.", provider=PROVIDER)


def unreachable(exc: Exception) -> EngineUnavailable:
    return EngineUnavailable(
        f"Could not reach Hugging Face at {endpoint()} ({type(exc).__name__}). "
        "Check the internet connection (or HF_ENDPOINT) and try again.",
        provider=PROVIDER,
    )


def raise_for_status(response: httpx.Response, repo: str, path: str, revision: str) -> None:
    """Turn the hub's error answers (it names them in `X-Error-Code`) into messages a user can act on."""
    status = response.status_code
    if status < 400:
        return
    code = response.headers.get("X-Error-Code", "")
    message = response.headers.get("X-Error-Message", "")
    if code == "GatedRepo":
        raise Malformed(
            f"'{repo}' on Hugging Face is gated: accept its terms on huggingface.co, set HF_TOKEN to an access "
            "token of that account, and try again.",
            provider=PROVIDER,
        )
    if message == "Invalid credentials in Authorization header":
        raise Malformed("Hugging Face refused the access token (HF_TOKEN or your saved login): renew it, or unset it.",
                        provider=PROVIDER)
    if code == "RepoNotFound" or status in (401, 403):
        raise Malformed(f"Hugging Face has no model repo '{repo}' (or it is private). Check the name.", provider=PROVIDER)
    if code == "RevisionNotFound":
        raise Malformed(f"The Hugging Face repo '{repo}' has no revision '{revision}'.", provider=PROVIDER)
    if code == "EntryNotFound" or status == 404:
        raise Malformed(f"The Hugging Face repo '{repo}' has no file '{path}' at revision '{revision}'. Check the file name.",
                        provider=PROVIDER)
    raise EngineUnavailable(f"Hugging Face answered {status} for {path} in {repo}. Try again later.", provider=PROVIDER)


def fetch(
    client: httpx.Client, remote: HubFile, part: Path, *, on_size: Callable[[int], None], check: Callable[[], None]
) -> None:
    """Append the rest of `remote` to `part` (see models.store.fetch.download)."""
    transfer.download(
        client, remote.url, part, remote.size, label=f"{remote.path} in {remote.repo}", provider=PROVIDER,
        on_size=on_size, check=check, on_error=lambda r: raise_for_status(r, remote.repo, remote.path, remote.commit or ""),
    )


def list_files(client: httpx.Client, repo: str, revision: str) -> dict[str, int]:
    """Every file of a repo at a revision, with its size: the hub's tree API (one page per 1000 files)."""
    url: str | None = f"{endpoint()}/api/models/{repo}/tree/{revision}?recursive=true"
    files: dict[str, int] = {}
    while url:
        transfer.check_address(url, endpoint(), provider=PROVIDER)
        try:
            response = client.get(url, follow_redirects=False)
        except httpx.TransportError as exc:
            raise unreachable(exc) from None
        raise_for_status(response, repo, "", revision)
        for item in response.json():
            if item.get("type") == "file":
                files[str(item["path"])] = int((item.get("lfs") or {}).get("size") or item.get("size") or 0)
        url = response.links.get("next", {}).get("url")
    return files


def _normalize_etag(etag: str | None) -> str | None:
    """`"abc"` -> `abc`. A weak ETag (`W/"..."`) is not a content hash, so it is ignored."""
    if not etag or etag.startswith("W/"):
        return None
    return etag.strip('"').lower()
