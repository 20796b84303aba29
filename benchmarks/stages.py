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


def _settings(index_dir: str, chroma_url: str = ""):
    from assistant.settings import Settings

    return Settings.from_env(env={}, index_dir=Path(index_dir), chroma_url=chroma_url or None)


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
    """The raw model alone on the texts a build embeds: session load + tokenise + run + pool, for
    the chunk texts (the sentence vectors come out of the same pass, `MiniLMEncoder.encode_spans`)."""
    from assistant.corpus.parse import load_corpus
    from assistant.indexing.chunking import chunk_papers
    from assistant.indexing.embedding import MiniLMEncoder
    from assistant.settings import Settings

    settings = Settings()
    chunks = chunk_papers(load_corpus().papers, settings.chunk_size, settings.chunk_overlap)
    texts = [c.embed_text for c in chunks]
    t, cpu = time.perf_counter(), time.process_time()
    encoder = MiniLMEncoder()
    vectors = encoder.encode(texts)
    seconds = time.perf_counter() - t
    assert vectors.shape == (len(texts), 384)
    return {"seconds": seconds, "cpu_s": time.process_time() - cpu, "chunks": len(texts),
            "threads": encoder.threads, "tokens": _tokens(encoder, texts)}


def llama_index_build(index_dir: str) -> dict:
    """What a user would build instead: a plain llama-index VectorStoreIndex over Chroma with the
    same embedder (the `llama_embedding` adapter) and SentenceSplitter(200, 30) on title + abstract
    of the same corpus (parse, model load and Chroma writes included, like `cold_build`)."""
    t = time.perf_counter()
    import chromadb
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core import Settings as LlamaSettings
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from assistant.corpus.parse import load_corpus
    from assistant.indexing.llama_embedding import MiniLMEmbedding
    imported = time.perf_counter()
    cpu = time.process_time()
    embedding = MiniLMEmbedding()
    LlamaSettings.embed_model, LlamaSettings.llm = embedding, None
    documents = [Document(text=f"{p.title}\n{p.abstract}") for p in load_corpus().papers]
    collection = chromadb.PersistentClient(path=index_dir).get_or_create_collection(
        "peer", configuration={"hnsw": {"space": "cosine"}})
    storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
    VectorStoreIndex.from_documents(documents, storage_context=storage,
                                    transformations=[SentenceSplitter(chunk_size=200, chunk_overlap=30)])
    seconds = time.perf_counter() - imported
    texts = collection.get(include=["documents"])["documents"]
    return {"import_s": imported - t, "seconds": seconds, "cpu_s": time.process_time() - cpu,
            "nodes": len(texts), "tokens": _tokens(embedding.encoder, texts)}


def _tokens(encoder, texts: list[str]) -> int:
    return int(sum(len(e.ids) for e in encoder.tokenizer.encode_batch(texts)))


def answer_warm(index_dir: str, questions_file: str, warmup_file: str, chroma_url: str = "") -> dict:
    """Open an Assistant (on a Chroma server when `chroma_url` is given), answer warm-up
    questions, then time `answer()` on the questions."""
    t0 = time.perf_counter()
    from assistant.pipeline import Assistant
    imported = time.perf_counter()
    assistant = Assistant(_settings(index_dir, chroma_url))
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


#: Filters timed by `filtered_answers` on a synthetic collection (dates over 2023-2025, 50 papers a page):
#: broad and medium ones take the over-fetch path, the two pages the exact one, the last matches nothing.
FILTERS = {"published since 2024": {"since": "2024"},
           "published 2025, >= 10 upvotes": {"since": "2025", "min_upvotes": 10},
           "two source pages": {"sources": ["synthetic-0042.txt", "synthetic-0043.txt"]},
           "nothing matches": {"since": "2031"}}


def filtered_answers(index_dir: str, questions_file: str) -> dict:
    """`answer()` latency with each of FILTERS against none, same questions, same process; and the
    cost of reading the paper catalog (once per index version) and of selecting papers."""
    from assistant.pipeline import Assistant
    from assistant.search.filters import PaperFilter

    assistant = Assistant(_settings(index_dir))
    questions = _questions(questions_file)
    for q in questions:  # warm, and every run below reuses the cached question vectors alike
        assistant.answer(q)
    t = time.perf_counter()
    catalog = assistant.index.catalog()
    out: dict = {"catalog_s": time.perf_counter() - t, "papers": len(catalog), "filters": {}}
    for name, spec in {"no filter": None, **FILTERS}.items():
        latencies, retrieval, select_ms = [], [], []
        for q in questions:
            if spec:
                s = time.perf_counter()
                matching = PaperFilter.parse(spec).select(catalog).papers
                select_ms.append((time.perf_counter() - s) * 1000)
            s = time.perf_counter()
            result = assistant.answer(q, filters=spec)
            latencies.append((time.perf_counter() - s) * 1000)
            retrieval.append(result.timings_ms["retrieval"])
        out["filters"][name] = {"matching": matching if spec else len(catalog),
                                "p50_ms": float(np.percentile(latencies, 50)),
                                "p95_ms": float(np.percentile(latencies, 95)),
                                "retrieval_p50_ms": float(np.percentile(retrieval, 50)),
                                "select_p50_ms": float(np.percentile(select_ms, 50)) if select_ms else 0.0}
    return out


def synthetic(papers: str, real_index: str, out: str) -> dict:
    """Generate a synthetic collection (see synthetic.py) and report how long it took; progress
    goes to the stage's log (`synthetic.log` in the bench's work folder), as a 300k run takes ~50 min."""
    from synthetic import build

    t = time.perf_counter()
    result = build(int(papers), _settings(real_index), _settings(out))
    result["seconds"] = time.perf_counter() - t
    result["disk_mib"] = {entry.name: _mib(entry) for entry in sorted(Path(out).iterdir())}
    Path(out, "synthetic.json").write_text(json.dumps(result))
    return result


def _mib(path: Path) -> float:
    """Size on disk of a file or folder (Chroma's segment folder, the keyword index, sentence vectors)."""
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return round(sum(f.stat().st_blocks * 512 for f in files) / 2**20, 1)


def _questions(path: str) -> list[str]:
    return [json.loads(line)["question"] for line in Path(path).read_text().splitlines() if line.strip()]


STAGES = {"cold_build": cold_build, "reindex": reindex, "embed_floor": embed_floor, "answer_warm": answer_warm,
          "synthetic": synthetic, "llama_index_build": llama_index_build, "filtered_answers": filtered_answers}


def main() -> None:
    stage, out, *args = sys.argv[1:]
    result = STAGES[stage](*args)
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
