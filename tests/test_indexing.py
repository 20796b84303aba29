"""Indexing into a real Chroma store with the real model: counts, incremental runs, tags; and the
parts tuned for speed keep their outputs: batching, the vector cache, the chunk cache, the
overlapped index writes, concurrent keyword-index saves and the writer lock."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from assistant import Settings
from assistant.corpus.parse import load_corpus
from assistant.errors import IndexProblemError
from assistant.indexing import chunking, embedding
from assistant.indexing.build import IndexReport
from assistant.indexing.chunking import chunk_papers
from assistant.indexing.embedding import MAX_TOKENS, CachedEncoder, MiniLMEncoder, _length_batches
from assistant.indexing.index import PaperIndex, expected_tags
from assistant.indexing.keyword import KeywordIndex
from assistant.indexing.store import IndexStore
from assistant.models import ScoredChunk


def test_cold_build_indexes_every_paper(first_build: IndexReport, settings: Settings) -> None:
    assert first_build.papers == 333
    assert first_build.duplicates_merged == 59
    assert first_build.added == first_build.chunks > 333
    assert first_build.unchanged == first_build.removed == 0
    store = PaperIndex(settings).store
    assert store.count() == first_build.chunks
    assert store.mismatch() is None


def test_second_run_embeds_nothing(first_build: IndexReport, settings: Settings) -> None:
    again = PaperIndex(settings).build(progress=False)
    assert again.added == 0 and again.removed == 0
    assert again.unchanged == first_build.chunks
    assert "embed+store" not in again.seconds


def test_chunks_fit_the_embedder_window_and_carry_the_title(first_build: IndexReport, settings: Settings) -> None:
    encoder = MiniLMEncoder()
    chunks = PaperIndex(settings).store.all_chunks()
    longest = max(encoder.count_tokens(f"{c.title}\n{c.text}") for c in chunks)
    assert longest < MAX_TOKENS
    assert all(c.title and c.paper_id for c in chunks)


def test_index_built_with_other_settings_is_detected(first_build: IndexReport, settings: Settings) -> None:
    other = {**expected_tags(settings), "chunking": "something-else"}
    store = IndexStore(settings.index_dir, None, settings.collection, other)
    message = store.mismatch()
    assert message is not None and "chunking" in message


def test_vectors_are_unit_length_and_match_the_query_embedding(first_build: IndexReport, settings: Settings) -> None:
    store = PaperIndex(settings).store
    encoder = MiniLMEncoder()
    question = "ShadowKV stores the low-rank key cache and offloads the value cache"
    hits = store.query(encoder.encode([question])[0].tolist(), 3)
    assert hits[0].title.startswith("ShadowKV")
    assert 0.5 < hits[0].score <= 1.0


# -- the parts tuned for speed ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


def test_batches_bound_size_budget_and_padding() -> None:
    lengths = [10, 11, 11, 12, 30, 31, 33, 200, 210, 256] + [20] * 40
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches = _length_batches(order, lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        widths = [lengths[i] for i in batch]
        assert len(batch) <= embedding.MAX_BATCH
        assert len(batch) == 1 or max(widths) * len(batch) <= embedding.BATCH_TOKEN_BUDGET
        assert max(widths) <= (1 + embedding.MAX_PADDING) * min(widths)


def test_batched_vectors_equal_one_at_a_time(encoder: MiniLMEncoder) -> None:
    papers = load_corpus().papers[:6]
    texts = [p.title for p in papers] + [p.abstract for p in papers] + ["Short one.", "KV cache memory"]
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    assert together.shape == (len(texts), embedding.DIMENSIONS)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_cache_serves_texts_that_tokenise_alike(encoder: MiniLMEncoder) -> None:
    cached = CachedEncoder(encoder)
    first = cached.encode(["Sparse attention cuts memory [1] .", "Another sentence."])
    calls = []
    original = encoder.encode_ids
    encoder.encode_ids = lambda ids: calls.append(ids) or original(ids)  # type: ignore[method-assign]
    try:
        again = cached.encode(["Sparse attention cuts memory [1].", "another  sentence ."])
    finally:
        del encoder.encode_ids
    assert calls == [], "texts with the same tokens must come from the cache"
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(again, encoder.encode(["Sparse attention cuts memory [1].", "another sentence ."]),
                               atol=1e-6)
    assert cached.encode([]).shape == (0, embedding.DIMENSIONS)


def test_remembered_vectors_are_not_computed_again(encoder: MiniLMEncoder) -> None:
    cached = CachedEncoder(encoder)
    vector = np.eye(embedding.DIMENSIONS, dtype=np.float32)[:1]
    cached.remember(["A text the model never saw."], vector)
    np.testing.assert_array_equal(cached.encode(["A text the model never saw."]), vector)


def test_chunk_cache_gives_the_same_chunks_without_splitting(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    papers = load_corpus().papers[:20]
    cache = tmp_path / "chunk-cache.json"
    plain = chunk_papers(papers, 200, 30)
    assert chunk_papers(papers, 200, 30, cache) == plain

    def no_split(*args: object) -> list[str]:
        raise AssertionError("a cached abstract was split again")

    monkeypatch.setattr(chunking, "_pieces", no_split)
    assert chunk_papers(papers, 200, 30, cache) == plain
    monkeypatch.undo()
    assert chunk_papers(papers, 120, 20, cache) == chunk_papers(papers, 120, 20), "other settings, other chunks"
    cache.write_text('{"broken": 1')
    assert chunk_papers(papers[:3], 200, 30, cache) == chunk_papers(papers[:3], 200, 30)


def test_keyword_index_saves_from_many_threads(tmp_path: Path) -> None:
    chunks = [ScoredChunk(f"p{i}-0", f"p{i}", f"Paper {i}", f"text about topic {i} and kv caches")
              for i in range(50)]
    folder = tmp_path / "keyword"
    errors: list[BaseException] = []

    def save() -> None:
        try:
            for _ in range(5):
                KeywordIndex(chunks, "fp1").save(folder)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    loaded = KeywordIndex.load(folder, "fp1")
    assert loaded is not None and len(loaded.chunks) == 50
    assert [p.name for p in tmp_path.iterdir()] == ["keyword"], "no temporary folders left behind"


def test_writer_lock_refuses_a_second_run_but_readers_go_on(settings: Settings, first_build) -> None:
    index = PaperIndex(settings)
    assert not index.usable_while_written()
    with PaperIndex(settings).lock():
        with pytest.raises(IndexProblemError, match="another `assistant index` run"):
            index.build(progress=False)
        assert index.usable_while_written()


def test_changed_chunks_are_replaced(tmp_path: Path, settings: Settings, first_build) -> None:
    """A changed chunk is replaced through the background writer; a second run finds everything
    in place. Works on a copy of the session index."""
    shutil.copytree(settings.index_dir, tmp_path / "index")
    settings = settings.with_(index_dir=tmp_path / "index")
    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"title": "Quokka: A Tiny Test Paper on Batching", "abstract": "Quokka batches short '
                     'sentences by length. It bounds padding to fifteen percent."}\n')
    small = MiniLMEncoder()
    PaperIndex(settings, _Counting(small)).build([extra], progress=False)
    extra.write_text('{"title": "Quokka: A Tiny Test Paper on Batching", "abstract": "Quokka batches short '
                     'sentences by token count. It bounds padding to fifteen percent of the batch."}\n')
    counting = _Counting(small)
    index = PaperIndex(settings, counting)
    report = index.build(progress=False)
    assert report.added == 1 and counting.texts == 1
    store = index.store
    got = store.collection.get(where={"title": "Quokka: A Tiny Test Paper on Batching"}, include=["documents"])
    assert got["documents"] == ["Quokka batches short sentences by token count. It bounds padding to fifteen "
                                "percent of the batch."]
    assert index.build(progress=False).added == 0
    assert store.count() == first_build.chunks + 1


class _Counting:
    """Counts the texts a real encoder embeds."""

    def __init__(self, encoder: MiniLMEncoder) -> None:
        self.encoder = encoder
        self.texts = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.encoder.encode(texts)


def test_llama_index_adapter_gives_the_encoder_vectors(encoder: MiniLMEncoder) -> None:
    from assistant.indexing.llama_embedding import MiniLMEmbedding

    adapter = MiniLMEmbedding(encoder)
    texts = ["KV cache compression", "A second text about retrieval."]
    np.testing.assert_allclose(adapter.get_text_embedding_batch(texts), encoder.encode(texts), atol=1e-6)
    np.testing.assert_allclose(adapter.get_query_embedding(texts[0]), encoder.encode(texts[:1])[0], atol=1e-6)
