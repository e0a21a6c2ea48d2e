"""Idle server start-up: process start to `GET /health` 200, and idle memory.

    .venv/bin/python bench/startup.py [--runs 5]

Starts `aistack serve` on a free port with the starter data dir, polls /health
every 5 ms, then reads the resident memory of the server process (no model is
loaded, so it has no runner children). Targets: start under 1.5 s, RSS under 150 MB.
A bare `python -c pass` start is printed beside it as the floor.
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
TARGET_RSS_MB = 150


def one_start(data_dir: Path) -> tuple[float, float]:
    port = free_port()
    env = {**os.environ, "AISTACK_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=ROOT, env=env,
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("AISTACK_TEST_DATA_DIR") or DEFAULT_DATA))
    args = parser.parse_args()
    one_start(args.data_dir)  # warm the OS file cache, as a second launch would be
    runs = [one_start(args.data_dir) for _ in range(args.runs)]
    starts = [r[0] for r in runs]
    rss = [r[1] for r in runs]
    floor = statistics.median(bare_python() for _ in range(3))
    print(f"{'measure':32} {'median':>9} {'max':>9} {'target':>9}")
    print(f"{'start to /health 200 (s)':32} {statistics.median(starts):9.3f} {max(starts):9.3f} {TARGET_START_S:9.3f}")
    print(f"{'idle RSS (MB)':32} {statistics.median(rss):9.1f} {max(rss):9.1f} {TARGET_RSS_MB:9.1f}")
    print(f"{'bare python start (s)':32} {floor:9.3f}")
    ok = max(starts) < TARGET_START_S and max(rss) < TARGET_RSS_MB
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
