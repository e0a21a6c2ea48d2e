"""One place that turns every failure into the contract's error envelope."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.core.errors import AistackError, Malformed, MethodNotAllowed, NotFound, Unknown

log = logging.getLogger("aistack.server")
_SURROGATE = re.compile("[\ud800-\udfff]")


def readable(text: str) -> str:
    """`text` with lone UTF-16 surrogates (from JSON escapes like \\ud800) as U+FFFD, so it can be sent as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


def envelope_bytes(error: AistackError) -> bytes:
    """The envelope's JSON body, encodable whatever the message repeats from the request."""
    body = {"error": {key: readable(str(value)) for key, value in error.to_dict().items()}}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def envelope(error: AistackError) -> Response:
    return Response(envelope_bytes(error), status_code=error.status, headers=error.headers, media_type="application/json")


def unexpected(exc: BaseException) -> AistackError:
    """A bug: logged with its traceback by the caller; the client gets no internals."""
    return Unknown("aistack hit an internal error. It has been logged; please report it with the X-Request-ID.")


def describe_validation(errors: list[Any]) -> str:
    """Name the offending fields in words a user can act on."""
    parts = []
    for err in errors[:5]:
        loc = _field_path(err.get("loc", ()))
        field = ".".join(loc) or "body"
        msg = str(err.get("msg", "is invalid"))
        if err.get("type") == "missing":
            parts.append(f"'{field}' is required")
        elif err.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
        elif err.get("type") == "model_attributes_type" or (field == "body" and "dict" in msg):
            parts.append("the body must be a JSON object")
        else:
            parts.append(f"'{field}': {msg}")
    return "Invalid request: " + "; ".join(parts) + "."


def _field_path(loc: Any) -> list[str]:
    """The field as the client wrote it: without pydantic's union tags and validator names."""
    path: list[str] = []
    for part in (str(p) for p in loc):
        if part in ("body", "query", "path", "header", "form") or "[" in part or (path and path[-1] == part):
            continue  # a tagged union repeats its tag ('json_schema.json_schema'); validators show as 'function-...[...]'
        path.append(part)
    return path


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AistackError)
    async def _aistack(request: Request, exc: AistackError) -> Response:
        return envelope(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return envelope(Malformed(describe_validation(list(exc.errors()))))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        path = request.url.path[:200]
        if isinstance(exc.__cause__, AistackError):  # e.g. the body limit tripped while FastAPI parsed the body
            return envelope(exc.__cause__)
        if exc.status_code == 404:
            error: AistackError = NotFound(f"There is no {request.method} {path} here. See /docs for the API.")
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"{request.method} is not allowed on {path}. See /docs for the methods it takes.")
        elif exc.status_code == 400:
            error = Malformed(f"Invalid request: {exc.detail}")
        elif exc.status_code == 413:
            from models.core.errors import Overflow

            error = Overflow(str(exc.detail))
        else:
            error = Unknown(str(exc.detail))
            error.status = exc.status_code  # type: ignore[misc]
        return envelope(error)
