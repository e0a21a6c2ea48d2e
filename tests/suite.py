"""The whole suite as `make test` runs it, in two parts; plain `pytest` runs the same tests in one process.

    .venv/bin/python -m tests.suite [pytest args...]

1. The timed part, one test at a time with nothing else on the machine but the
   frozen app's build at idle priority: every test that states a wall-time bound
   or a race (streams start early, cancel frees the model, keep-alive expiry,
   queueing, connection timeouts, the tray's exit).
2. The untimed part (modules marked `pytestmark = pytest.mark.untimed`: formats,
   transcripts, fuzzers, downloads, the CLI, the dashboard in Chromium, the frozen
   app), which make no claim about wall time, on two pytest-xdist workers, one test file per worker at
   a time. The frozen tests use the build from part 1 (AISTACK_FROZEN_APP). Their
   servers run llama.cpp on one thread (AISTACK_LLM_THREADS=1): with a thread per
   core, llama.cpp's threads wait for each other at every step, and a busy second
   core made chat answers 5 to 10 times slower.

Both parts run even when the first fails; the exit status is the first non-zero.
Arguments that select tests of one part only (`tests/desktop/test_cli.py`, `-k queue`)
leave the other part with nothing to run, which is not a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

NO_TESTS = 5  # pytest's exit status when the arguments selected nothing
PYTEST = [sys.executable, "-m", "pytest", "-q", "--reruns", "1"]


def main(args: list[str]) -> int:
    from tests.support import frozen_build

    started = time.monotonic()
    frozen_build.start()  # idle priority, beside the timed part (a no-op with AISTACK_SKIP_FROZEN or AISTACK_FROZEN_APP)
    try:
        print("== timed part: one test at a time", flush=True)
        timed = subprocess.run([*PYTEST, "-m", "not untimed", *args]).returncode
        timed_sec = time.monotonic() - started

        env = {**os.environ, "AISTACK_LLM_THREADS": "1"}
        if frozen_build.wanted():
            try:
                env["AISTACK_FROZEN_APP"] = str(frozen_build.app_dir())
            except AssertionError as exc:  # test_frozen builds again and fails with PyInstaller's output
                print(f"the frozen build failed; test_frozen will build again:\n{exc}", flush=True)
        print("== untimed part: two workers", flush=True)
        untimed = subprocess.run([*PYTEST, "-m", "untimed", "-n", "2", "--dist", "loadfile", *args], env=env).returncode
    finally:
        frozen_build.stop()  # Ctrl-C during the timed part: the build does not outlive the suite
    total = time.monotonic() - started
    print(f"== whole suite {total:.0f} s (timed part {timed_sec:.0f} s, untimed {total - timed_sec:.0f} s); "
          f"exit {timed} and {untimed}", flush=True)
    return combined(timed, untimed)


def combined(*codes: int) -> int:
    """The first failure; pytest's 5 (no tests collected) counts only when no part ran anything."""
    ran = [code for code in codes if code != NO_TESTS]
    return next((code for code in ran if code), 0) if ran else NO_TESTS


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
