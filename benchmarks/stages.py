"""One benchmark stage per process, so each stage's peak memory is its own.

Usage: python benchmarks/stages.py STAGE RESULT.json [ARG ...]; `bench.py` runs these and
reads the result files. Each stage prints nothing on success and writes one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def _settings(index_dir: str):
    from assistant.settings import Settings

    return Settings.from_env(env={}, index_dir=Path(index_dir))


def cold_build(index_dir: str) -> dict:
    """`PaperIndex.build` into an empty folder (model load included, interpreter start excluded)."""
    t = time.perf_counter()
    from assistant.indexing.index import PaperIndex
    imported = time.perf_counter()
    index = PaperIndex(_settings(index_dir))
    cpu = time.process_time()
    report = index.build(progress=False)
    done = time.perf_counter()
    return {"import_s": imported - t, "seconds": done - imported, "cpu_s": time.process_time() - cpu,
            "chunks": report.chunks, "added": report.added,
            "papers": report.papers, "breakdown_s": report.seconds,
            "fingerprint": index.store.fingerprint()}


def reindex(index_dir: str) -> dict:
    """`PaperIndex.build` again over the unchanged corpus: must embed nothing."""
    result = cold_build(index_dir)
    assert result["added"] == 0, f"re-index embedded {result['added']} chunks"
    return result


def embed_floor() -> dict:
    """The raw model alone on the same chunk texts: session load + tokenise + run + pool."""
    from assistant.corpus.parse import load_corpus
    from assistant.indexing.chunking import chunk_papers
    from assistant.indexing.embedding import MiniLMEncoder
    from assistant.settings import Settings

    settings = Settings()
    texts = [c.embed_text for c in chunk_papers(load_corpus().papers, settings.chunk_size, settings.chunk_overlap)]
    t, cpu = time.perf_counter(), time.process_time()
    encoder = MiniLMEncoder()
    vectors = encoder.encode(texts)
    seconds = time.perf_counter() - t
    assert vectors.shape == (len(texts), 384)
    return {"seconds": seconds, "cpu_s": time.process_time() - cpu, "chunks": len(texts), "threads": encoder.threads,
            "tokens": int(sum(len(e.ids) for e in encoder.tokenizer.encode_batch(texts)))}


def answer_warm(index_dir: str, questions_file: str, warmup_file: str) -> dict:
    """Open an Assistant, answer warm-up questions, then time `answer()` on the questions."""
    t0 = time.perf_counter()
    from assistant.pipeline import Assistant
    imported = time.perf_counter()
    assistant = Assistant(_settings(index_dir))
    assert assistant.index.ready(), f"no complete index in {index_dir}"
    opened = time.perf_counter()
    assistant.index.keyword()
    keyword_opened = time.perf_counter()
    assistant.answer(_questions(warmup_file)[0])
    first = time.perf_counter()
    for q in _questions(warmup_file)[1:]:
        assistant.answer(q)
    latencies, parts = [], {"retrieval": [], "answer": [], "citations": []}
    refused = 0
    for q in _questions(questions_file):
        t = time.perf_counter()
        result = assistant.answer(q, backend="extractive")
        latencies.append((time.perf_counter() - t) * 1000)
        refused += result.refused
        for key in parts:
            parts[key].append(result.timings_ms[key])
    ms = np.array(latencies)
    return {"import_s": imported - t0, "open_s": opened - imported, "keyword_open_s": keyword_opened - opened,
            "first_answer_s": first - keyword_opened, "questions": len(ms), "refused": refused,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean()),
            "parts_p50_ms": {k: float(np.percentile(v, 50)) for k, v in parts.items()},
            "parts_p95_ms": {k: float(np.percentile(v, 95)) for k, v in parts.items()},
            "chunks": assistant.index.store.count()}


def synthetic(papers: str, real_index: str, out: str) -> dict:
    """Generate a synthetic collection (see synthetic.py) and report how long it took."""
    from synthetic import build

    t = time.perf_counter()
    result = build(int(papers), _settings(real_index), _settings(out), progress=False)
    result["seconds"] = time.perf_counter() - t
    Path(out, "synthetic.json").write_text(json.dumps(result))
    return result


def _questions(path: str) -> list[str]:
    return [json.loads(line)["question"] for line in Path(path).read_text().splitlines() if line.strip()]


STAGES = {"cold_build": cold_build, "reindex": reindex, "embed_floor": embed_floor, "answer_warm": answer_warm,
          "synthetic": synthetic}


def main() -> None:
    stage, out, *args = sys.argv[1:]
    result = STAGES[stage](*args)
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
