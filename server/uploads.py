"""Multipart uploads streamed straight to a temp file, for audio and video of up to gigabytes.

Starlette's form parser spools files through memory and its own temporary
files; here the file part goes chunk by chunk into one `NamedTemporaryFile` in
the system temp dir that this module creates and the caller removes
(`Upload.remove`, on every path: success, error, disconnect). The runner then
reads that path, so the upload is never held whole in memory or copied twice.
Ordinary fields are small and kept as text; the body-size limit itself is the
edge middleware's (AISTACK_MAX_UPLOAD_MB).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from typing import IO, Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from models.core.errors import Cancelled, Malformed

log = logging.getLogger("aistack.server")
TEMP_PREFIX = "aistack-upload-"
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 64
_SUFFIX_RE = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
_HOW = "Send multipart/form-data with the audio in a field named 'file' (curl -F file=@clip.mp3)."


@dataclass
class Upload:
    """The uploaded file (on disk) and the other form fields (every value, in order)."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    path: str | None = None
    filename: str = ""
    size: int = 0

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def remove(self) -> None:
        """Delete the temp file; safe to call more than once."""
        path, self.path = self.path, None
        if path:
            _unlink(path, tries_left=5)


def _unlink(path: str, tries_left: int) -> None:
    """Remove a file; on Windows a runner still reading a cancelled job's file holds it, so try again later."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if tries_left <= 0:
            log.warning("could not remove upload temp file %s: %s", path, exc)
            return
        timer = threading.Timer(2.0, _unlink, args=(path, tries_left - 1))
        timer.daemon = True
        timer.start()


class _Parts:
    """python-multipart callbacks: the file part goes to disk as it arrives, fields to memory."""

    def __init__(self, upload: Upload, file_field: str):
        self.upload = upload
        self.file_field = file_field
        self.out: IO[bytes] | None = None
        self.file_done = False
        self.ended = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_name = b""
        self._header_value = b""
        self._name = ""
        self._is_file = False
        self._data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data, "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end, "on_headers_finished": self.on_headers_finished, "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._headers, self._name, self._is_file, self._data = [], "", False, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((self._header_name.lower(), self._header_value))
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        disposition = next((v for k, v in self._headers if k == b"content-disposition"), b"")
        _, options = parse_options_header(disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self._name != self.file_field:
            if sum(len(v) for v in self.upload.fields.values()) >= MAX_FIELDS:
                raise Malformed(f"The form has too many fields (at most {MAX_FIELDS}).")
            return
        if self.out is not None or self.file_done:
            raise Malformed(f"Send one file per request: the form has more than one '{self.file_field}' field.")
        self._is_file = True
        self.upload.filename = (filename or b"").decode("utf-8", "replace")[:255]
        suffix = os.path.splitext(self.upload.filename)[1]
        self.out = tempfile.NamedTemporaryFile(
            prefix=TEMP_PREFIX, suffix=suffix if _SUFFIX_RE.match(suffix) else "", delete=False
        )
        self.upload.path = self.out.name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file and self.out is not None:
            self.out.write(data[start:end])
            self.upload.size += end - start
            return
        if len(self._data) + (end - start) > MAX_FIELD_BYTES:
            raise Malformed(f"Form field '{self._name[:40]}' is longer than {MAX_FIELD_BYTES // 1024} KB.")
        self._data.extend(data[start:end])

    def on_part_end(self) -> None:
        if self._is_file and self.out is not None:
            self.out.close()
            self.out = None
            self.file_done = True
        elif self._name:
            self.upload.fields.setdefault(self._name, []).append(self._data.decode("utf-8", "replace"))

    def on_end(self) -> None:
        self.ended = True


async def receive_upload(request: Request, file_field: str = "file") -> Upload:
    """Read the whole multipart body, the file part into a temp file. The caller must `remove()` it."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise Malformed(f"The body is not multipart/form-data. {_HOW}")
    upload = Upload()
    parts = _Parts(upload, file_field)
    parser = MultipartParser(boundary, parts.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if not parts.ended:
            raise Malformed(f"The multipart body ended before its closing boundary: the upload is incomplete. {_HOW}")
        if not parts.file_done:
            raise Malformed(f"'{file_field}' is required: the form has no file in it. {_HOW}")
    except BaseException as exc:
        if parts.out is not None:
            parts.out.close()  # before removing: Windows cannot delete an open file
        upload.remove()
        if isinstance(exc, ClientDisconnect):
            raise Cancelled("The client closed the connection during the upload.") from None
        if isinstance(exc, FormParserError):
            raise Malformed(f"The multipart body is malformed. {_HOW}") from None
        raise
    return upload
