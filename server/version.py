"""The app version, read from the installed package metadata (falls back for a source checkout)."""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("aistack")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.1.0"
