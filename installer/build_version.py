"""The app version for the build: read from the installed package metadata, never copied here."""

from __future__ import annotations

from importlib import metadata

from packaging.version import Version


def app_version() -> str:
    """The version pyproject.toml gave the installed `aistack` package."""
    try:
        return metadata.version("aistack")
    except metadata.PackageNotFoundError:
        raise SystemExit("aistack is not installed in this Python: run `pip install -e .` first "
                         "(the build takes its version from there)") from None


def four_numbers(version: str) -> tuple[int, int, int, int]:
    """Windows version resources want four numbers: 0.1.0 -> (0, 1, 0, 0); pre-release and local parts are dropped."""
    release = (*Version(version).release, 0, 0, 0, 0)[:4]
    return (release[0], release[1], release[2], release[3])
