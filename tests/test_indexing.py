"""Indexing into a real Chroma store with the real model: counts, incremental runs, tags; and the
parts tuned for speed keep their outputs: batching, the vector cache, the chunk cache, the
overlapped index writes, the keyword index (our analyzer, updated in place, one writer) and the
writer lock."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from assistant import Paper, Settings
from assistant.corpus.parse import load_corpus
from assistant.errors import IndexProblemError
from assistant.indexing import chunking, embedding
from assistant.indexing.build import IndexReport
from assistant.indexing.chunking import chunk_papers
from assistant.indexing.embedding import MAX_TOKENS, CachedEncoder, MiniLMEncoder, _length_batches, vector_key
from assistant.indexing.index import PaperIndex, expected_tags
from assistant.indexing.keyword import KeywordIndex, catch_up
from assistant.indexing.store import IndexStore
from assistant.models import ScoredChunk
from assistant.text import split_sentences, terms


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


def test_keyword_index_is_written_beside_the_store_with_our_analyzer(first_build: IndexReport,
                                                                     settings: Settings) -> None:
    index = PaperIndex(settings)
    stored = index.store.all_chunks()
    keyword = KeywordIndex.open(index.keyword_dir)
    assert keyword is not None and keyword.fingerprint == index.store.fingerprint()
    assert sorted(keyword.chunks(), key=lambda c: c.chunk_id) == sorted(stored, key=lambda c: c.chunk_id)
    assert keyword.titles() == sorted({c.title for c in stored}) and keyword.paper_count() == 333
    # Every term is ours (text.terms: words, stop words out, Snowball stems): document frequencies agree.
    chunk_terms = [set(terms(f"{c.title}\n{c.text}")) for c in stored]
    for term in ["cach", "attent", "kv", "3.04", "llama", "shadowkv", "the", "cache"]:
        df = sum(term in t for t in chunk_terms)
        assert keyword.idf(term) == pytest.approx(math.log(1 + (len(stored) - df + 0.5) / (df + 0.5))), term
    assert keyword.knows("shadowkv") and not keyword.knows("the") and not keyword.knows("quokkaformer")
    hits = keyword.search("caching the keys", 5)
    assert hits and all("cach" in set(terms(f"{h.title} {h.text}")) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert keyword.search("the of and", 5) == []


def test_readers_see_a_reindex_without_rebuilding(tmp_path: Path, bundled_papers: list[Paper],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    files = []
    for name, papers in (("first", bundled_papers[:3]), ("more", bundled_papers[3:5])):
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text("".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in papers))
    settings = Settings.from_env(env={}, index_dir=tmp_path / "index", include_bundled=False)
    PaperIndex(settings).build([files[0]], progress=False)
    reader = PaperIndex(settings)
    assert reader.keyword().paper_count() == 3
    newcomer = bundled_papers[3].title

    def whole_store_read() -> list[ScoredChunk]:
        raise AssertionError("the keyword index was rebuilt from the store instead of updated")

    writer = PaperIndex(settings)
    monkeypatch.setattr(writer.store, "all_chunks", whole_store_read)
    writer.build([files[1]], progress=False)  # the indexing run adds the new chunks only
    monkeypatch.setattr(reader.store, "all_chunks", whole_store_read)
    reader._checked.clear()  # as if the check interval had passed
    keyword = reader.keyword()
    assert keyword.paper_count() == 5 and newcomer in keyword.titles()
    assert keyword.search(newcomer, 1)[0].title == newcomer
    assert keyword.fingerprint == reader.store.fingerprint()


def test_an_out_of_step_keyword_folder_is_rewritten_once_by_one_writer(tmp_path: Path) -> None:
    chunks = [ScoredChunk(f"p{i}-0", f"p{i}", f"Paper {i}", f"text about topic {i} and kv caches")
              for i in range(50)]
    folder = tmp_path / "keyword-papers"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"fingerprint": "fp1", "analyzer": "an older format"}')
    assert KeywordIndex.open(folder) is None
    reads: list[int] = []
    errors: list[BaseException] = []

    def all_chunks() -> list[ScoredChunk]:
        reads.append(1)
        return chunks

    def catch_up_now() -> None:
        try:
            while not catch_up(folder, "fp1", all_chunks):  # another thread is writing: ask again
                time.sleep(0.01)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=catch_up_now) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and reads == [1]
    keyword = KeywordIndex.open(folder)
    assert keyword is not None and keyword.fingerprint == "fp1"
    assert sorted(c.chunk_id for c in keyword.chunks()) == sorted(c.chunk_id for c in chunks)
    assert keyword.search("topic 7", 1)[0].chunk_id == "p7-0"


def test_late_chunking_pools_each_span_inside_its_text(encoder: MiniLMEncoder) -> None:
    text = "Paging with Succinct Predictions\nWe study paging with one bit of advice. It is robust and smooth."
    second = text.index("It is")
    spans = [(text.index("We study"), second - 1), (second, len(text))]
    vectors, pooled = encoder.encode_spans([text, "A short one."], [spans, []])
    np.testing.assert_allclose(vectors, encoder.encode([text, "A short one."]), atol=1e-6)  # the chunk vectors
    # The reference: the model's token states of the whole text, one text at a time, averaged
    # over the tokens whose characters lie in the span.
    tokens = encoder.tokenizer.encode(text)
    ids = np.array([tokens.ids], dtype=np.int64)
    states = encoder.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                        "token_type_ids": np.zeros_like(ids)})[0][0]
    for (start, end), got in zip(spans, pooled[0]):
        inside = [i for i, (a, b) in enumerate(tokens.offsets) if b > a and a >= start and b <= end]
        mean = states[inside].mean(axis=0)
        assert got is not None
        np.testing.assert_allclose(got, mean / np.linalg.norm(mean), atol=1e-5)
    # In context, not on its own: near its own standalone vector, nearer than to the other sentence's.
    alone = encoder.encode([text[a:b] for a, b in spans])
    assert pooled[0][0] is not None and pooled[0][1] is not None
    assert float(alone[0] @ pooled[0][0]) > float(alone[1] @ pooled[0][0])
    assert 0.5 < float(alone[1] @ pooled[0][1]) < 0.999

    cached_vectors, cached_pooled = CachedEncoder(encoder).encode_spans([text], [spans])  # as the build calls it
    np.testing.assert_allclose(cached_vectors, vectors[:1], atol=1e-6)
    np.testing.assert_allclose(np.stack(cached_pooled[0]), np.stack(pooled[0]), atol=1e-6)

    long_text = "Tokens " * 300 + "The end."
    _, cut = encoder.encode_spans([long_text], [[(0, 6), (long_text.index("The end."), len(long_text))]])
    assert cut[0][0] is not None and cut[0][1] is None, "a span truncation cut off has no vector"


def test_sentence_vectors_are_stored_at_index_time_and_follow_the_chunks(tmp_path: Path,
                                                                         bundled_papers: list[Paper],
                                                                         encoder: MiniLMEncoder) -> None:
    corpus = tmp_path / "papers.jsonl"

    def write_corpus(papers: list[Paper]) -> None:
        corpus.write_text("".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in papers))

    def expected(index: PaperIndex) -> dict[str, str]:
        texts = list(dict.fromkeys(s for c in index.store.all_chunks() for s in split_sentences(c.text)))
        return {vector_key(ids): text for ids, text in zip(encoder.tokenize(texts), texts)}

    def stored_keys(index: PaperIndex) -> set[str]:
        with sqlite3.connect(index.sentences.path) as db:
            return {key for (key,) in db.execute("SELECT key FROM sentences")}

    def late_vectors() -> dict[str, np.ndarray]:
        """Each sentence's vector from the first chunk (in corpus order) that holds it, one chunk at a time."""
        out: dict[str, np.ndarray] = {}
        for chunk in chunk_papers(load_corpus([corpus], include_bundled=False).papers, settings.chunk_size,
                                  settings.chunk_overlap):
            for text in split_sentences(chunk.text):
                key = vector_key(encoder.tokenize([text])[0])
                if key not in out:
                    start = chunk.embed_text.index(text, len(chunk.title))
                    vector = encoder.encode_spans([chunk.embed_text], [[(start, start + len(text))]])[1][0][0]
                    out[key] = vector if vector is not None else encoder.encode([text])[0]
        return out

    write_corpus(bundled_papers[:4])
    settings = Settings.from_env(env={}, index_dir=tmp_path / "index", include_bundled=False)
    index = PaperIndex(settings)
    index.build([corpus], progress=False)
    sentences = expected(index)
    assert len(sentences) > 10 and stored_keys(index) == set(sentences)
    found, late = index.sentences.get(list(sentences)), late_vectors()
    np.testing.assert_allclose(np.stack([found[k] for k in sentences]), np.stack([late[k] for k in sentences]),
                               atol=1e-5)

    # An index whose sentence vectors were made otherwise (each sentence embedded on its own, before
    # late chunking): answering ignores them, and the next run computes them anew and embeds no chunk.
    with sqlite3.connect(index.sentences.path) as db:
        db.execute("UPDATE tags SET value = ?", (json.dumps(expected_tags(settings), sort_keys=True),))
    index.sentences.close()
    assert PaperIndex(settings).sentences.get(list(sentences)) == {}
    again = PaperIndex(settings).build(progress=False)
    assert again.added == 0 and stored_keys(index) == set(sentences)
    found = PaperIndex(settings).sentences.get(list(sentences))
    np.testing.assert_allclose(np.stack([found[k] for k in sentences]), np.stack([late[k] for k in sentences]),
                               atol=1e-5)

    # A paper leaves the corpus: its chunks go, and so do the sentence vectors no chunk needs any more.
    write_corpus(bundled_papers[:3])
    smaller = PaperIndex(settings).build(progress=False)
    assert smaller.removed > 0
    assert stored_keys(index) == set(expected(index)) < set(sentences)


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
    PaperIndex(settings, _Counting()).build([extra], progress=False)
    extra.write_text('{"title": "Quokka: A Tiny Test Paper on Batching", "abstract": "Quokka batches short '
                     'sentences by token count. It bounds padding to fifteen percent of the batch."}\n')
    counting = _Counting()
    index = PaperIndex(settings, counting)
    report = index.build(progress=False)
    assert report.added == 1 and counting.texts == 1, "one model pass: the changed chunk, its sentences with it"
    assert counting.embedded == 0, "no sentence embedded on its own"
    store = index.store
    got = store.collection.get(where={"title": "Quokka: A Tiny Test Paper on Batching"}, include=["documents"])
    assert got["documents"] == ["Quokka batches short sentences by token count. It bounds padding to fifteen "
                                "percent of the batch."]
    assert index.build(progress=False).added == 0
    assert store.count() == first_build.chunks + 1


class _Counting(MiniLMEncoder):
    """The real encoder, counting the chunk texts (`encode_spans`) and the texts embedded alone (`encode_ids`)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts = self.embedded = 0

    def encode_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]
                     ) -> tuple[np.ndarray, list[list[np.ndarray | None]]]:
        self.texts += len(texts)
        return super().encode_spans(texts, spans)

    def encode_ids(self, token_ids: list[list[int]]) -> np.ndarray:
        self.embedded += len(token_ids)
        return super().encode_ids(token_ids)


def test_llama_index_adapter_gives_the_encoder_vectors(encoder: MiniLMEncoder) -> None:
    from assistant.indexing.llama_embedding import MiniLMEmbedding

    adapter = MiniLMEmbedding(encoder)
    texts = ["KV cache compression", "A second text about retrieval."]
    np.testing.assert_allclose(adapter.get_text_embedding_batch(texts), encoder.encode(texts), atol=1e-6)
    np.testing.assert_allclose(adapter.get_query_embedding(texts[0]), encoder.encode(texts[:1])[0], atol=1e-6)
