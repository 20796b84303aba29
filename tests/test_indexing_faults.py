"""Faults while indexing and in the store: a killed `assistant index` resumes to a complete,
duplicate-free index; a second run is refused while one writes; a damaged index folder is named
at start with the way out (`assistant index --rebuild`), which then works on that folder; a Chroma
server that dies or hangs mid-session is an IndexProblemError, and the same Assistant answers
again once the server is back. Indexes of our own are built from a few real papers only."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assistant import Assistant, IndexProblemError, Paper, Settings, cli
from assistant.corpus.parse import load_corpus
from assistant.indexing import store as store_module
from assistant.indexing.build import EMBED_BATCH, _fingerprint
from assistant.indexing.chunking import chunk_papers
from assistant.indexing.index import PaperIndex
from assistant.indexing.repair import segment_folders
from assistant.indexing.store import INCOMPLETE

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How does ShadowKV cut KV-cache memory?"


def write_jsonl(path: Path, papers: list[Paper]) -> Path:
    path.write_text("".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in papers))
    return path


def own_settings(index_dir: Path, **changes: object) -> Settings:
    """Settings for an index of our own files only, ignoring the caller's environment."""
    return Settings.from_env(env={}, index_dir=index_dir, include_bundled=False, **changes)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory, bundled_papers: list[Paper]) -> Path:
    """Six real papers as a JSONL file."""
    return write_jsonl(tmp_path_factory.mktemp("small") / "small.jsonl", bundled_papers[:6])


def top_title(answer: object) -> str:
    return answer.sources[0].title  # type: ignore[attr-defined]


# -- a killed run, two runs at once --------------------------------------------------------------
def progress_until(proc: subprocess.Popen[bytes], at_least: int, timeout_s: float = 300) -> tuple[int, int]:
    """Read the chunks' progress bar on the child's stderr until it shows `at_least` chunks written."""
    seen, deadline = b"", time.monotonic() + timeout_s
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        chunk = os.read(proc.stderr.fileno(), 65536) if ready else b""
        if ready and not chunk:
            break  # the child exited
        seen += chunk
        counts = re.findall(rb"Embedding chunks:[^\r\n]*? (\d+)/(\d+) \[", seen)
        if counts and int(counts[-1][0]) >= at_least:
            return int(counts[-1][0]), int(counts[-1][1])
    raise AssertionError(f"no progress to {at_least} chunks: {seen.decode(errors='replace')[-2000:]}")


