"""Load test of the chat: N concurrent questions against a running app on loopback.

Starts `assistant chat` on a free 127.0.0.1 port (or uses --url), sends the questions from
several threads through gradio_client's `/chat` endpoint, and reports throughput, latency
p50/p95 and errors. Bounded: a fixed number of questions and a deadline; it never targets
anything but the given loopback URL.

    python benchmarks/load_chat.py --questions 20 --clients 20
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, deadline_s: float) -> None:
    """Block until the app answers HTTP, or raise after the deadline."""
    import urllib.request

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2).read(1)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the chat at {url} did not come up in {deadline_s:.0f} s")


def questions(n: int) -> list[str]:
    """n answerable and unanswerable questions from the dev split, cycled."""
    rows = [json.loads(line)["question"] for line in (ROOT / "evals" / "dev.jsonl").open()]
    return [rows[i % len(rows)] for i in range(n)]


def ask(url: str, question: str, timeout_s: float) -> tuple[float, str | None]:
    """One question through a fresh client (one conversation); returns (seconds, error or None)."""
    from gradio_client import Client

    started = time.perf_counter()
    try:
        client = Client(url, verbose=False)
        job = client.submit(question, "extractive", 5, api_name="/chat")
        _, _, answer = job.result(timeout=timeout_s)
        error = answer.get("error") if isinstance(answer, dict) else "no answer"
    except Exception as exc:  # a load test reports every failure instead of stopping
        error = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - started, error


def run(url: str, n: int, clients: int, timeout_s: float) -> dict:
    """Send n questions from `clients` threads at once; figures as a dict."""
    started = time.perf_counter()
    latencies, errors = [], []
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(ask, url, q, timeout_s) for q in questions(n)]
        for future in as_completed(futures, timeout=timeout_s * 2):
            seconds, error = future.result()
            latencies.append(seconds)
            if error:
                errors.append(error)
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "questions": n, "clients": clients, "wall_s": round(wall, 2),
        "throughput_qps": round(n / wall, 2),
        "latency_p50_s": round(statistics.median(latencies), 2),
        "latency_p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
        "errors": len(errors), "error_samples": errors[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running chat on loopback (default: start one)")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per question")
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        server = subprocess.Popen([sys.executable, "-m", "assistant", "chat", "--port", str(port)],
                                  cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL)
    try:
        wait_for(url, 600)
        figures = run(url, args.questions, args.clients, args.timeout)
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "load_chat.json"
    out.write_text(json.dumps(figures, indent=2))
    for key, value in figures.items():
        print(f"{key:>16}: {value}")
    print(f"written: {out}")
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
