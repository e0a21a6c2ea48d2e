"""The app version, from one place: the package metadata that pyproject.toml stamps.

A source tree that was never installed has no metadata; it reads the same
pyproject.toml, so there is no second copy of the number to drift.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path


def _version() -> str:
    try:
        return metadata.version("aistack")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


VERSION = _version()
