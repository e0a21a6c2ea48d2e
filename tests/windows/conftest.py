"""Fixtures of the Windows lane (tests/windows/lane.py runs these with the Windows Python under Wine)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.windows.support import App, data_dir_with_starter

if sys.platform != "win32":
    collect_ignore_glob = ["test_*.py"]

# Windows user names often hold spaces and letters beyond ASCII, and the data dir sits under them.
ODD_NAME = "Jörg Müller 数据"


@pytest.fixture(scope="session")
def odd_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the starter models, at a path with spaces and non-ASCII letters."""
    return data_dir_with_starter(tmp_path_factory.mktemp("users") / ODD_NAME / "aistack data")


@pytest.fixture(scope="session")
def server(odd_data_dir: Path) -> Iterator[App]:
    """`aistack serve` on that data dir, for the whole session."""
    app = App(odd_data_dir, "serve")
    yield app
    app.stop()
