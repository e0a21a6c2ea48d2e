"""A stand-in for Hugging Face on 127.0.0.1, speaking the protocol aistack's downloader uses.

It answers what the real hub answers (checked against huggingface_hub's own
client: `X-Linked-Etag`, `X-Linked-Size`, `X-Repo-Commit`, `X-Error-Code`):

- `HEAD|GET /{owner}/{name}/resolve/{revision}/{path}`
  - an LFS file: 302 to the CDN (another host name: `localhost`), with the size and
    sha256 in `X-Linked-Size` / `X-Linked-Etag` and the pointer file's git id as `ETag`;
  - a small file: 307 to a relative `/api/resolve-cache/...` address, which answers
    200 with `Content-Length` and the git blob sha1 as `ETag`;
  - errors: unknown repo 401 `RepoNotFound`, unknown revision 404 `RevisionNotFound`,
    unknown file 404 `EntryNotFound`.
- the CDN and resolve-cache answers honour `Range: bytes=N-` with 206.

- `GET /api/models/{owner}/{name}/tree/{revision}`: the repo's files with sizes (add-hf's quant list).
- a stand-in PyPI JSON API: `GET /pypi/{package}/json` lists the release of each wheel added with
  `add_wheel`, served from `/packages/{file}` on the CDN host (point AISTACK_PYPI_URL at `.pypi_url`).

Faults a test can arm: `drop_after[path] = n` (next download of that file sends n bytes,
then closes the socket), `stall_after[path] = n` (sends n bytes, then hangs until the
hub stops), `corrupt.add(path)` (one byte flipped on the wire, always), `corrupt_once.add(path)`
(flipped on the next download only), `foreign.add(path)` (the resolve address redirects to
a host outside the hub's), `throttle` (seconds of sleep per MiB). A file's `size` may be set
larger than its content to announce a file that would not fit on the disk. `downloads`
records each content request as (path, Range).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

CHUNK = 1 << 20


@dataclass
class FakeFile:
    path: str
    source: Path
    lfs: bool
    size: int = 0
    sha256: str = ""
    git_sha1: str = ""

    def __post_init__(self) -> None:
        data = hashlib.sha256()
        blob = hashlib.sha1(f"blob {self.source.stat().st_size}\0".encode())
        with self.source.open("rb") as fh:
            while block := fh.read(4 << 20):
                data.update(block)
                blob.update(block)
        self.size, self.sha256, self.git_sha1 = self.source.stat().st_size, data.hexdigest(), blob.hexdigest()

    @property
    def pointer_git_sha1(self) -> str:
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n".encode()
        return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()


@dataclass
class FakeRepo:
    name: str
    revisions: tuple[str, ...] = ("main",)
    files: dict[str, FakeFile] = field(default_factory=dict)

    @property
    def commit(self) -> str:
        return hashlib.sha1(self.name.encode()).hexdigest()


class FakeHub:
    """Start with `FakeHub()`, add repos and files, point HF_ENDPOINT at `.url`, `close()` at the end."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.drop_after: dict[str, int] = {}
        self.stall_after: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.corrupt_once: set[str] = set()
        self.foreign: set[str] = set()
        self.wheels: dict[str, tuple[str, str, FakeFile]] = {}  # filename -> (package, version, file)
        self.throttle = 0.0
        self.downloads: list[tuple[str, str | None]] = []
        self.resolved: list[str] = []  # revisions asked for on GET/HEAD /resolve
        self._stop = threading.Event()
        self.server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.cdn = f"http://localhost:{self.port}"  # another host, as the real CDN is
        self.pypi_url = f"{self.url}/pypi"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def add_file(self, repo: str, path: str, source: Path, *, lfs: bool = True, revisions: tuple[str, ...] = ("main",)) -> FakeFile:
        fake = FakeFile(path, source, lfs)
        self.repos.setdefault(repo, FakeRepo(repo, revisions)).files[path] = fake
        return fake

    def add_wheel(self, package: str, version: str, wheel: Path) -> FakeFile:
        fake = FakeFile(f"packages/{wheel.name}", wheel, True)
        self.wheels[wheel.name] = (package, version, fake)
        return fake

    def reset_faults(self) -> None:
        self.drop_after.clear()
        self.stall_after.clear()
        self.corrupt.clear()
        self.corrupt_once.clear()
        self.foreign.clear()
        self.throttle = 0.0
        self.downloads.clear()
        self.resolved.clear()

    def ranges(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.downloads if p == path]

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    # Request handling ----------------------------------------------------------------------
    def handle(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        url = urlsplit(req.path)
        path = unquote(url.path)
        if m := re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path):
            return self._resolve(req, m.group(1), m.group(2), m.group(3))
        if m := re.match(r"^/api/resolve-cache/models/([^/]+/[^/]+)/([0-9a-f]{40})/(.+)$", path):
            fake = self.repos[m.group(1)].files[m.group(3)]
            return self._content(req, fake, head, {"ETag": f'"{fake.git_sha1}"', "X-Repo-Commit": m.group(2)})
        if m := re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)$", path):
            return self._tree(req, m.group(1))
        if m := re.match(r"^/pypi/([^/]+)/json$", path):
            return self._pypi(req, m.group(1))
        if m := re.match(r"^/packages/([^/]+)$", path):
            return self._content(req, self.wheels[m.group(1)][2], head, {})
        if re.match(r"^/repos/[0-9a-f]{2}/([0-9a-f]{64})$", path):
            owner, name, file_path = unquote(url.query.partition("file=")[2]).split("/", 2)
            fake = self.repos[f"{owner}/{name}"].files[file_path]
            return self._content(req, fake, head, {"ETag": '"5d41402abc4b2a76b9719d911017c592-7"'})
        _send(req, 404, {"X-Error-Code": "EntryNotFound"})

    def _resolve(self, req: BaseHTTPRequestHandler, repo_name: str, revision: str, path: str) -> None:
        repo = self.repos.get(repo_name)
        if repo is None:
            return _send(req, 401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        if revision not in repo.revisions and revision != repo.commit:
            return _send(req, 404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
        fake = repo.files.get(path)
        if fake is None:
            return _send(req, 404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
        self.resolved.append(revision)
        if fake.path in self.foreign:
            return _send(req, 302, {"Location": f"https://downloads.example.net/{quote(path)}", "X-Repo-Commit": repo.commit,
                                    "X-Linked-Etag": f'"{fake.sha256}"', "X-Linked-Size": str(fake.size)})
        if fake.lfs:
            return _send(req, 302, {
                "Location": f"{self.cdn}/repos/{fake.sha256[:2]}/{fake.sha256}?file={quote(repo.name + '/' + path)}",
                "X-Repo-Commit": repo.commit,
                "X-Linked-Etag": f'"{fake.sha256}"',
                "X-Linked-Size": str(fake.size),
                "ETag": f'"{fake.pointer_git_sha1}"',
            })
        cached = f"/api/resolve-cache/models/{repo.name}/{repo.commit}/{quote(path)}"
        _send(req, 307, {"Location": cached, "X-Repo-Commit": repo.commit})

    def _tree(self, req: BaseHTTPRequestHandler, repo_name: str) -> None:
        repo = self.repos.get(repo_name)
        if repo is None:
            return _send(req, 401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        items = [{"type": "file", "path": f.path, "size": f.size, **({"lfs": {"oid": f.sha256, "size": f.size}} if f.lfs else {})}
                 for f in repo.files.values()]
        _send_json(req, items)

    def _pypi(self, req: BaseHTTPRequestHandler, package: str) -> None:
        releases: dict[str, list[dict[str, object]]] = {}
        for name, (pkg, version, fake) in self.wheels.items():
            if pkg == package:
                releases.setdefault(version, []).append({
                    "packagetype": "bdist_wheel", "filename": name, "url": f"{self.cdn}/packages/{name}",
                    "size": fake.size, "digests": {"sha256": fake.sha256}})
        if not releases:
            return _send(req, 404, {})
        _send_json(req, {"info": {"name": package}, "releases": releases})

    def _content(self, req: BaseHTTPRequestHandler, fake: FakeFile, head: bool, headers: dict[str, str]) -> None:
        rng = req.headers.get("Range")
        start = 0
        if rng and (m := re.match(r"^bytes=(\d+)-$", rng)):
            start = int(m.group(1))
            if start >= fake.size:
                return _send(req, 416, {"Content-Range": f"bytes */{fake.size}"})
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(fake.size - start)}
        if start:
            headers["Content-Range"] = f"bytes {start}-{fake.size - 1}/{fake.size}"
        _send(req, 206 if start else 200, headers, end=False)
        if head:
            return
        self.downloads.append((fake.path, rng))
        self._stream(req, fake, start)

    def _stream(self, req: BaseHTTPRequestHandler, fake: FakeFile, start: int) -> None:
        drop = self.drop_after.pop(fake.path, None)
        stall = self.stall_after.pop(fake.path, None)
        limit = drop if drop is not None else stall
        once = fake.path in self.corrupt_once
        self.corrupt_once.discard(fake.path)
        flip = fake.source.stat().st_size // 2 if fake.path in self.corrupt or once else -1
        sent, offset = 0, start
        with fake.source.open("rb") as fh:
            fh.seek(start)
            while block := fh.read(CHUNK if limit is None else min(CHUNK, limit - sent)):
                if offset <= flip < offset + len(block):  # `offset` = where this block sits in the file
                    at = flip - offset
                    block = block[:at] + bytes([block[at] ^ 0xFF]) + block[at + 1:]
                req.wfile.write(block)
                sent, offset = sent + len(block), offset + len(block)
                if self.throttle:
                    time.sleep(self.throttle)
                if limit is not None and sent >= limit:
                    break
        req.wfile.flush()
        if stall is not None:
            self._stop.wait(120)
        if limit is not None:
            req.close_connection = True
            req.connection.close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-file (the point of several tests) is not an error worth printing."""


def _send(req: BaseHTTPRequestHandler, status: int, headers: dict[str, str], *, end: bool = True) -> None:
    req.send_response(status)
    for name, value in headers.items():
        req.send_header(name, value)
    if end and "Content-Length" not in headers:
        req.send_header("Content-Length", "0")
    req.end_headers()


def _send_json(req: BaseHTTPRequestHandler, data: object) -> None:
    body = json.dumps(data).encode()
    _send(req, 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, end=False)
    req.wfile.write(body)


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            hub.handle(self, head=True)

        def do_GET(self) -> None:
            hub.handle(self, head=False)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
