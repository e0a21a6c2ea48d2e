"""`make test`'s runner (tests/suite.py): how its two parts' exit statuses combine, and its module list."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.suite import NO_TESTS, UNTIMED, combined


@pytest.mark.parametrize(
    ("timed", "untimed", "expected"),
    [
        (0, 0, 0),
        (1, 0, 1),
        (0, 1, 1),
        (1, 2, 1),  # the first failure
        (0, NO_TESTS, 0),  # `python -m tests.suite tests/test_queue.py`: no untimed test selected
        (NO_TESTS, 0, 0),
        (NO_TESTS, 1, 1),
        (NO_TESTS, NO_TESTS, NO_TESTS),  # a typo in -k selects nothing anywhere: still a failure
    ],
)
def test_exit_status_is_the_first_failure_and_an_empty_part_is_not_one(timed: int, untimed: int,
                                                                       expected: int) -> None:
    assert combined(timed, untimed) == expected


def test_every_untimed_module_exists() -> None:
    """A renamed module would quietly move to the timed part and slow the suite by running one test at a time."""
    tests = Path(__file__).parent
    assert sorted(name for name in UNTIMED if not (tests / f"{name}.py").is_file()) == []
