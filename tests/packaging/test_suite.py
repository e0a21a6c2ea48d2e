"""`make test`'s runner (tests/suite.py): how its two parts' exit statuses combine, and the markers that split them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.suite import NO_TESTS, combined


@pytest.mark.parametrize(
    ("timed", "untimed", "expected"),
    [
        (0, 0, 0),
        (1, 0, 1),
        (0, 1, 1),
        (1, 2, 1),  # the first failure
        (0, NO_TESTS, 0),  # `python -m tests.suite tests/runtime/test_queue.py`: no untimed test selected
        (NO_TESTS, 0, 0),
        (NO_TESTS, 1, 1),
        (NO_TESTS, NO_TESTS, NO_TESTS),  # a typo in -k selects nothing anywhere: still a failure
    ],
)
def test_exit_status_is_the_first_failure_and_an_empty_part_is_not_one(timed: int, untimed: int,
                                                                       expected: int) -> None:
    assert combined(timed, untimed) == expected


def test_the_markers_split_the_suite_into_two_parts() -> None:
    """Every test is in exactly one part, and neither part is empty (a lost marker empties one)."""
    def collected(*args: str) -> set[str]:
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly", *args],
                             cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "AISTACK_SKIP_FROZEN": "1"}).stdout  # collecting must not start a build
        return {line for line in out.splitlines() if "::" in line}

    everything, untimed, timed = collected(), collected("-m", "untimed"), collected("-m", "not untimed")
    assert untimed and timed and not untimed & timed and untimed | timed == everything
    assert any("tests/packaging/test_frozen.py" in t for t in untimed) and any("test_queue.py" in t for t in timed)
