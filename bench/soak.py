"""Soak: minutes of mixed traffic at a fixed concurrency, then proof that nothing leaked.

    .venv/bin/python bench/soak.py [--minutes 5] [--concurrency 8] [--report soak.md]

One aistack server on the starter models. Each worker loops over a weighted mix
of transcriptions, speech, chats (whole and streamed), text completions,
listings, mid-stream disconnects (a streamed chat or speech left after its first
event) and bursts on one model that the small queue (2, 10 s) answers busy (503 with
Retry-After). Afterwards the report shows:

- no 500 at all, and no hung request (none took longer than `--timeout`);
- the server's RSS and open descriptors, measured after unloading every model,
  within 10% of the same measurement before the traffic;
- no upload temp file left behind.

Exit status 1 if any of these fails. On a shared machine every number is slower
than on an idle one; the leak checks do not depend on speed.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import DEFAULT_DATA, ServerProcess  # noqa: E402

CHAT = "smollm2-135m-instruct"
TEXT = "Please call Stella and ask her to bring these things with her from the store."


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.slowest: dict[str, float] = collections.defaultdict(float)
        self.hung: list[str] = []
        self.errors: list[str] = []

    def add(self, action: str, outcome: str, seconds: float) -> None:
        with self.lock:
            self.counts[action][outcome] += 1
            self.slowest[action] = max(self.slowest[action], seconds)


class Traffic:
    """The request mix; every method returns the outcome it saw ("200", "503-busy", "disconnect", ...)."""

    def __init__(self, url: str, clip: bytes, timeout: float):
        self.url = url
        self.clip = clip
        self.timeout = timeout

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=self.timeout)

    @staticmethod
    def outcome(response: httpx.Response) -> str:
        if response.status_code == 503 and "retry-after" in response.headers:
            return "503-busy"
        return str(response.status_code)

    def transcription(self, http: httpx.Client) -> str:
        return self.outcome(http.post("/v1/audio/transcriptions", files={"file": ("clip.wav", self.clip)}))

    def speech(self, http: httpx.Client) -> str:
        return self.outcome(http.post("/v1/audio/speech", json={"input": TEXT, "response_format": "mp3"}))

    def chat(self, http: httpx.Client) -> str:
        body = {"model": CHAT, "max_tokens": 12, "messages": [{"role": "user", "content": "Name a colour."}]}
        return self.outcome(http.post("/v1/chat/completions", json=body))

    def streamed_chat(self, http: httpx.Client) -> str:
        body = {"model": CHAT, "max_tokens": 12, "stream": True, "messages": [{"role": "user", "content": "Count to five."}]}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            for _ in response.iter_lines():
                pass
            return self.outcome(response)

    def completion(self, http: httpx.Client) -> str:
        return self.outcome(http.post("/v1/completions", json={"model": CHAT, "prompt": "Once upon a time", "max_tokens": 8}))

    def listings(self, http: httpx.Client) -> str:
        outcomes = {self.outcome(http.get(path)) for path in ("/v1/models", "/v1/audio/voices", "/health", "/admin/api/status")}
        return "200" if outcomes == {"200"} else ",".join(sorted(outcomes))

    def disconnect(self, http: httpx.Client) -> str:
        """Leave a stream after its first event: the server must cancel the work and free the slot."""
        if random.random() < 0.5:
            request = ("/v1/chat/completions", {"model": CHAT, "max_tokens": 200, "stream": True,
                                                "messages": [{"role": "user", "content": "Tell a long story."}]})
        else:
            request = ("/v1/audio/speech", {"input": TEXT * 4, "stream": True, "stream_format": "sse"})
        with http.stream("POST", request[0], json=request[1]) as response:
            if response.status_code != 200:
                return self.outcome(response)
            next(response.iter_bytes(), None)
        return "disconnect"

    def burst(self, http: httpx.Client) -> str:
        """Four chats at once on one model with a queue of two: some are answered busy."""
        results: list[str] = []

        def one() -> None:
            with self.client() as own:
                results.append(self.chat(own))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return "+".join(sorted(results))


MIX = [("transcription", 3), ("speech", 3), ("chat", 3), ("streamed_chat", 2), ("completion", 1),
       ("listings", 4), ("disconnect", 2), ("burst", 1)]


def worker(traffic: Traffic, tally: Tally, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    with traffic.client() as http:
        while time.monotonic() < deadline:
            action = rng.choices(names, weights)[0]
            started = time.monotonic()
            try:
                outcome = getattr(traffic, action)(http)
            except httpx.TimeoutException:
                outcome = "hung"
                tally.hung.append(action)
            except httpx.HTTPError as exc:
                outcome = f"error:{type(exc).__name__}"
                tally.errors.append(f"{action}: {exc}")
            tally.add(action, outcome, time.monotonic() - started)


def resources(server: ServerProcess) -> tuple[int, int]:
    """The server process's RSS in bytes and its open descriptors (runners excluded: they are unloaded)."""
    import psutil

    proc = psutil.Process(server.proc.pid)
    fds = proc.num_fds() if hasattr(proc, "num_fds") else proc.num_handles()
    return proc.memory_info().rss, fds


