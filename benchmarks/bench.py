"""Speed and scale benchmark of papers-assistant (`make bench`).

Runs every stage in its own process (see stages.py) so each stage's peak memory (RSS) is its own,
prints a table and writes the figures to benchmarks/results/bench-<time>.json. Ratios come from
one run on one machine: compare them, not absolute times, across machines. Cold builds and raw
embedding runs alternate (--repeat) and the fastest of each counts, so a burst of load from other
processes does not land on one side of the ratio only.

  python benchmarks/bench.py                      # everything, 10k and 100k synthetic papers
  python benchmarks/bench.py --papers 10000       # scale test at 10k only
  python benchmarks/bench.py --papers ''          # no scale test
  python benchmarks/bench.py --repeat 3           # 3 cold builds and 3 floor runs (default 2)

Synthetic collections are kept in --cache (default benchmarks/.cache) and reused while the
real index they were made from is unchanged.

  python benchmarks/bench.py --chat-load 20       # also the chat's load test (benchmarks/load_chat.py)

The chat's load test belongs to the chat work (`make load`); with --chat-load N the benchmark runs
it too, against a chat serving the index it has just built, and adds its row to the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUESTIONS = ROOT / "evals" / "dev.jsonl"
WARMUP = ROOT / "evals" / "test.jsonl"
N_QUESTIONS, N_WARMUP = 30, 3
#: Issue 12's targets: (figure, at most / at least, value); `targets()` checks a run against them.
#: Issue 12's scale target, to which `projection` extrapolates the server-mode figures.
PROJECT_TO_PAPERS = 1_000_334
TARGETS = [("build_over_floor", "max", 1.1), ("build_over_llama_index", "max", 0.9),
           ("answer_p50_ms", "max", 60.0), ("answer_p95_ms", "max", 100.0), ("reindex_s", "max", 2.0),
           ("chat_p95_s", "max", 2.0), ("chat_qps", "min", 10.0), ("chat_errors", "max", 0),
           ("scale_server_p95_ms", "max", 300.0), ("scale_first_answer_s", "max", 3.0),
           ("scale_process_rss_mib", "max", 2048.0)]


def _clean_env() -> dict[str, str]:
    """The caller's environment without ASSISTANT_* settings (a Chroma URL must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_stage(workdir: Path, stage: str, *args: str) -> dict:
    """Run one stage in a fresh process; its result plus wall time and the process's peak RSS."""
    out = workdir / f"{stage}-{time.monotonic_ns()}.json"
    log = workdir / f"{stage}.log"
    cmd = [sys.executable, str(HERE / "stages.py"), stage, str(out), *args]
    result = _run(cmd, log)
    if result["status"] != 0:
        raise SystemExit(f"stage {stage} failed (exit {result['status']}); see its log:\n{log.read_text()[-3000:]}")
    return {**json.loads(out.read_text()), "wall_s": result["wall_s"], "peak_rss_mib": result["peak_rss_mib"]}


def _run(cmd: list[str], log: Path, env_extra: dict[str, str] | None = None) -> dict:
    started = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**_clean_env(), **(env_extra or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"status": proc.returncode, "wall_s": time.perf_counter() - started,
            "peak_rss_mib": usage.ru_maxrss / 1024}


def build_floor_and_peer(workdir: Path, index_dir: Path, repeat: int) -> tuple[dict, dict, dict]:
    """Cold builds, raw-embedding runs and the plain llama-index pipeline, alternated so that a
    change in the machine's load hits all three; the fastest of each is kept (noise only adds
    time), with every run's time beside it."""
    runs: dict[str, list[dict]] = {"build": [], "floor": [], "peer": []}
    for n in range(max(1, repeat)):
        _step(f"raw embedding of the corpus's chunks (the floor), run {n + 1}")
        runs["floor"].append(run_stage(workdir, "embed_floor"))
        _step(f"cold build of the bundled corpus, run {n + 1}")
        shutil.rmtree(index_dir, ignore_errors=True)
        runs["build"].append(run_stage(workdir, "cold_build", str(index_dir)))
        _step(f"plain llama-index VectorStoreIndex pipeline (the peer), run {n + 1}")
        peer_dir = workdir / "peer-index"
        shutil.rmtree(peer_dir, ignore_errors=True)
        runs["peer"].append(run_stage(workdir, "llama_index_build", str(peer_dir)))
    build, floor, peer = ({**min(r, key=lambda x: x["seconds"]), "runs_s": [x["seconds"] for x in r]}
                          for r in (runs["build"], runs["floor"], runs["peer"]))
    return build, floor, peer


