"""Load test of the chat: N concurrent questions against a running app on loopback.

Starts `assistant chat` on a free 127.0.0.1 port (or uses --url) and waits until it has warmed
up, then sends the questions at once from several threads, each in its own conversation, through
Gradio's HTTP API (`POST /gradio_api/call/chat`, then the call's event stream). It reports
throughput, latency p50/p95 from the POST to the final answer, errors, and the CPU time the chat
and this load generator used meanwhile. (gradio_client, used before, cost the load generator
~60 ms of CPU per question and a 3-4 s set-up per client on this 2-core machine; a plain HTTP
client costs a few ms: docs/performance.md.)
Bounded: a fixed number of questions and a deadline; it never targets
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
from typing import Any

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


def chat_inputs(parameters: list[dict[str, Any]], question: str) -> list[Any]:
    """The `/chat` endpoint's inputs for a question, in the order the app describes them
    (`GET /gradio_api/info`): the question, the extractive backend, 5 papers, every other
    control (filters, ...) at its default."""
    chosen = {"message": question, "backend": "extractive", "top_k": 5}
    return [chosen.get(p["parameter_name"], p.get("parameter_default")) for p in parameters]


def ask(http: Any, url: str, inputs: list[Any], timeout_s: float) -> tuple[float, str | None]:
    """One question in its own conversation through Gradio's HTTP API (POST the call, read its
    event stream to the end), as any HTTP client would; returns (seconds, error or None)."""
    started = time.perf_counter()
    try:
        call = http.post(f"{url}gradio_api/call/chat", json={"data": inputs}, timeout=timeout_s)
        call.raise_for_status()
        event, data = "", ""
        with http.stream("GET", f"{url}gradio_api/call/chat/{call.json()['event_id']}", timeout=timeout_s) as reply:
            for line in reply.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
        outputs = json.loads(data) if event == "complete" else []
        # The answer's dict (`Answer.to_dict()`, or {"error": ...}) among the outputs (HTML, state...).
        details = next((o for o in outputs if isinstance(o, dict) and ("answer" in o or "error" in o)), None)
        error = details.get("error") if isinstance(details, dict) else f"no answer ({event!r}: {data[:200]})"
    except Exception as exc:  # a load test reports every failure instead of stopping
        error = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - started, error


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, n: int, clients: int, timeout_s: float, server_pid: int | None = None) -> dict:
    """n questions, `clients` at once, each in its own conversation; figures as a dict, with the CPU
    the chat and this load generator used meanwhile (they share the machine)."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with httpx.Client(limits=limits) as http, ThreadPoolExecutor(max_workers=clients) as pool:
        parameters = http.get(f"{url}gradio_api/info").json()["named_endpoints"]["/chat"]["parameters"]
        calls = [chat_inputs(parameters, q) for q in questions(n)]
        server_cpu, own_cpu = cpu_seconds(server_pid) if server_pid else 0.0, time.process_time()
        started = time.perf_counter()
        futures = [pool.submit(ask, http, url, inputs, timeout_s) for inputs in calls]
        latencies, errors = [], []
        for future in as_completed(futures, timeout=timeout_s * 2):
            seconds, error = future.result()
            latencies.append(seconds)
            if error:
                errors.append(error)
        wall = time.perf_counter() - started
        own_cpu = time.process_time() - own_cpu
        server_cpu = cpu_seconds(server_pid) - server_cpu if server_pid else None
    latencies.sort()
    return {
        "questions": n, "clients": clients, "wall_s": round(wall, 2),
        "throughput_qps": round(n / wall, 2),
        "latency_p50_s": round(statistics.median(latencies), 2),
        "latency_p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
        "errors": len(errors), "error_samples": errors[:3],
        "cpu_s_chat": None if server_cpu is None else round(server_cpu, 2),
        "cpu_s_load_generator": round(own_cpu, 2),
        "load_average": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running chat on loopback (default: start one)")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per question")
    args = parser.parse_args()
    server = None
    url = args.url and args.url.rstrip("/") + "/"
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        server = subprocess.Popen([sys.executable, "-m", "assistant", "chat", "--port", str(port)],
                                  cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL)
    try:
        wait_for(url, 600)
        figures = run(url, args.questions, args.clients, args.timeout, server.pid if server else None)
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