def settle(server: ServerProcess, http: httpx.Client) -> tuple[int, int]:
    """Unload everything, let idle connections close, and measure."""
    http.post("/admin/api/unload-all", headers=server.admin_headers).raise_for_status()
    time.sleep(8)  # idle keep-alive connections close (AISTACK_HTTP_IDLE_TIMEOUT_SEC) and runners exit
    return resources(server)


def warm(traffic: Traffic, http: httpx.Client) -> None:
    for action in ("transcription", "speech", "chat", "streamed_chat", "completion", "listings", "disconnect"):
        getattr(traffic, action)(http)


def run(minutes: float, concurrency: int, timeout: float, data_dir: Path) -> tuple[bool, str]:
    log_dir = Path(tempfile.mkdtemp(prefix="aistack-soak-logs-"))
    temp_dir = Path(tempfile.mkdtemp(prefix="aistack-soak-tmp-"))  # the server's own temp folder: nobody else writes there
    env = {"AISTACK_QUEUE_MAX": "2", "AISTACK_QUEUE_WAIT_SEC": "10", "AISTACK_OBS_LOG_DIR": str(log_dir),
           "TMPDIR": str(temp_dir), "TEMP": str(temp_dir), "TMP": str(temp_dir)}
    server = ServerProcess(data_dir, env)
    try:
        with httpx.Client(base_url=server.url, timeout=timeout) as http:
            clip = http.post("/v1/audio/speech", json={"input": TEXT, "response_format": "wav"}).content
            traffic = Traffic(server.url, clip, timeout)
            warm(traffic, http)  # every engine imported and every code path run once before the baseline
            rss0, fds0 = settle(server, http)
            tally = Tally()
            started = time.monotonic()
            deadline = started + minutes * 60
            threads = [threading.Thread(target=worker, args=(traffic, tally, deadline, seed)) for seed in range(concurrency)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            rss1, fds1 = settle(server, http)
        alive = server.proc.poll() is None
        tracebacks = server.log().count("Traceback")
    finally:
        server.stop()
    leftovers = sorted(p.name for p in temp_dir.glob("aistack-upload-*"))
    return report(tally, elapsed, concurrency, (rss0, fds0, rss1, fds1), leftovers, alive, tracebacks)


def report(tally: Tally, elapsed: float, concurrency: int, usage: tuple[int, int, int, int], leftovers: list[str],
           alive: bool, tracebacks: int) -> tuple[bool, str]:
    rss0, fds0, rss1, fds1 = usage
    total = sum(sum(c.values()) for c in tally.counts.values())
    fives = sum(n for c in tally.counts.values() for outcome, n in c.items() for part in outcome.split("+") if part == "500")
    lines = [
        f"Soak: {elapsed / 60:.1f} min at concurrency {concurrency}, {total} actions.",
        "",
        "| action | count | outcomes | slowest (s) |",
        "|---|---|---|---|",
    ]
    for action, counter in sorted(tally.counts.items()):
        outcomes = ", ".join(f"{k}: {v}" for k, v in counter.most_common())
        lines.append(f"| {action} | {sum(counter.values())} | {outcomes} | {tally.slowest[action]:.1f} |")
    rss_change, fds_change = (rss1 - rss0) / rss0, (fds1 - fds0) / max(fds0, 1)
    checks = {
        "no 500": fives == 0,
        "no hung request": not tally.hung,
        "no transport error": not tally.errors,
        f"server RSS after unloading {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB ({rss_change:+.1%}, within 10%)":
            abs(rss_change) <= 0.10,
        f"open descriptors after unloading {fds0} -> {fds1} ({fds_change:+.1%}, within 10%)": abs(fds_change) <= 0.10,
        "no upload temp file left": not leftovers,
        "server alive, no traceback in its log": alive and tracebacks == 0,
    }
    lines += ["", *[f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in checks.items()]]
    if tally.errors:
        lines.append(f"- transport errors (first 3): {tally.errors[:3]}")
    if leftovers:
        lines.append(f"- left over: {leftovers[:5]}")
    return all(checks.values()), "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=180, help="a request slower than this counts as hung")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--report", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args()
    ok, text = run(args.minutes, args.concurrency, args.timeout, args.data_dir)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
