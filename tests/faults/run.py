"""Seed each fault of tests/faults.md and run the tests said to catch it: every one must fail.

    .venv/bin/python -m tests.faults.run                 # every fault in tests/faults.md
    .venv/bin/python -m tests.faults.run held-stream     # one fault
    .venv/bin/python -m tests.faults.run --clean held-stream   # the same tests without the fault: all pass

Prints one line per test (`<fault>: FAILED <node id>`) and a last line per fault
saying how many of its tests caught it. Exit status 1 if any listed test passed
with its fault seeded (or failed without it, with --clean).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAULTS_MD = ROOT / "tests" / "faults.md"
LINE = re.compile(r"^- ([a-z0-9-]+): (.+)$")
OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR) (\S+)")


def read_faults(path: Path = FAULTS_MD) -> dict[str, list[str]]:
    faults: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        match = LINE.match(line.strip())
        if match:
            faults.setdefault(match.group(1), []).extend(n.strip() for n in match.group(2).split(",") if n.strip())
    return faults


def run_fault(fault: str, nodes: list[str], *, seeded: bool) -> tuple[list[str], bool]:
    """(result lines, whether every node behaved: failed when seeded, passed when clean)."""
    env = dict(os.environ)
    if seeded:
        env["AISTACK_FAULT"] = fault
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "tests" / "faults"), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *nodes]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    outcomes: dict[str, str] = {}
    for line in done.stdout.splitlines():
        match = OUTCOME.match(line)
        if match:
            outcomes.setdefault(match.group(2), match.group(1))
    label = fault if seeded else f"{fault} (clean)"
    lines = [f"{label}: {outcomes.get(node, 'NOT RUN')} {node}" for node in nodes]
    expected_bad = {"FAILED", "ERROR"} if seeded else {"PASSED"}
    good = [node for node in nodes if outcomes.get(node) in expected_bad]
    lines.append(f"{label}: {len(good)} of {len(nodes)} {'caught it' if seeded else 'passed'}")
    return lines, len(good) == len(nodes)


def main(argv: list[str]) -> int:
    seeded = "--clean" not in argv
    names = [a for a in argv if not a.startswith("--")]
    faults = read_faults()
    ok = True
    for fault in names or list(faults):
        if fault not in faults:
            print(f"{fault}: not in {FAULTS_MD.name}")
            ok = False
            continue
        lines, fine = run_fault(fault, faults[fault], seeded=seeded)
        print("\n".join(lines), flush=True)
        ok = ok and fine
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