def test_killed_index_run_resumes_to_a_complete_duplicate_free_index(tmp_path: Path, cli_env: Callable,
                                                                     bundled_papers: list[Paper]) -> None:
    corpus = write_jsonl(tmp_path / "papers.jsonl", bundled_papers[:80])
    index = tmp_path / "index"
    env = cli_env(ASSISTANT_INDEX_DIR=str(index), ASSISTANT_INCLUDE_BUNDLED="0")
    proc = subprocess.Popen([sys.executable, "-m", "assistant", "index", str(corpus)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        written, total = progress_until(proc, EMBED_BATCH)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    settings = own_settings(index)
    store = PaperIndex(settings).store
    kept = store.count()
    assert store.fingerprint() == INCOMPLETE and written <= kept < total

    report = PaperIndex(settings).build(progress=False)  # no path: the killed run remembered its source

    expected = chunk_papers(load_corpus([corpus], include_bundled=False).papers,
                            settings.chunk_size, settings.chunk_overlap)
    assert (report.chunks, report.unchanged, report.added) == (total, kept, total - kept) and not report.problems
    store = PaperIndex(settings).store
    ids = store.collection.get(include=[])["ids"]
    assert store.count() == len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == {c.chunk_id for c in expected}
    assert store.fingerprint() == _fingerprint(expected)
    assistant = Assistant(settings)
    assert assistant.index.ready()
    title = bundled_papers[70].title
    assert top_title(assistant.answer(f"What does {title} propose?")) == title


def test_second_index_run_is_refused_while_one_is_writing(tmp_path: Path, small_corpus: Path,
                                                          cli_env: Callable) -> None:
    index = tmp_path / "index"
    settings = own_settings(index)
    with PaperIndex(settings).lock():
        env = cli_env(ASSISTANT_INDEX_DIR=str(index), ASSISTANT_INCLUDE_BUNDLED="0")
        done = subprocess.run([sys.executable, "-m", "assistant", "index", str(small_corpus)], env=env,
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        with pytest.raises(IndexProblemError, match="another `assistant index` run is writing"):
            PaperIndex(settings).build([small_corpus], progress=False)
        with pytest.raises(IndexProblemError, match="another `assistant index` run is writing"):
            Assistant(settings).ensure_index(progress=False)  # as `ask` does on a missing index
    assert (done.returncode, done.stdout) == (cli.EXIT_FAILURE, "")
    assert done.stderr == f"error: another `assistant index` run is writing to {index}; wait for it to finish\n"
    with PaperIndex(settings).lock():
        pass  # released


# -- a damaged index folder -----------------------------------------------------------------------
def damage(folder: Path, kind: str) -> None:
    db = folder / "chroma.sqlite3"
    if kind == "database truncated":
        with open(db, "r+b") as f:
            f.truncate(10_000)
    elif kind == "database overwritten":
        db.write_bytes(b"\x89garbage" * (db.stat().st_size // 8))
    elif kind == "database deleted":
        db.unlink()
    elif kind == "vector segment deleted":
        segments = segment_folders(folder)
        assert segments
        for segment in segments:
            shutil.rmtree(segment)


@pytest.mark.parametrize("kind", ["database truncated", "database overwritten", "database deleted",
                                  "vector segment deleted"])
def test_damaged_index_is_named_at_start_and_rebuild_repairs_it(
        kind: str, index_dir: Path, first_build: object, tmp_path: Path, small_corpus: Path,
        bundled_papers: list[Paper], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "index"
    shutil.copytree(index_dir, folder, ignore=shutil.ignore_patterns(".index.lock"))
    (folder / "my-notes.txt").write_text("mine")
    damage(folder, kind)
    settings = own_settings(folder)

    monkeypatch.setenv("ASSISTANT_INCLUDE_BUNDLED", "0")
    try:
        answer = Assistant(settings).answer(QUESTION)
    except IndexProblemError as exc:
        assert "Rebuild it with `assistant index --rebuild`" in str(exc) and "\n" not in str(exc)
        assert cli.main(["ask", QUESTION, "--index-dir", str(folder)]) == cli.EXIT_FAILURE
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "assistant index --rebuild" in err
    else:
        # Chroma keeps recent vectors in its log until its HNSW segment is next persisted, and
        # rebuilds a missing segment from that log: then nothing was lost and the answer is whole.
        assert kind == "vector segment deleted"
        assert PaperIndex(settings).store.count() == PaperIndex(own_settings(index_dir)).store.count()
        assert answer.citations and not answer.refused

    assert cli.main(["index", "--rebuild", "--quiet", "--index-dir", str(folder), str(small_corpus)]) == 0
    out, _ = capsys.readouterr()
    assert "papers: 6 unique" in out
    title = bundled_papers[2].title
    assert top_title(Assistant(settings).answer(f"What does {title} propose?")) == title
    assert (folder / "my-notes.txt").read_text() == "mine"


# -- a Chroma server that dies or hangs -----------------------------------------------------------
def test_chroma_server_fault_mid_session_then_the_same_assistant_answers(
        chroma_server: Any, tmp_path: Path, small_corpus: Path, bundled_papers: list[Paper],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "SERVER_TIMEOUT_S", 3.0)
    settings = own_settings(tmp_path / "local", chroma_url=chroma_server.url)
    PaperIndex(settings).build([small_corpus], progress=False)
    assistant = Assistant(settings)
    title = bundled_papers[0].title
    question = f"What does {title} propose?"
    assert top_title(assistant.answer(question)) == title

    chroma_server.kill()
    for _ in range(2):
        with pytest.raises(IndexProblemError) as exc:
            assistant.answer(question)
        assert f"the Chroma server at {chroma_server.url} failed" in str(exc.value)
        assert "check that it is running" in str(exc.value)
    with pytest.raises(IndexProblemError, match="cannot reach the Chroma server"):
        Assistant(settings).answer(question)  # a new session cannot start either

    chroma_server.start()
    assert top_title(assistant.answer(question)) == title

    chroma_server.signal(signal.SIGSTOP)  # hung: accepts connections, never answers
    try:
        with pytest.raises(IndexProblemError, match="timed out"):
            assistant.answer(question)
    finally:
        chroma_server.signal(signal.SIGCONT)
    assert top_title(assistant.answer(question)) == title