def first_answer(workdir: Path, index_dir: Path, chroma_url: str = "") -> dict:
    """Process start to first answer: `assistant ask --json` on a built index, in a new process."""
    question = json.loads(QUESTIONS.read_text().splitlines()[0])["question"]
    log = workdir / "ask.log"
    server = {"ASSISTANT_CHROMA_URL": chroma_url} if chroma_url else {}
    result = _run([sys.executable, "-m", "assistant", "ask", question, "--json"], log,
                  {"ASSISTANT_INDEX_DIR": str(index_dir), **server})
    if result["status"] != 0:
        raise SystemExit(f"`assistant ask` failed:\n{log.read_text()[-3000:]}")
    return result


def synthetic_index(workdir: Path, cache: Path, papers: int, real_index: Path, real_fingerprint: str) -> dict:
    """A synthetic collection of `papers` papers, reused from the cache when still valid."""
    out = cache / f"synthetic-{papers}"
    marker = out / "synthetic.json"
    from synthetic import GENERATOR

    from assistant.text import ANALYZER_ID

    if marker.exists():
        made = json.loads(marker.read_text())
        if (made.get("real_fingerprint"), made.get("analyzer"), made.get("generator")) == \
                (real_fingerprint, ANALYZER_ID, GENERATOR):
            return {**made, "reused": True, "index_dir": str(out)}
    shutil.rmtree(out, ignore_errors=True)
    result = run_stage(workdir, "synthetic", str(papers), str(real_index), str(out))
    result.update(real_fingerprint=real_fingerprint, analyzer=ANALYZER_ID, generator=GENERATOR)
    marker.write_text(json.dumps(result))
    return {**result, "reused": False, "index_dir": str(out)}


