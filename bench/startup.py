"""Idle server start-up, from source and frozen: process start to `GET /health` 200, idle memory, folder size.

    .venv/bin/python bench/startup.py [--runs 5] [--app dist/aistack]

Starts `aistack serve` (source: `python -m app`; frozen: the onedir's `aistack-cli`)
on a free port with the starter data dir, polls /health every 5 ms, then reads the
resident memory of the server process (no model is loaded, so it has no runner
children). Targets: source start under 1.5 s, frozen start under 3 s, RSS under 150 MB.
The frozen app is `--app` (default dist/aistack from `make dist`, else the frozen
test's build in .cache/frozen/dist/aistack); without one, only the source is measured.
A bare `python -c pass` start is printed beside them as the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import DEFAULT_DATA, free_port  # noqa: E402

TARGET_START_S = 1.5
TARGET_FROZEN_START_S = 3.0
TARGET_RSS_MB = 150
FROZEN_CANDIDATES = (ROOT / "dist" / "aistack", ROOT / ".cache" / "frozen" / "dist" / "aistack")


def one_start(data_dir: Path, command: list[str]) -> tuple[float, float]:
    port = free_port()
    env = {**os.environ, "AISTACK_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    proc = subprocess.Popen([*command, "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=0.5) as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit(f"server exited with {proc.returncode}")
                time.sleep(0.005)
        elapsed = time.perf_counter() - started
        time.sleep(0.5)  # let import-time garbage settle, as an idle server would
        rss_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
        return elapsed, rss_mb
    finally:
        proc.terminate()
        proc.wait(10)


def bare_python() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def measure(data_dir: Path, command: list[str], runs: int) -> tuple[list[float], list[float]]:
    one_start(data_dir, command)  # warm the OS file cache, as a second launch would be
    results = [one_start(data_dir, command) for _ in range(runs)]
    return [r[0] for r in results], [r[1] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("AISTACK_TEST_DATA_DIR") or DEFAULT_DATA))
    parser.add_argument("--app", type=Path, default=next((p for p in FROZEN_CANDIDATES if p.is_dir()), None),
                        help="the frozen onedir (dist/aistack)")
    args = parser.parse_args()
    exe = ".exe" if sys.platform == "win32" else ""
    starts, rss = measure(args.data_dir, [sys.executable, "-m", "app"], args.runs)
    frozen_starts: list[float] = []
    frozen_rss: list[float] = []
    if args.app is not None:
        frozen_starts, frozen_rss = measure(args.data_dir, [str(args.app / f"aistack-cli{exe}")], args.runs)
    floor = statistics.median(bare_python() for _ in range(3))
    print(f"{'measure':36} {'median':>9} {'max':>9} {'target':>9}")
    print(f"{'source: start to /health 200 (s)':36} {statistics.median(starts):9.3f} {max(starts):9.3f} {TARGET_START_S:9.3f}")
    print(f"{'source: idle RSS (MB)':36} {statistics.median(rss):9.1f} {max(rss):9.1f} {TARGET_RSS_MB:9.1f}")
    ok = max(starts) < TARGET_START_S and max(rss) < TARGET_RSS_MB
    if args.app is not None:
        print(f"{'frozen: start to /health 200 (s)':36} {statistics.median(frozen_starts):9.3f} {max(frozen_starts):9.3f} "
              f"{TARGET_FROZEN_START_S:9.3f}")
        print(f"{'frozen: idle RSS (MB)':36} {statistics.median(frozen_rss):9.1f} {max(frozen_rss):9.1f}")
        print(f"{'frozen: folder size (MiB)':36} {folder_mib(args.app):9.1f}   ({args.app})")
        ok = ok and max(frozen_starts) < TARGET_FROZEN_START_S
    else:
        print("frozen: no build found (make dist, or --app DIR); only the source was measured")
    print(f"{'bare python start (s)':36} {floor:9.3f}")
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
