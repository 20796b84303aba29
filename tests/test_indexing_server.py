"""Server mode: a real `chroma run` server on a free loopback port, shared by several processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.errors import IndexProblemError
from assistant.indexing.embedding import CachedEncoder, MiniLMEncoder
from assistant.indexing.index import PaperIndex

ROOT = Path(__file__).resolve().parents[1]
EXTRA_TITLE = "Tidal Attention: Routing Tokens by Lunar Phase for Long-Context Language Models"
EXTRA_PAPERS = [
    {"title": EXTRA_TITLE,
     "abstract": "We introduce Tidal Attention, an attention mechanism that routes each token to one of "
                 "four expert heads according to a lunar-phase schedule. On long-context benchmarks Tidal "
                 "Attention cuts attention memory by 41% while keeping perplexity within 0.2 points of "
                 "dense attention. The schedule costs nothing at inference time."},
    {"title": "Brackish: Evaluating Code Models on Estuary Simulation Programs",
     "abstract": "Brackish is a benchmark of 312 estuary simulation programs written in Fortran and "
                 "Python. We test twelve code models on repairing, translating and documenting them. "
                 "The best model repairs 58% of the broken programs; translation remains hard."},
]


@pytest.fixture(scope="module")
def chroma_url(chroma_servers: Callable) -> Iterator[str]:
    """A real Chroma server with its own data folder; stopped when the module's tests are done."""
    server = chroma_servers()
    yield server.url
    server.kill()


@pytest.fixture(scope="module")
def server_settings(chroma_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings.from_env(env={}, index_dir=tmp_path_factory.mktemp("server-side-files"), chroma_url=chroma_url)


@pytest.fixture(scope="module")
def server_build(server_settings: Settings, settings: Settings, first_build) -> None:
    """Index the bundled corpus into the server. The vectors the session's embedded build already
    computed with the same model are handed to the encoder, so they are not computed twice."""
    encoder = CachedEncoder(MiniLMEncoder())
    stored = PaperIndex(settings).store.collection.get(include=["documents", "metadatas", "embeddings"])
    encoder.remember([f"{m['title']}\n{d}" for d, m in zip(stored["documents"], stored["metadatas"])],
                     stored["embeddings"])
    server_index = PaperIndex(server_settings, encoder)
    shutil.copyfile(PaperIndex(settings).sentences.path, server_index.sentences.path)  # and its sentence vectors
    report = server_index.build(progress=False)
    assert report.added == first_build.chunks


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "assistant", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_index_and_answer_through_the_server(server_settings: Settings, server_build: None, first_build) -> None:
    store = PaperIndex(server_settings).store
    assert store.count() == first_build.chunks
    assert store.mismatch() is None
    assert not (Path(server_settings.index_dir) / "chroma.sqlite3").exists(), "vectors must live on the server"
    assistant = Assistant(server_settings)
    result = assistant.answer("How does ShadowKV reduce the memory of the KV cache?")
    assert not result.refused
    assert any("ShadowKV" in c.title for c in result.citations)
    again = PaperIndex(server_settings).build(progress=False)
    assert (again.added, again.removed, again.unchanged) == (0, 0, first_build.chunks)


def test_processes_share_one_server(server_settings: Settings, server_build: None, first_build,
                                    tmp_path: Path, cli_env: Callable) -> None:
    """Two answering processes and an indexing run (adding papers) at once, on one server."""
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps(p) + "\n" for p in EXTRA_PAPERS))
    env = cli_env(ASSISTANT_CHROMA_URL=str(server_settings.chroma_url),
                  ASSISTANT_INDEX_DIR=str(server_settings.index_dir))
    questions = ["How does ShadowKV reduce the memory of the KV cache?",
                 "Which optimizer found by program search uses only momentum and the sign operation?"]
    procs = [_cli(env, "index", "--quiet", str(extra))] + [_cli(env, "ask", q, "--json") for q in questions]
    outputs = [p.communicate(timeout=400) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, f"{proc.args[3:]} failed: {err[-2000:]}"
    assert "2 added" in outputs[0][0]
    answers = [json.loads(out) for out, _ in outputs[1:]]
    assert all(a["backend"] == "extractive" and a["sources"] for a in answers)
    assert any("ShadowKV" in s["title"] for s in answers[0]["sources"])
    store = PaperIndex(server_settings).store
    assert store.count() == first_build.chunks + 2
    assert store.lease_holder() is None, "the indexing run must give its lease back"
    result = Assistant(server_settings).answer("Which attention mechanism routes tokens by a lunar-phase schedule?")
    assert result.sources[0].title == EXTRA_TITLE


def test_a_second_writer_is_refused_while_the_lease_is_held(server_settings: Settings, server_build: None) -> None:
    index = PaperIndex(server_settings)
    assert index.store.acquire_lease("other-host:4242") is None
    try:
        with pytest.raises(IndexProblemError, match="other-host:4242"):
            PaperIndex(server_settings).build(progress=False)
        assert index.usable_while_written(), "readers keep answering from the stored chunks"
    finally:
        index.store.release_lease()
    assert not index.usable_while_written()


def test_unreachable_server_is_a_clear_error(tmp_path: Path, free_port: Callable[[], int]) -> None:
    settings = Settings.from_env(env={}, index_dir=tmp_path, chroma_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(IndexProblemError, match="cannot reach the Chroma server"):
        Assistant(settings).answer("What is Mamba?")