def server_mode(workdir: Path, folder: Path, questions: Path, warmup: Path) -> dict:
    """The collection in `folder` served by `chroma run`: warm answers through it, a new
    process's start to first answer (`assistant ask`), and each process's peak memory."""
    from load_chat import free_port, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(workdir / "chroma-server.log", "w") as log:
        server = subprocess.Popen([str(Path(sys.executable).with_name("chroma")), "run", "--path", str(folder),
                                   "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(f"{url}/api/v2/heartbeat", 120)
        started = time.perf_counter()
        warm = run_stage(workdir, "answer_warm", str(folder), str(questions), str(warmup), url)
        first = first_answer(workdir, folder, url)
        server_rss = _peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {"url": url, "answer_warm": warm, "first_answer": first, "server_peak_rss_mib": server_rss,
            "seconds": time.perf_counter() - started}


def _peak_rss_mib(pid: int) -> float:
    """A running process's peak resident memory (VmHWM), from /proc."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def chat_load(workdir: Path, index_dir: Path, questions: int) -> dict:
    """The chat's own load test (load_chat.py) against `assistant chat` on the bench's index."""
    sys.path.insert(0, str(HERE))
    import load_chat

    port = load_chat.free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(workdir / "chat.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "assistant", "chat", "--port", str(port)], cwd=ROOT,
                                  env={**_clean_env(), "ASSISTANT_INDEX_DIR": str(index_dir)}, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            load_chat.wait_for(url, 600)
            figures = load_chat.run(url, questions, questions, 180.0, server.pid)
        finally:
            server.terminate()
            _, _, usage = os.wait4(server.pid, 0)
            server.returncode = 0
    return {**figures, "peak_rss_mib": usage.ru_maxrss / 1024}


def machine() -> dict:
    """What the figures were measured on."""
    import onnxruntime

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "load_average_at_start": list(os.getloadavg()),
            "embed_threads_env": os.environ.get("ASSISTANT_EMBED_THREADS")}


def main() -> None:
    parser = argparse.ArgumentParser(description="papers-assistant speed and scale benchmark")
    parser.add_argument("--papers", default="10000,100000", help="synthetic collection sizes, comma-separated")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache", help="where synthetic collections are kept")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON result")
    parser.add_argument("--repeat", type=int, default=2, metavar="N",
                        help="cold builds and floor runs, alternated; the fastest of each counts (default 2)")
    parser.add_argument("--chat-load", type=int, default=0, metavar="N",
                        help="also run the chat load test with N concurrent questions")
    args = parser.parse_args()
    sizes = [int(p) for p in args.papers.split(",") if p.strip()]
    results: dict = {"machine": machine(), "stages": {}}
    stages = results["stages"]
    workdir = Path(tempfile.mkdtemp(prefix="assistant-bench-"))
    index_dir = workdir / "index"
    questions, warmup = _subset(QUESTIONS, N_QUESTIONS, workdir), _subset(WARMUP, N_WARMUP, workdir)
    try:
        stages["cold_build"], stages["embed_floor"], stages["llama_index_build"] = build_floor_and_peer(
            workdir, index_dir, args.repeat)
        _step("re-index of the unchanged corpus")
        stages["reindex"] = run_stage(workdir, "reindex", str(index_dir))
        _step("process start to first answer (`assistant ask`)")
        stages["first_answer"] = first_answer(workdir, index_dir)
        _step(f"warm answer() latency, {N_QUESTIONS} questions")
        stages["answer_warm"] = run_stage(workdir, "answer_warm", str(index_dir), str(questions), str(warmup))
        for papers in sizes:
            _step(f"synthetic collection of {papers} papers")
            made = synthetic_index(workdir, args.cache, papers, index_dir, stages["cold_build"]["fingerprint"])
            stages[f"synthetic_{papers}"] = made
            _step(f"warm answer() latency at {papers} synthetic papers")
            stages[f"answer_warm_{papers}"] = run_stage(workdir, "answer_warm", made["index_dir"], str(questions),
                                                        str(warmup))
            _step(f"Chroma server mode at {papers} synthetic papers")
            stages[f"server_{papers}"] = server_mode(workdir, Path(made["index_dir"]), questions, warmup)
            _step(f"filtered answer() latency at {papers} synthetic papers")
            stages[f"filters_{papers}"] = run_stage(workdir, "filtered_answers", made["index_dir"], str(questions))
        if args.chat_load:
            _step(f"chat load test, {args.chat_load} concurrent questions")
            stages["chat_load"] = chat_load(workdir, index_dir, args.chat_load)
    finally:
        results["machine"]["load_average_at_end"] = list(os.getloadavg())
        shutil.rmtree(workdir, ignore_errors=True)
    results["ratios"] = _ratios(stages)
    results["targets"] = targets(stages, results["ratios"])
    results["projection"] = projection(stages)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(render(results))
    print(f"\nwritten to {path}")


def _subset(path: Path, n: int, workdir: Path) -> Path:
    out = workdir / path.name
    out.write_text("\n".join(path.read_text().splitlines()[:n]) + "\n")
    return out


def _step(text: str) -> None:
    print(f"- {text} ...", file=sys.stderr, flush=True)


def _ratios(stages: dict) -> dict:
    build, floor, peer = stages["cold_build"], stages["embed_floor"], stages["llama_index_build"]
    out = {"build_over_floor": build["seconds"] / floor["seconds"],
           "build_over_floor_cpu": build["cpu_s"] / floor["cpu_s"],
           "build_over_llama_index": build["seconds"] / peer["seconds"],
           "build_over_llama_index_cpu": build["cpu_s"] / peer["cpu_s"],
           "llama_index_over_floor": peer["seconds"] / floor["seconds"]}
    for key, value in stages.items():
        if key.startswith("answer_warm_"):
            out[f"p95_{key[12:]}_over_p95_real"] = value["p95_ms"] / stages["answer_warm"]["p95_ms"]
    return out


def targets(stages: dict, ratios: dict) -> dict:
    """Each target with the figure this run measured (scale ones: the largest server-mode
    collection) and whether it was met; targets whose stage did not run are left out."""
    warm = stages["answer_warm"]
    figures = {"build_over_floor": ratios["build_over_floor"], "answer_p50_ms": warm["p50_ms"],
               "build_over_llama_index": ratios["build_over_llama_index"], "answer_p95_ms": warm["p95_ms"],
               "reindex_s": stages["reindex"]["seconds"]}
    if "chat_load" in stages:
        chat = stages["chat_load"]
        figures |= {"chat_p95_s": chat["latency_p95_s"], "chat_qps": chat["throughput_qps"],
                    "chat_errors": chat["errors"]}
    servers = sorted((int(k[7:]), v) for k, v in stages.items() if k.startswith("server_"))
    if servers:
        server = servers[-1][1]
        figures |= {"scale_server_p95_ms": server["answer_warm"]["p95_ms"],
                    "scale_first_answer_s": server["first_answer"]["wall_s"],
                    "scale_process_rss_mib": max(server["answer_warm"]["peak_rss_mib"],
                                                 server["first_answer"]["peak_rss_mib"])}
    return {name: {"target": f"{'<=' if kind == 'max' else '>='} {limit}", "measured": round(figures[name], 3),
                   "met": figures[name] <= limit if kind == "max" else figures[name] >= limit,
                   **({"synthetic_papers": servers[-1][0]} if name.startswith("scale_") else {})}
            for name, kind, limit in TARGETS if name in figures}


def scale_points(stages: dict) -> list[tuple[int, dict]]:
    """(papers, figures) of each server-mode size in a run, smallest first."""
    points = []
    for key in sorted((k for k in stages if k.startswith("server_")), key=lambda k: int(k[7:])):
        made, server = stages[f"synthetic_{key[7:]}"], stages[key]
        warm, first = server["answer_warm"], server["first_answer"]
        figures = {"answer_p50_ms": warm["p50_ms"], "answer_p95_ms": warm["p95_ms"],
                   "first_answer_s": first["wall_s"],
                   "process_rss_mib": max(warm["peak_rss_mib"], first["peak_rss_mib"]),
                   "server_rss_mib": server["server_peak_rss_mib"]}
        if "disk_mib" in made:
            figures["disk_mib"] = sum(made["disk_mib"].values())
        points.append((made["papers"], figures))
    return points


def projection(stages: dict, papers: int = PROJECT_TO_PAPERS) -> dict:
    """Each scale figure at `papers`, fitted over the run's server-mode sizes (two or more) by least
    squares: memory and disk as a + b·N; latency and start-up as a + b·log10 N (an HNSW search grows
    with log N), with the line a + b·N beside it as the pessimistic bound. Empty with fewer sizes."""
    points = scale_points(stages)
    if len(points) < 2:
        return {}
    sizes = np.array([n for n, _ in points], dtype=float)
    out: dict = {"papers": papers, "from_papers": [n for n, _ in points], "figures": {}}
    for name in points[-1][1]:
        values = np.array([figures[name] for _, figures in points], dtype=float)
        b, a = np.polyfit(sizes, values, 1)
        linear = {"model": "a + b*N", "a": round(a, 3), "b_per_1k_papers": round(b * 1000, 4),
                  "projected": round(a + b * papers, 1)}
        if name.endswith(("_ms", "_s")):
            b_log, a_log = np.polyfit(np.log10(sizes), values, 1)
            out["figures"][name] = {"model": "a + b*log10(N)", "a": round(a_log, 3), "b_per_10x": round(b_log, 3),
                                    "projected": round(a_log + b_log * np.log10(papers), 2), "bound_linear": linear}
        else:
            out["figures"][name] = linear
    return out


def render_projection(p: dict) -> str:
    """The projection as one line: each figure with its model (and the linear bound of latencies)."""
    return (f"projected to {p['papers']:,} papers from " + " / ".join(f"{n:,}" for n in p["from_papers"]) + ": "
            + ", ".join(f"{name} {f['projected']:g} ({f['model']}"
                        + (f"; a + b*N: {f['bound_linear']['projected']:g})" if "bound_linear" in f else ")")
                        for name, f in p["figures"].items()))


def _runs(stage: dict) -> str:
    return ", ".join(f"{t:.1f}" for t in stage.get("runs_s", [stage["seconds"]])) + " s"


def render(results: dict) -> str:
    """The benchmark as a Markdown table."""
    s = results["stages"]
    rows = [("stage", "figure", "peak RSS")]

    def mib(stage: dict) -> str:
        return f"{stage['peak_rss_mib']:.0f} MiB" if "peak_rss_mib" in stage else ""

    b, f, r, p = s["cold_build"], s["embed_floor"], s["reindex"], s["llama_index_build"]
    ratios = results["ratios"]
    rows += [
        (f"cold index build ({b['chunks']} chunks and their sentence vectors, {b['papers']} papers)",
         f"{b['seconds']:.1f} s = {ratios['build_over_floor']:.2f}x the floor's time, "
         f"{ratios['build_over_floor_cpu']:.2f}x its CPU time, {ratios['build_over_llama_index']:.2f}x the "
         f"llama-index pipeline's ({ratios['build_over_llama_index_cpu']:.2f}x its CPU time); runs {_runs(b)}",
         mib(b)),
        ("raw embedding of the same chunks (floor)",
         f"{f['seconds']:.1f} s ({f['tokens']:,} tokens), {f['threads']} threads; runs {_runs(f)}", mib(f)),
        (f"plain llama-index VectorStoreIndex, SentenceSplitter(200, 30), same embedder ({p['nodes']} nodes)",
         f"{p['seconds']:.1f} s ({p['tokens']:,} tokens; no sentence vectors); runs {_runs(p)}", mib(p)),
        ("re-index, unchanged corpus", f"{r['seconds']:.2f} s (0 chunks embedded)", mib(r)),
        ("`assistant ask` process start to first answer", f"{s['first_answer']['wall_s']:.1f} s",
         mib(s["first_answer"])),
    ]
    for key in ["answer_warm"] + [k for k in s if k.startswith("answer_warm_")]:
        a = s[key]
        label = "real corpus" if key == "answer_warm" else f"{int(key[12:]):,} synthetic papers"
        rows.append((f"answer() warm, extractive, {label} ({a['chunks']:,} chunks)",
                     f"p50 {a['p50_ms']:.0f} ms, p95 {a['p95_ms']:.0f} ms (retrieval p50 "
                     f"{a['parts_p50_ms']['retrieval']:.0f} ms, answer {a['parts_p50_ms']['answer']:.0f} ms, "
                     f"citations {a['parts_p50_ms']['citations']:.0f} ms); open {a['open_s']:.1f} s, keyword "
                     f"index open {a['keyword_open_s'] * 1000:.0f} ms, first answer {a['first_answer_s']:.1f} s",
                     mib(a)))
    for key in [k for k in s if k.startswith("server_")]:
        a, first = s[key]["answer_warm"], s[key]["first_answer"]
        rows.append((f"Chroma server mode, {int(key[7:]):,} synthetic papers",
                     f"warm answer() p50 {a['p50_ms']:.0f} ms, p95 {a['p95_ms']:.0f} ms (retrieval p50 "
                     f"{a['parts_p50_ms']['retrieval']:.0f} ms); new `assistant ask` process start to answer "
                     f"{first['wall_s']:.1f} s ({first['peak_rss_mib']:.0f} MiB); server peak "
                     f"{s[key]['server_peak_rss_mib']:.0f} MiB", mib(a)))
    for key in [k for k in s if k.startswith("synthetic_")]:
        g = s[key]
        how = f"made in {g['seconds']:.0f} s" + (" (reused from the cache)" if g.get("reused") else "")
        if "disk_mib" in g:
            how += f", {sum(g['disk_mib'].values()) / 1024:.1f} GiB on disk"
        rows.append((f"synthetic collection, {g['papers']:,} papers", f"{g['chunks']:,} chunks, {how}; {g['note']}",
                     mib(g)))
    for key in [k for k in s if k.startswith("filters_")]:
        f = s[key]
        timed = "; ".join(f"{name} ({v['matching']:,} papers): p50 {v['p50_ms']:.0f} ms, p95 {v['p95_ms']:.0f} ms, "
                          f"retrieval p50 {v['retrieval_p50_ms']:.0f} ms" for name, v in f["filters"].items())
        rows.append((f"answer() with filters, {int(key[8:]):,} synthetic papers",
                     f"{timed}; paper catalog read once in {f['catalog_s']:.1f} s", mib(f)))
    if "chat_load" in s:
        c = s["chat_load"]
        rows.append((f"chat load test, {c['clients']} concurrent questions",
                     f"{c['throughput_qps']} questions/s, latency p50 {c['latency_p50_s']} s, p95 "
                     f"{c['latency_p95_s']} s, {c['errors']} errors", mib(c)))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, width)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in width) + "|")
    lines.append("\ntargets: " + ", ".join(f"{name} {t['measured']} ({t['target']}: {'met' if t['met'] else 'NOT met'})"
                                        for name, t in results["targets"].items()))
    if results.get("projection"):
        lines.append("\n" + render_projection(results["projection"]))
    m = results["machine"]
    lines.append(f"\n{m['cpu']}, {m['cores']} cores, onnxruntime {m['onnxruntime']}; load average "
                 f"{m['load_average_at_start'][0]:.1f} at start, {m['load_average_at_end'][0]:.1f} at end")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
